"""``mcp-suite demo``: every registered server launched over stdio exactly as Claude launches it,
its tools listed, and a few real calls made, with their results shown."""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from servers import registry
from servers.client_config import _command


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _short(value: Any, limit: int = 600) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + " …"


async def demo_server(name: str, errlog: TextIO) -> bool:
    """Spawn one server (its log going to ``errlog``), list its tools and make its demo calls; True when all succeeded."""
    cmd = _command()
    try:
        module = importlib.import_module(f"servers.{name}.demo")
    except ModuleNotFoundError:
        module = None
    calls = module.CALLS if module else []
    # A server's demo may need a setting of its own (e.g. the folder it may analyse).
    params = StdioServerParameters(command=cmd[0], args=[*cmd[1:], "serve", name], env=getattr(module, "ENV", None))
    ok = True
    started = time.perf_counter()
    async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=120) as client:
        ready = time.perf_counter() - started
        tools = await client.list_tools()
        _write(
            f"\n== {name}: ready in {ready:.2f}s, {len(tools.tools)} tools: {', '.join(t.name for t in tools.tools)}"
        )
        for tool, arguments in calls:
            result = await client.call_tool(tool, arguments)
            shown = result.structured_content if result.structured_content is not None else result.content
            status = "error" if result.is_error else "ok"
            ok = ok and not result.is_error
            _write(f"-> {tool}({_short(arguments, 200)})\n   [{status}] {_short(shown)}")
    return ok


async def run_demo(*, include_examples: bool = True, log_path: Path | None = None) -> int:
    """Run every server's demo; the servers' own logs go to ``log_path`` (a temporary file by default)."""
    path = log_path or Path(tempfile.gettempdir()) / "mcp-suite-demo.log"
    _write(f"Servers log to {path} (JSON lines); this window shows the calls and their results.")
    ok = True
    with path.open("w") as errlog:
        for spec in registry.SERVERS:
            if spec.example and not include_examples:
                continue
            ok = await demo_server(spec.name, errlog) and ok
    _write("\ndemo finished: " + ("every call succeeded" if ok else f"some calls failed (see above and {path})"))
    return 0 if ok else 1
