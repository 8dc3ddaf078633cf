"""The browser's only way out: a local SOCKS5 proxy that resolves each name once and dials the checked address.

Chromium is launched with ``--proxy-server=socks5://127.0.0.1:PORT`` and the bypass rule
``<-loopback>`` (so loopback names and literals go through it too). Over SOCKS5 Chromium never
resolves a name itself: every connection (http, https, ws, wss) arrives here as a host name or IP
literal and a port. The proxy resolves the name once with the injected resolver, refuses the
connection if any address is blocked by the ``NetPolicy`` (the same rules as ``common.netguard``),
and otherwise connects to one of exactly those addresses and relays bytes both ways. A name that
answers differently on a later lookup (DNS rebinding) cannot move an open connection; a new
connection is looked up and checked again. A refused connection gets SOCKS5's "not allowed by
ruleset" reply (the page sees a failed load) and a log line.

SOCKS5 rather than an HTTP proxy: a refusal is then a failed load for plain http too (an HTTP
proxy's 403 would be shown as a page), and every connection carries exactly one destination, so no
second request on a kept-alive connection can name another host.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
from collections import OrderedDict

from common.logging import get_logger
from common.netguard import BlockedURL, NetPolicy, Resolver, check_url, checked_addresses, system_resolve

log = get_logger(__name__)

CONNECT_TIMEOUT_S = 15.0
HANDSHAKE_TIMEOUT_S = 10.0
_CHUNK = 65536
_MAX_OUTCOMES = 256

# SOCKS5 reply codes (RFC 1928).
_OK, _NOT_ALLOWED, _NET_UNREACHABLE, _HOST_UNREACHABLE, _REFUSED, _TTL_EXPIRED = 0, 2, 3, 4, 5, 6
_CMD_UNSUPPORTED, _ATYP_UNSUPPORTED = 7, 8

#: Why the last connections to a ``host:port`` failed, in Chromium's words, for error messages.
_outcomes: OrderedDict[str, str] = OrderedDict()


def _key(host: str, port: int) -> str:
    return f"{host.lower().strip('[]')}:{port}"


def _remember(host: str, port: int, why: str | None) -> None:
    key = _key(host, port)
    _outcomes.pop(key, None)
    if why is not None:
        _outcomes[key] = why
        while len(_outcomes) > _MAX_OUTCOMES:
            _outcomes.popitem(last=False)


def last_failure(host: str, port: int) -> str | None:
    """Why this process's browser proxy last failed to connect to ``host:port`` (None if it did not)."""
    return _outcomes.get(_key(host, port))


def _connect_failure(exc: BaseException) -> tuple[int, str]:
    """The SOCKS5 reply code and Chromium's error name for a failed upstream connect."""
    if isinstance(exc, TimeoutError):
        return _TTL_EXPIRED, "net::ERR_CONNECTION_TIMED_OUT"
    code = getattr(exc, "errno", None)
    if code == errno.ECONNREFUSED:
        return _REFUSED, "net::ERR_CONNECTION_REFUSED"
    if code == errno.ENETUNREACH:
        return _NET_UNREACHABLE, "net::ERR_INTERNET_DISCONNECTED"
    if code == errno.EHOSTUNREACH:
        return _HOST_UNREACHABLE, "net::ERR_ADDRESS_UNREACHABLE"
    return _HOST_UNREACHABLE, "net::ERR_CONNECTION_FAILED"


def _reply(code: int) -> bytes:
    return bytes((5, code, 0, 1, 0, 0, 0, 0, 0, 0))


class BrowserProxy:
    """A SOCKS5 proxy on 127.0.0.1 (ephemeral port) that holds every browser connection to ``policy``."""

    def __init__(self, policy: NetPolicy, *, resolve: Resolver = system_resolve) -> None:
        self.policy = policy
        self._resolve = resolve
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def server(self) -> str:
        """The ``--proxy-server`` value for Chromium."""
        return f"socks5://127.0.0.1:{self.port}"

    def launch_option(self) -> dict[str, str]:
        """Playwright's ``proxy`` launch option: this proxy for everything, loopback included."""
        return {"server": self.server, "bypass": "<-loopback>"}

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("browser_proxy.started", port=self.port)

    async def close(self) -> None:
        """Stop listening and cut every relayed connection (safe to call twice)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks, self._tasks = set(self._tasks), set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if server is not None:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the browser hung up, or an upstream broke: the connection just ends
        except Exception as exc:  # one bad connection must not take the proxy down
            log.warning("browser_proxy.error", error=f"{type(exc).__name__}: {str(exc)[:200]}")
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            if await reader.readexactly(1) != b"\x05":
                return  # not SOCKS5 (e.g. a plain HTTP request): closed without an answer
            (count,) = await reader.readexactly(1)
            if 0 not in await reader.readexactly(count):
                writer.write(b"\x05\xff")
                return
            writer.write(b"\x05\x00")
            version, command, _reserved, atyp = await reader.readexactly(4)
            if atyp == 1:
                host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
            elif atyp == 4:
                host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
            elif atyp == 3:
                (length,) = await reader.readexactly(1)
                host = (await reader.readexactly(length)).decode("ascii", "replace")
            else:
                writer.write(_reply(_ATYP_UNSUPPORTED))
                return
            port = int.from_bytes(await reader.readexactly(2), "big")
        if version != 5 or command != 1:
            writer.write(_reply(_CMD_UNSUPPORTED))
            return
        upstream = await self._dial(host, port)
        if isinstance(upstream, int):
            writer.write(_reply(upstream))
            return
        up_reader, up_writer = upstream
        try:
            writer.write(_reply(_OK))
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()

    async def _dial(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | int:
        """A connection to a checked address of ``host`` (resolved once), or the SOCKS5 reply code for the refusal."""
        netloc = f"[{host}]" if ":" in host else host
        try:
            checked = check_url(f"http://{netloc}:{port}/", self.policy)
            addresses = await checked_addresses(checked.host, checked.port, self.policy, self._resolve)
        except BlockedURL as exc:
            log.warning("browser_proxy.refused", host=host[:100], port=port, reason=str(exc)[:300])
            _remember(host, port, f"net::ERR_BLOCKED_BY_CLIENT ({exc})")
            return _NOT_ALLOWED
        except OSError as exc:
            log.info("browser_proxy.unresolved", host=host[:100], port=port, error=str(exc)[:200])
            _remember(host, port, "net::ERR_NAME_NOT_RESOLVED")
            return _HOST_UNREACHABLE
        failure: BaseException = OSError("no address")
        for address in addresses:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    opened = await asyncio.open_connection(str(address), port)
            except (OSError, TimeoutError) as exc:
                failure = exc
                continue
            with contextlib.suppress(OSError):
                opened[1].get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _remember(host, port, None)
            return opened
        code, name = _connect_failure(failure)
        log.info("browser_proxy.connect_failed", host=host[:100], port=port, error=name)
        _remember(host, port, name)
        return code


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then pass the end on (a half-close), so the other direction can finish."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()
