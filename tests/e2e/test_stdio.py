"""Each registered server spawned over stdio exactly as Claude spawns it."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from common.testing import server_env
from servers import registry

pytestmark = pytest.mark.anyio


def _env(database_url: str, redis_url: str, redis_prefix: str, data_dir: Path, name: str) -> dict[str, str]:
    # INFO: the tests read the tool_call and model-loading log lines; a server's demo may need settings.
    extra = getattr(importlib.import_module(f"servers.{name}.demo"), "ENV", {})
    return server_env(database_url, redis_url, redis_prefix, data_dir, LOG_LEVEL="INFO", **extra)


@pytest.mark.parametrize("name", registry.names())
async def test_server_over_stdio_initializes_lists_and_calls_tools(
    name: str, database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    env = _env(database_url, redis_url, redis_prefix, tmp_path, name)
    params = StdioServerParameters(command=sys.executable, args=["-m", "servers", "serve", name], env=env)
    calls: list[tuple[str, dict[str, Any]]] = importlib.import_module(f"servers.{name}.demo").CALLS
    async with Client(params, read_timeout_seconds=120) as client:
        tools = await client.list_tools()
        assert tools.tools, "a server must expose tools"
        for tool, args in calls:
            result = await client.call_tool(tool, args)
            assert not result.is_error, (tool, result.content)


def _read_lines(stream: IO[str], into: list[str], seen: set[int]) -> None:
    for line in stream:
        into.append(line)
        try:
            seen.add(int(json.loads(line)["id"]))
        except (ValueError, KeyError, TypeError):
            continue


def _rpc(id_: int, method: str, params: dict[str, Any]) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": params})


@pytest.mark.parametrize("name", registry.names())
def test_stdout_carries_only_protocol_messages_and_logs_go_to_stderr(
    name: str, database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = importlib.import_module(f"servers.{name}.demo").CALLS
    messages = [
        _rpc(
            1,
            "initialize",
            {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
        ),
        json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        _rpc(2, "tools/list", {}),
        *[_rpc(3 + i, "tools/call", {"name": t, "arguments": a}) for i, (t, a) in enumerate(calls)],
        _rpc(99, "tools/call", {"name": calls[0][0], "arguments": {"no_such_argument": 1}}),
    ]
    expected = {1, 2, 99, *range(3, 3 + len(calls))}
    stderr_path = tmp_path / "server.stderr"
    with stderr_path.open("w") as stderr_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "servers", "serve", name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            text=True,
            env=_env(database_url, redis_url, redis_prefix, tmp_path, name),
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        stdout_lines: list[str] = []
        seen: set[int] = set()
        reader = threading.Thread(target=_read_lines, args=(proc.stdout, stdout_lines, seen), daemon=True)
        reader.start()
        for message in messages:  # one at a time: a request is answered before the next is sent
            proc.stdin.write(message + "\n")
            proc.stdin.flush()
            wanted = json.loads(message).get("id")
            deadline = time.monotonic() + 120
            while wanted is not None and wanted not in seen and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            if wanted == 2:  # initialized and listed: the embedding model must still be unloaded
                stderr_file.flush()
                assert "embedding_model_loaded" not in stderr_path.read_text(), "the model loaded at start-up"
        proc.stdin.close()  # EOF: the server shuts down by itself
        proc.wait(timeout=60)
        reader.join(timeout=10)
        proc.stdout.close()
    stderr = stderr_path.read_text()
    assert seen >= expected, stderr[-2000:]
    out_lines = [line for line in stdout_lines if line.strip()]
    parsed = [json.loads(line) for line in out_lines]  # any non-JSON line on stdout fails here
    assert all(m.get("jsonrpc") == "2.0" for m in parsed)
    responses = {m["id"]: m for m in parsed if "id" in m}
    assert all("error" not in responses[i] for i in range(1, 3 + len(calls))), [
        responses[i] for i in responses if "error" in responses[i]
    ]
    assert all(not responses[i]["result"].get("isError") for i in range(3, 3 + len(calls)))
    assert responses[99]["result"]["isError"] is True
    err_lines = [line for line in stderr.splitlines() if line.strip()]
    logged = [json.loads(line) for line in err_lines if line.startswith("{")]
    assert any(e.get("event") == "tool_call" and e.get("tool") == calls[0][0] for e in logged)
    assert "Traceback" not in stderr
