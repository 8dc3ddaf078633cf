"""Serving a server over stdio, with every line the client sends answered as JSON-RPC 2.0 asks.

The SDK's stdio transport drops a line it cannot parse or validate without a word, and the client
then waits forever for the answer. Here each line is checked first (with the SDK's own message
model): a line that is not JSON gets a parse error (-32700), JSON that is not a valid message gets
an invalid-request error (-32600) carrying the request's id when one can be read, and a line over
:data:`MAX_LINE` bytes is skipped with an error. Valid lines go to the SDK unchanged.

Like the SDK's transport, this one takes the descriptors over while it serves: fd 0 reads the null
device and fd 1 goes to stderr, so a stray print in a library cannot corrupt the protocol channel;
both are restored when it stops. Reads and writes run in worker threads, as in the SDK.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import IO, Any

import anyio
import anyio.to_thread
import mcp_types
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server

from common.logging import get_logger
from common.sdk_adapter import run_on_streams

log = get_logger(__name__)

#: Longest line accepted from the client; a longer message is refused instead of exhausting memory.
MAX_LINE = 64 * 1024 * 1024
PARSE_ERROR = -32700
INVALID_REQUEST = -32600


def _id_of(message: Any) -> str | int | None:
    """The id of a request that failed validation, when it has a usable one."""
    if isinstance(message, dict):
        value = message.get("id")
        if (isinstance(value, str) and len(value) <= 200) or type(value) is int:
            return value
    return None


def check_line(raw: bytes) -> tuple[str | None, dict[str, Any] | None]:
    """``(text, None)`` for a valid JSON-RPC message, else ``(None, error reply)``."""
    try:
        text = raw.decode("utf-8")
        mcp_types.jsonrpc_message_adapter.validate_json(text, by_name=False)
        return text, None
    except UnicodeDecodeError:
        return None, error_reply(None, PARSE_ERROR, "Parse error: the line is not UTF-8.")
    except Exception:  # the SDK would drop this line silently; find out what was wrong with it
        pass
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return None, error_reply(None, PARSE_ERROR, "Parse error: the line is not valid JSON.")
    return None, error_reply(
        _id_of(message), INVALID_REQUEST, "Invalid request: not a JSON-RPC 2.0 message this server accepts."
    )


def error_reply(request_id: str | int | None, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


class _Wire:
    """The client's end of stdout: whole lines, one writer at a time (the SDK's and the guard's)."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._lock = anyio.Lock()

    def _put(self, data: bytes) -> None:
        self._out.write(data)
        self._out.flush()

    async def write(self, text: str) -> None:
        async with self._lock:
            await anyio.to_thread.run_sync(self._put, text.encode("utf-8", errors="replace"))

    async def flush(self) -> None:
        """Each write is flushed already."""

    async def reply(self, message: dict[str, Any]) -> None:
        await self.write(json.dumps(message, separators=(",", ":")) + "\n")


class _Lines:
    """``async for line in ...`` over the client's stdin, answering bad lines on the wire."""

    def __init__(self, source: IO[bytes], wire: _Wire, max_line: int) -> None:
        self._source = source
        self._wire = wire
        self._max = max_line
        #: A worker thread is inside ``readline`` (it holds the reader's lock until a line or EOF comes).
        self.reading = False

    def _read(self) -> bytes | None:
        """The next line (None at end of input); an over-long one is consumed and returned empty."""
        line = self._source.readline(self._max + 1)
        if not line:
            return None
        if len(line) > self._max and not line.endswith(b"\n"):
            while True:  # drop the rest of the over-long line
                rest = self._source.readline(1 << 20)
                if not rest or rest.endswith(b"\n"):
                    break
            return b""
        return line

    def _read_marked(self) -> bytes | None:
        try:
            return self._read()
        finally:
            self.reading = False

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        while True:
            self.reading = True
            raw = await anyio.to_thread.run_sync(self._read_marked, abandon_on_cancel=True)
            if raw is None:
                raise StopAsyncIteration
            if raw == b"":
                log.warning("stdio_message_too_long", limit_bytes=self._max)
                await self._wire.reply(error_reply(None, INVALID_REQUEST, f"Message over {self._max} bytes refused."))
                continue
            if not raw.strip():
                continue
            text, error = check_line(raw.rstrip(b"\r\n"))
            if error is None:
                assert text is not None
                return text
            log.info("stdio_message_refused", code=error["error"]["code"])
            await self._wire.reply(error)


class _Claimed:
    """The protocol's private stdin and stdout, and the reader of the former once there is one."""

    def __init__(self, source: IO[bytes], sink: IO[bytes]) -> None:
        self.source = source
        self.sink = sink
        self.lines: _Lines | None = None


@contextlib.contextmanager
def _claimed_stdio() -> Iterator[_Claimed]:
    """Private copies of fds 0 and 1 for the protocol; fd 0 then reads /dev/null and fd 1 goes to stderr."""
    wire_in, wire_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    source = os.fdopen(wire_in, "rb", buffering=1 << 16)
    sink = os.fdopen(wire_out, "wb", buffering=0)
    claimed = _Claimed(source, sink)
    try:
        yield claimed
    finally:
        for private, fd in ((wire_in, 0), (wire_out, 1)):
            with contextlib.suppress(OSError):
                os.dup2(private, fd)
        # Stopped by a signal while a thread waits in readline: closing the reader would wait for
        # that thread's lock, forever if the client keeps stdin open. The process is ending; leave it.
        busy = claimed.lines is not None and claimed.lines.reading
        for f in (sink,) if busy else (source, sink):
            with contextlib.suppress(OSError, ValueError):
                f.close()


async def run_stdio(server: MCPServer[Any], *, max_line: int = MAX_LINE) -> None:
    """Serve ``server`` over this process's stdin and stdout until the client closes stdin."""
    with _claimed_stdio() as claimed:
        wire = _Wire(claimed.sink)
        lines = claimed.lines = _Lines(claimed.source, wire, max_line)
        async with stdio_server(lines, wire) as (read_stream, write_stream):  # type: ignore[arg-type]
            await run_on_streams(server, read_stream, write_stream)
