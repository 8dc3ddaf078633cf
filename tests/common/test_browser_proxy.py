"""The browser's SOCKS5 proxy resolves a name once, checks every address and dials only a checked one."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from common.browser_guard import failure_reason
from common.browser_proxy import BrowserProxy, last_failure
from common.netguard import NetPolicy

pytestmark = pytest.mark.anyio

ALLOWED = "127.0.0.2"  # loopback too, but the allow-list below names it
TRAP = "127.0.0.1"


@dataclass
class Listener:
    """A TCP server that answers every connection with its own name and counts connections."""

    name: bytes
    connections: int = 0
    server: asyncio.Server | None = field(default=None, repr=False)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        data = await reader.read(100)
        writer.write(self.name + b":" + data)
        await writer.drain()
        writer.close()


async def listen_pair() -> tuple[Listener, Listener, int]:
    """An allowed listener on 127.0.0.2 and a trap on 127.0.0.1, on the same port."""
    for _ in range(50):
        allowed, trap = Listener(b"allowed"), Listener(b"trap")
        allowed.server = await asyncio.start_server(allowed._handle, ALLOWED, 0)
        port = int(allowed.server.sockets[0].getsockname()[1])
        try:
            trap.server = await asyncio.start_server(trap._handle, TRAP, port)
        except OSError:
            allowed.server.close()
            continue
        return allowed, trap, port
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Listener, Listener, int]]:
    allowed, trap, port = await listen_pair()
    yield allowed, trap, port
    for listener in (allowed, trap):
        assert listener.server is not None
        listener.server.close()


class Rebinding:
    """Answers the allowed address to the first lookup and the trap's to every later one."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return [ALLOWED] if len(self.calls) == 1 else [TRAP]


async def socks_connect(
    proxy: BrowserProxy, host: str, port: int
) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a SOCKS5 connection to ``host:port`` (sent as a name, as Chromium does); the reply code and the stream."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    name = host.encode()
    writer.write(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
    reply = await reader.readexactly(10)
    return reply[1], reader, writer


@pytest.fixture
async def rebinding_proxy() -> AsyncIterator[tuple[BrowserProxy, Rebinding]]:
    resolve = Rebinding()
    proxy = BrowserProxy(NetPolicy.from_entries([f"{ALLOWED}/32"]), resolve=resolve)
    await proxy.start()
    yield proxy, resolve
    await proxy.close()


async def test_a_rebinding_name_is_resolved_once_and_the_checked_address_is_dialed(
    rebinding_proxy: tuple[BrowserProxy, Rebinding], pair: tuple[Listener, Listener, int]
) -> None:
    proxy, resolve = rebinding_proxy
    allowed, trap, port = pair
    code, reader, writer = await socks_connect(proxy, "rebind.example", port)
    assert code == 0
    writer.write(b"hello")
    assert await asyncio.wait_for(reader.read(100), 10) == b"allowed:hello"
    writer.close()
    assert resolve.calls == ["rebind.example"]
    # The next connection is looked up again, answers the loopback trap, and is refused.
    code, _reader, writer = await socks_connect(proxy, "rebind.example", port)
    writer.close()
    assert code == 2
    assert (allowed.connections, trap.connections) == (1, 0)
    assert "127.0.0.1, which is a loopback address" in (last_failure("rebind.example", port) or "")


async def test_one_blocked_address_among_public_ones_refuses_the_connection(
    pair: tuple[Listener, Listener, int],
) -> None:
    _allowed, trap, port = pair

    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.215.14", TRAP]

    proxy = BrowserProxy(NetPolicy(), resolve=resolve)
    await proxy.start()
    try:
        code, _reader, writer = await socks_connect(proxy, "mixed.example", port)
        writer.close()
        code_literal, _reader, writer = await socks_connect(proxy, TRAP, port)
        writer.close()
    finally:
        await proxy.close()
    assert (code, code_literal) == (2, 2)
    assert trap.connections == 0
    why = failure_reason(f"http://mixed.example:{port}/", "net::ERR_SOCKS_CONNECTION_FAILED at http://mixed.example/")
    assert why.startswith("net::ERR_BLOCKED_BY_CLIENT")
    assert "loopback" in why


async def test_internal_names_and_ambiguous_hosts_are_refused_without_a_lookup() -> None:
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["93.184.215.14"]

    proxy = BrowserProxy(NetPolicy(), resolve=resolve)
    await proxy.start()
    try:
        codes = []
        for host in ("localhost", "metadata.google.internal", "0x7f000001", "a b"):
            code, _reader, writer = await socks_connect(proxy, host, 80)
            writer.close()
            codes.append(code)
    finally:
        await proxy.close()
    assert codes == [2, 2, 2, 2]
    assert calls == []


async def test_a_closed_port_is_reported_as_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind((ALLOWED, 0))
        port = probe.getsockname()[1]  # bound but not listening: connections are refused
        proxy = BrowserProxy(NetPolicy.from_entries([f"{ALLOWED}/32"]))
        await proxy.start()
        try:
            code, _reader, writer = await socks_connect(proxy, ALLOWED, port)
            writer.close()
        finally:
            await proxy.close()
    assert code == 5
    assert failure_reason(f"http://{ALLOWED}:{port}/x", "net::ERR_SOCKS_CONNECTION_FAILED") == (
        "net::ERR_CONNECTION_REFUSED"
    )


async def test_a_client_that_does_not_speak_socks5_is_turned_away(pair: tuple[Listener, Listener, int]) -> None:
    allowed, trap, port = pair
    proxy = BrowserProxy(NetPolicy.from_entries([f"{ALLOWED}/32"]))
    await proxy.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(f"GET http://{ALLOWED}:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(100), 10)
        writer.close()
    finally:
        await proxy.close()
    assert not answer.startswith(b"allowed")
    assert (allowed.connections, trap.connections) == (0, 0)
