"""The stdio transport (common/stdio.py): every line answered as JSON-RPC 2.0 asks, the protocol
channel protected from stray output, over-long messages refused, descriptors restored afterwards."""

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

from common.stdio import check_line

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


def converse(payload: bytes, *, last_id: int, max_line: int | None = None) -> tuple[list[dict[str, Any]], str, str]:
    """Send ``payload`` to a fresh server, read until the answer to ``last_id``, close stdin."""
    args = [sys.executable, *APP] + ([str(max_line)] if max_line else [])
    proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    assert proc.stdout is not None
    watchdog = threading.Timer(60, proc.kill)  # a hung server fails the test instead of hanging it
    watchdog.start()
    lines: list[str] = []
    try:
        proc.stdin.write(payload)
        proc.stdin.flush()
        while not lines or f'"id":{last_id},' not in lines[-1].replace(" ", ""):
            got = proc.stdout.readline().decode()
            assert got, "the server closed stdout before answering the last request"
            lines.append(got.rstrip("\n"))
        out, err = proc.communicate(timeout=60)  # EOF: the server stops
    finally:
        watchdog.cancel()
    assert proc.returncode == 0, err.decode()[-2000:]
    lines += out.decode().splitlines()
    messages = [json.loads(x) for x in lines if x.startswith("{")]
    return messages, lines[-1], err.decode()


async def test_stray_output_goes_to_stderr_and_large_answers_arrive_whole(tmp_path: Path) -> None:
    errlog = tmp_path / "stderr.txt"
    params = StdioServerParameters(command=sys.executable, args=APP, cwd=str(ROOT))
    with errlog.open("w") as err:
        async with Client(stdio_client(params, errlog=err)) as client:
            noisy = await client.call_tool("noisy", {})
            assert not noisy.is_error
            assert noisy.content[0].text == "quiet"  # type: ignore[union-attr]
            big = "x" * 300_000
            assert (await client.call_tool("echo", {"text": big})).content[0].text == big  # type: ignore[union-attr]
    logged = errlog.read_text()
    assert "junk from a C library" in logged
    assert "junk from sys.stdout" in logged


def test_an_over_long_message_gets_an_error_and_the_next_one_is_answered() -> None:
    payload = (
        line(INIT)
        + line(INITIALIZED)
        + line(call(2, "echo", {"text": "y" * 5000}))
        + line(call(3, "echo", {"text": "hi"}))
    )
    messages, last, err = converse(payload, last_id=3, max_line=2000)
    by_id = {m.get("id"): m for m in messages}
    assert 2 not in by_id
    assert by_id[None]["error"]["code"] == -32600
    assert text_of(by_id[3]) == "hi"
    assert "stdio_message_too_long" in err
    assert last == "after-serve"  # fd 1 is the pipe again once serving stops


MALFORMED: list[tuple[bytes, int, object]] = [
    (b"{not json\n", -32700, None),
    (
        b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a\\ud800b"}}}\n',
        -32600,
        5,
    ),
    (b'{"jsonrpc":"2.0","id":6,"method":"ping","params":{"x":"a\x00b"}}\n', -32700, None),
    (b'{"jsonrpc":"2.0","id":7,"method":"ping","params":{"x":"a\x01b"}}\n', -32700, None),
    (b"[" * 100_000 + b"]" * 100_000 + b"\n", -32700, None),
    (b'{"jsonrpc":"2.0","id":8,"method":"tools/call","params":["echo"]}\n', -32600, 8),
    (b'{"jsonrpc":"1.0","id":9,"method":"ping"}\n', -32600, 9),
    (b'{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"echo"\n', -32700, None),
    (b"\xff\xfe\xfd\n", -32700, None),
    (b'[{"jsonrpc":"2.0","id":11,"method":"ping"}]\n', -32600, None),
    (b"42\n", -32600, None),
]


@pytest.mark.parametrize(("raw", "code", "request_id"), MALFORMED)
def test_a_malformed_line_is_classified_as_json_rpc_asks(raw: bytes, code: int, request_id: object) -> None:
    text, error = check_line(raw.rstrip(b"\n"))
    assert text is None
    assert error is not None
    assert error["error"]["code"] == code
    assert error["id"] == request_id
    assert error["jsonrpc"] == "2.0"


def test_every_malformed_line_gets_a_reply_and_the_server_keeps_serving() -> None:
    payload = (
        line(INIT)
        + line(INITIALIZED)
        + b"".join(raw for raw, _, _ in MALFORMED)
        + line(call(99, "echo", {"text": "ok"}))
    )
    messages, _, _ = converse(payload, last_id=99)
    errors = [m for m in messages if "error" in m]
    assert [e["error"]["code"] for e in errors] == [code for _, code, _ in MALFORMED]
    assert [e["id"] for e in errors] == [rid for _, _, rid in MALFORMED]
    assert text_of(next(m for m in messages if m.get("id") == 99)) == "ok"


def test_a_file_on_stdin_and_stdout_is_served_too(tmp_path: Path) -> None:
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
