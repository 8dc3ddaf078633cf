"""The event-loop stdio transport (common/stdio.py): pipes served without threads, the protocol
channel protected from stray output, over-long messages dropped, files and terminals left to the SDK."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

ROOT = Path(__file__).resolve().parents[2]
APP = ["-m", "tests.common.stdio_app"]

pytestmark = pytest.mark.anyio

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def call(request_id: int, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": tool, "arguments": args}}


def line(message: dict[str, Any]) -> bytes:
    return (json.dumps(message) + "\n").encode()


def text_of(response: dict[str, Any]) -> str:
    return str(response["result"]["content"][0]["text"])


async def test_pipes_take_the_event_loop_path_and_stray_output_goes_to_stderr(tmp_path: Path) -> None:
    errlog = tmp_path / "stderr.txt"
    params = StdioServerParameters(command=sys.executable, args=APP, cwd=str(ROOT))
    with errlog.open("w") as err:
        async with Client(stdio_client(params, errlog=err)) as client:
            assert (await client.call_tool("transport", {})).content[0].text == "event-loop"  # type: ignore[union-attr]
            noisy = await client.call_tool("noisy", {})
            assert not noisy.is_error
            assert noisy.content[0].text == "quiet"
            # The channel is intact after the junk: a large answer still arrives whole.
            big = "x" * 300_000
            assert (await client.call_tool("echo", {"text": big})).content[0].text == big  # type: ignore[union-attr]
    logged = errlog.read_text()
    assert "junk from a C library" in logged
    assert "junk from sys.stdout" in logged


def test_over_long_message_is_dropped_and_the_next_one_answered() -> None:
    proc = subprocess.Popen(
        [sys.executable, *APP, "2000"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    payload = (
        line(INIT)
        + line(INITIALIZED)
        + line(call(2, "echo", {"text": "y" * 5000}))
        + line(call(3, "echo", {"text": "hi"}))
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    watchdog = threading.Timer(60, proc.kill)  # a hung server fails the test instead of hanging it
    watchdog.start()
    try:
        proc.stdin.write(payload)
        proc.stdin.flush()
        lines: list[str] = []
        while not lines or '"id":3' not in lines[-1].replace(" ", ""):
            got = proc.stdout.readline().decode()
            assert got, "the server closed stdout before answering request 3"
            lines.append(got.rstrip("\n"))
        out, err = proc.communicate(timeout=60)  # EOF: the server stops
    finally:
        watchdog.cancel()
    assert proc.returncode == 0, err.decode()[-2000:]
    lines += out.decode().splitlines()
    responses = {m["id"]: m for m in (json.loads(x) for x in lines if x.startswith("{")) if "id" in m}
    assert 2 not in responses
    assert text_of(responses[3]) == "hi"
    assert "stdio_message_too_long" in err.decode()
    assert '"transport": "event-loop"' in err.decode()
    # fd 1 is the pipe again once serving stops.
    assert lines[-1] == "after-serve"


def test_a_file_on_stdin_and_stdout_keeps_the_sdk_transport(tmp_path: Path) -> None:
    requests = tmp_path / "in.jsonl"
    requests.write_bytes(line(INIT))
    answers = tmp_path / "out.jsonl"
    with requests.open("rb") as stdin, answers.open("wb") as stdout:
        proc = subprocess.run(
            [sys.executable, *APP], cwd=ROOT, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, timeout=60
        )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    lines = answers.read_text().splitlines()
    first = json.loads(lines[0])
    assert first["id"] == 1
    assert first["result"]["serverInfo"]["name"] == "stdio-app"
    assert lines[-1] == "after-serve"
    assert '"transport": "sdk"' in proc.stderr.decode()
