"""The stdio transport, read and written on the event loop instead of through worker threads.

The SDK's ``stdio_server()`` wraps stdin and stdout in anyio's thread-backed files: every line read
and every answer written (a write, then a flush) is a hop to a worker thread and back. Measured on
this 2-core machine with a bare server: 1.1-1.4 ms per round trip that way, 0.7-0.95 ms with the
pipes on the event loop. A tool call is a few milliseconds, so that is worth having.

Only pipes and sockets take this path (that is how MCP clients launch servers). A terminal, a
regular file or an stdout shared with stderr keeps the SDK's transport: putting a descriptor into
non-blocking mode changes it for every process sharing it, which is harmless for a private pipe
and not for a shell's terminal or a log file that stderr also writes to.

Like the SDK, the transport takes the descriptors over while it serves: fd 0 reads the null device
and fd 1 goes to stderr, so a stray print in a library cannot corrupt the protocol channel. Both
are put back when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator
from typing import Any

from common.logging import get_logger

log = get_logger(__name__)

#: Longest line accepted from the client. asyncio's reader needs a bound; a tool argument above
#: this (a 64 MiB JSON message) is refused as a parse error instead of exhausting memory.
MAX_LINE = 64 * 1024 * 1024


#: Which transport this process serves on ("event-loop" or "sdk"), for diagnostics and tests.
transport_in_use: str | None = None


class PipeLines:
    """``async for line in ...`` over the client's pipe, as the SDK's ``stdio_server`` expects."""

    def __init__(self, reader: asyncio.StreamReader, limit: int) -> None:
        self._reader = reader
        self._limit = limit

    def __aiter__(self) -> PipeLines:
        return self

    async def __anext__(self) -> str:
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise StopAsyncIteration from None
            line = exc.partial  # the last line had no newline
        except asyncio.LimitOverrunError as exc:
            await self._skip_line(exc.consumed)
            log.warning("stdio_message_too_long", limit_bytes=self._limit)
            # Not valid JSON: the SDK drops it as it drops any unparsable line, and reads on.
            return '{"message too long": true'
        return line.decode("utf-8", errors="replace")

    async def _skip_line(self, consumed: int) -> None:
        """Drop the rest of an over-long line, up to and including its newline."""
        while True:
            try:
                await self._reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await self._reader.readexactly(exc.consumed)
            except asyncio.IncompleteReadError:
                return


class PipeWriter:
    """``write`` and ``flush`` as the SDK's ``stdio_server`` calls them, without a thread."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, text: str) -> None:
        self._writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._writer.drain()


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _same_file(a: int, b: int) -> bool:
    try:
        sa, sb = os.fstat(a), os.fstat(b)
    except OSError:
        return True
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def usable() -> bool:
    """Whether stdin and stdout are private pipes this transport may make non-blocking."""
    return _is_pipe(0) and _is_pipe(1) and not _same_file(1, 2) and not _same_file(0, 2)


@contextlib.asynccontextmanager
async def pipe_streams(max_line: int = MAX_LINE) -> AsyncIterator[tuple[PipeLines, PipeWriter]]:
    """The client's pipes as event-loop streams; fds 0 and 1 diverted meanwhile (see module doc)."""
    loop = asyncio.get_running_loop()
    wire_in, wire_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    in_flags = os.get_blocking(wire_in)
    out_flags = os.get_blocking(wire_out)
    read_transport: asyncio.ReadTransport | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        reader = asyncio.StreamReader(limit=max_line, loop=loop)
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
            os.fdopen(wire_in, "rb", buffering=0, closefd=False),
        )
        write_transport, protocol = await loop.connect_write_pipe(
            lambda: _WriteProtocol(loop), os.fdopen(wire_out, "wb", buffering=0, closefd=False)
        )
        writer = asyncio.StreamWriter(write_transport, protocol, None, loop)
        yield PipeLines(reader, max_line), PipeWriter(writer)
    finally:
        if writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.drain(), timeout=5)
            writer.close()
        if read_transport is not None:
            read_transport.close()
        await asyncio.sleep(0)  # let the transports drop their descriptors before they are restored
        for private, fd, blocking in ((wire_in, 0, in_flags), (wire_out, 1, out_flags)):
            with contextlib.suppress(OSError):
                os.set_blocking(private, blocking)
                os.dup2(private, fd)
            with contextlib.suppress(OSError):
                os.close(private)


class _WriteProtocol(asyncio.streams.FlowControlMixin, asyncio.Protocol):
    """Flow control for the write pipe (``drain`` waits while the client is not reading)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._closed: asyncio.Future[None] = loop.create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self._closed.done():
            self._closed.set_result(None)

    def _get_close_waiter(self, stream: Any) -> asyncio.Future[None]:
        return self._closed


async def run_stdio(server: Any, *, max_line: int = MAX_LINE) -> None:
    """Serve ``server`` (an MCPServer) over stdio, on the event loop when the pipes allow it."""
    from mcp.server.stdio import stdio_server

    global transport_in_use
    lowlevel = getattr(server, "_lowlevel_server", None)
    if lowlevel is None or not usable():
        transport_in_use = "sdk"
        log.info("stdio_transport", transport=transport_in_use)
        await server.run_stdio_async()
        return
    transport_in_use = "event-loop"
    log.info("stdio_transport", transport=transport_in_use)
    async with pipe_streams(max_line) as (lines, out), stdio_server(lines, out) as (read_stream, write_stream):  # type: ignore[arg-type]
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
