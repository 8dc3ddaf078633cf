"""``mcp-suite config claude``: what to paste into Claude Desktop, or run for Claude Code."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

from pydantic import SecretStr

from common.settings import BaseServerSettings, env_name
from servers import registry

#: Settings worth carrying into a client's configuration (where to find the services).
ENV_FIELDS = (
    "database_url",
    "redis_url",
    "redis_prefix",
    "qdrant_url",
    "qdrant_path",
    "qdrant_api_key",
    "vector_backend",
    "embedding_model",
    "data_dir",
    "db_role_password",
    "events_signing_key",
)


def _command() -> list[str]:
    """The absolute command that starts the suite, so the client needs no PATH or venv activation."""
    exe = shutil.which("mcp-suite")
    if exe is None:
        candidate = Path(sys.executable).with_name("mcp-suite")
        exe = str(candidate) if candidate.exists() else None
    return [exe] if exe else [sys.executable, "-m", "servers"]


def server_key(name: str) -> str:
    return f"mcp-suite-{name.replace('_', '-')}"


def shared_env(settings: BaseServerSettings) -> dict[str, str]:
    """The connection settings in force here that differ from the defaults, for the client's ``env``."""
    defaults = BaseServerSettings.model_construct()
    out: dict[str, str] = {}
    for field in ENV_FIELDS:
        value = getattr(settings, field)
        if value is None or value == getattr(defaults, field, None):
            continue
        out[env_name(BaseServerSettings, field)] = (
            value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        )
    return out


def mcp_servers(*, include_examples: bool = False, env: dict[str, str] | None = None) -> dict[str, dict[str, object]]:
    """The ``mcpServers`` object of Claude Desktop's ``claude_desktop_config.json``."""
    cmd = _command()
    servers: dict[str, dict[str, object]] = {}
    for spec in registry.SERVERS:
        if include_examples or not spec.example:
            entry: dict[str, object] = {"command": cmd[0], "args": [*cmd[1:], "serve", spec.name]}
            if env:
                entry["env"] = dict(env)
            servers[server_key(spec.name)] = entry
    return servers


def claude_code_lines(*, include_examples: bool = False, env: dict[str, str] | None = None) -> list[str]:
    """``claude mcp add`` commands, one per server."""
    cmd = _command()
    flags = "".join(f" -e {shlex.quote(f'{k}={v}')}" for k, v in (env or {}).items())
    return [
        f"claude mcp add {server_key(spec.name)} --scope user{flags} -- {' '.join([*cmd, 'serve', spec.name])}"
        for spec in registry.SERVERS
        if include_examples or not spec.example
    ]


def render(fmt: str = "all", *, include_examples: bool = False, env: dict[str, str] | None = None) -> str:
    """Claude Desktop JSON and/or Claude Code lines; ``env`` is added to every server when given."""
    parts = []
    if fmt in ("all", "json"):
        doc = json.dumps({"mcpServers": mcp_servers(include_examples=include_examples, env=env)}, indent=2)
        parts.append(doc if fmt == "json" else "# Claude Desktop: merge into claude_desktop_config.json\n" + doc)
    if fmt in ("all", "cli"):
        lines = claude_code_lines(include_examples=include_examples, env=env)
        parts.append("\n".join(lines) if fmt == "cli" else "# Claude Code:\n" + "\n".join(lines))
    return "\n\n".join(parts)
