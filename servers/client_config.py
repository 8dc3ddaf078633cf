"""``mcp-suite config claude``: what to paste into Claude Desktop, or run for Claude Code."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from servers import registry


def _command() -> list[str]:
    """The absolute command that starts the suite, so the client needs no PATH or venv activation."""
    exe = shutil.which("mcp-suite")
    if exe is None:
        candidate = Path(sys.executable).with_name("mcp-suite")
        exe = str(candidate) if candidate.exists() else None
    return [exe] if exe else [sys.executable, "-m", "servers"]


def server_key(name: str) -> str:
    return f"mcp-suite-{name.replace('_', '-')}"


def mcp_servers(*, include_examples: bool = False) -> dict[str, dict[str, object]]:
    """The ``mcpServers`` object of Claude Desktop's ``claude_desktop_config.json``."""
    cmd = _command()
    return {
        server_key(spec.name): {"command": cmd[0], "args": [*cmd[1:], "serve", spec.name]}
        for spec in registry.SERVERS
        if include_examples or not spec.example
    }


def claude_code_lines(*, include_examples: bool = False) -> list[str]:
    """``claude mcp add`` commands, one per server."""
    cmd = _command()
    return [
        f"claude mcp add {server_key(spec.name)} --scope user -- {' '.join([*cmd, 'serve', spec.name])}"
        for spec in registry.SERVERS
        if include_examples or not spec.example
    ]


def render(fmt: str = "all", *, include_examples: bool = False) -> str:
    parts = []
    if fmt in ("all", "json"):
        doc = json.dumps({"mcpServers": mcp_servers(include_examples=include_examples)}, indent=2)
        parts.append(doc if fmt == "json" else "# Claude Desktop: merge into claude_desktop_config.json\n" + doc)
    if fmt in ("all", "cli"):
        lines = claude_code_lines(include_examples=include_examples)
        parts.append("\n".join(lines) if fmt == "cli" else "# Claude Code:\n" + "\n".join(lines))
    return "\n\n".join(parts)
