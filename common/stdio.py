"""Serving a server over stdio, with every line the client sends answered as JSON-RPC 2.0 asks.

The SDK's stdio transport drops a line it cannot parse or validate without a word, and the client
then waits forever for the answer. Here each line is checked first (with the SDK's own message
model): a line that is not JSON gets a parse error (-32700), JSON that is not a valid message gets
an invalid-request error (-32600) carrying the request's id when one can be read, and a line over
:data:`MAX_LINE` bytes is skipped with an error. Valid lines go to the SDK unchanged.

Like the SDK's transport, this one takes the descriptors over while it serves: fd 0 reads the null
device and fd 1 goes to stderr, so a stray print in a library cannot corrupt the protocol channel;
both are restored when it stops. When stdin and stdout are pipes or sockets (as under every MCP
client) the event loop reads and writes them itself through asyncio's public pipe transports; a
thread hand-off per message, as the SDK's own transport does, cost a call about a fifth of its time.
Regular files and terminals are read and written in worker threads.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import stat
from collections.abc import Iterator
from typing import IO, Any, Protocol

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


class _Sink(Protocol):
    async def write(self, data: bytes) -> None: ...


class _ThreadSink:
    """A file written in a worker thread (regular files, terminals)."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out

    def _put(self, data: bytes) -> None:
        self._out.write(data)
        self._out.flush()

    async def write(self, data: bytes) -> None:
        await anyio.to_thread.run_sync(self._put, data)


class _PipeSink(asyncio.Protocol):
    """A pipe written by the event loop; a write waits while the client is not reading."""

    def __init__(self) -> None:
        self._writable = asyncio.Event()
        self._writable.set()
        self._transport: asyncio.WriteTransport | None = None
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self._transport = transport

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._writable.set()

    async def write(self, data: bytes) -> None:
        if self._lost or self._transport is None or self._transport.is_closing():
            raise BrokenPipeError("the client closed the protocol channel")
        self._transport.write(data)
        await self._writable.wait()


class _Wire:
    """The client's end of stdout: whole lines, one writer at a time (the SDK's and the guard's)."""

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink
        self._lock = anyio.Lock()

    async def write(self, text: str) -> None:
        async with self._lock:
            await self._sink.write(text.encode("utf-8", errors="replace"))

    async def flush(self) -> None:
        """Each write is flushed already."""

    async def reply(self, message: dict[str, Any]) -> None:
        await self.write(json.dumps(message, separators=(",", ":")) + "\n")


#: A line source: the next line with its newline, b"" for an over-long line (dropped), None at the end.
class _Source(Protocol):
    async def next_line(self) -> bytes | None: ...


class _ThreadSource:
    """A file read in a worker thread (regular files, terminals)."""

    def __init__(self, source: IO[bytes], max_line: int) -> None:
        self._source = source
        self._max = max_line
        #: A worker thread is inside ``readline`` (it holds the reader's lock until a line or EOF comes).
        self.reading = False

    def _read(self) -> bytes | None:
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

    async def next_line(self) -> bytes | None:
        self.reading = True
        return await anyio.to_thread.run_sync(self._read_marked, abandon_on_cancel=True)


class _PipeSource(asyncio.Protocol):
    """A pipe read by the event loop, cut into lines; reading pauses while many lines wait unread."""

    #: Unread lines at which reading pauses, and resumes.
    HIGH, LOW = 64, 16

    def __init__(self, max_line: int) -> None:
        self._max = max_line
        self._buf = bytearray()
        self._scanned = 0
        self._discarding = False
        self._lines: collections.deque[bytes | None] = collections.deque()
        self._ready = asyncio.Event()
        self._ended = False
        self._paused = False
        self._transport: asyncio.ReadTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        self._transport = transport

    def _push(self, line: bytes | None) -> None:
        self._lines.append(line)
        self._ready.set()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while True:
            end = self._buf.find(b"\n", self._scanned)
            if end < 0:
                self._scanned = len(self._buf)
                if self._scanned > self._max:  # an over-long line: refuse it once, drop it as it arrives
                    if not self._discarding:
                        self._push(b"")
                    self._discarding = True
                    self._buf.clear()
                    self._scanned = 0
                break
            line = bytes(self._buf[: end + 1])
            del self._buf[: end + 1]
            self._scanned = 0
            if self._discarding:
                self._discarding = False
            elif end > self._max:
                self._push(b"")
            else:
                self._push(line)
        if len(self._lines) >= self.HIGH and not self._paused and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True

    def eof_received(self) -> bool:
        if self._buf and not self._discarding:
            self._push(bytes(self._buf))
        self._buf.clear()
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._push(None)

    async def next_line(self) -> bytes | None:
        while not self._lines:
            self._ready.clear()
            await self._ready.wait()
        line = self._lines.popleft()
        if self._paused and len(self._lines) <= self.LOW and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        if line is None:
            self._lines.appendleft(None)  # the end stays the end for any later read
        return line


class _Lines:
    """``async for line in ...`` over the client's stdin, answering bad lines on the wire."""

    def __init__(self, source: _Source, wire: _Wire, max_line: int) -> None:
        self._source = source
        self._wire = wire
        self._max = max_line

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        while True:
            raw = await self._source.next_line()
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
    """The protocol's private stdin and stdout, and the thread reader of the former if there is one."""

    def __init__(self, source: IO[bytes], sink: IO[bytes]) -> None:
        self.source = source
        self.sink = sink
        self.reader: _ThreadSource | None = None


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
        busy = claimed.reader is not None and claimed.reader.reading
        for f in (sink,) if busy else (source, sink):
            with contextlib.suppress(OSError, ValueError):
                f.close()


def _is_pipe(f: IO[bytes]) -> bool:
    mode = os.fstat(f.fileno()).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


@contextlib.asynccontextmanager
async def _endpoints(claimed: _Claimed, max_line: int) -> Any:
    """The line source and the sink for the claimed descriptors: event-loop pipes, or threads."""
    source, sink = claimed.source, claimed.sink
    if not (_is_pipe(source) and _is_pipe(sink)):
        claimed.reader = _ThreadSource(source, max_line)
        yield claimed.reader, _ThreadSink(sink)
        return
    loop = asyncio.get_running_loop()
    # The transports close what they are given, and set non-blocking mode on the shared file
    # description: they get their own descriptors, and blocking mode is restored for whoever is next.
    reader = os.fdopen(os.dup(source.fileno()), "rb", buffering=0)
    writer = os.fdopen(os.dup(sink.fileno()), "wb", buffering=0)
    read_transport, read_proto = await loop.connect_read_pipe(lambda: _PipeSource(max_line), reader)
    write_transport, write_proto = await loop.connect_write_pipe(_PipeSink, writer)
    try:
        yield read_proto, write_proto
    finally:
        read_transport.close()
        write_transport.close()
        for f in (source, sink):
            with contextlib.suppress(OSError, ValueError):
                os.set_blocking(f.fileno(), True)


async def run_stdio(server: MCPServer[Any], *, max_line: int = MAX_LINE) -> None:
    """Serve ``server`` over this process's stdin and stdout until the client closes stdin."""
    with _claimed_stdio() as claimed:
        async with _endpoints(claimed, max_line) as (lines_in, out):
            wire = _Wire(out)
            lines = _Lines(lines_in, wire, max_line)
            async with stdio_server(lines, wire) as (read_stream, write_stream):  # type: ignore[arg-type]
                await run_on_streams(server, read_stream, write_stream)
