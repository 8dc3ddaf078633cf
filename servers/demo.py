"""``mcp-suite demo``: every registered server launched over stdio exactly as Claude launches it,
its tools listed, and a few real calls made, with their results shown."""

from __future__ import annotations

import importlib
import json
import sys
import time
from typing import Any

from mcp import Client
from mcp.client.stdio import StdioServerParameters

from servers import registry
from servers.client_config import _command


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _short(value: Any, limit: int = 600) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + " …"


async def demo_server(name: str) -> bool:
    """Spawn one server, list its tools and make its demo calls; True when every call succeeded."""
    cmd = _command()
    params = StdioServerParameters(command=cmd[0], args=[*cmd[1:], "serve", name])
    try:
        calls = importlib.import_module(f"servers.{name}.demo").CALLS
    except ModuleNotFoundError:
        calls = []
    ok = True
    started = time.perf_counter()
    async with Client(params, read_timeout_seconds=120) as client:
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


async def run_demo(*, include_examples: bool = True) -> int:
    ok = True
    for spec in registry.SERVERS:
        if spec.example and not include_examples:
            continue
        ok = await demo_server(spec.name) and ok
    _write("\ndemo finished: " + ("every call succeeded" if ok else "some calls failed (see above)"))
    return 0 if ok else 1
