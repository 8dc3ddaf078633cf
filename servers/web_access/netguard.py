"""SSRF protection for the fetcher: a transport that checks every address it dials.

The URL checks and address rules live in ``common.netguard`` (ui_testing's browser uses them too).
``GuardedTransport`` is the real guard: its network backend resolves the host itself, refuses the
connection if *any* resolved address is blocked, and dials the checked IP literal, so a name that
answers differently on a second lookup (DNS rebinding) can never reach a blocked address. TLS SNI
and the Host header still carry the hostname, because httpcore keeps the origin and only the dial uses the IP.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import Self

import anyio
import httpcore
import httpx

from common.netguard import BlockedURL, IPAddress, NetPolicy, Resolver, check_url, checked_addresses, system_resolve


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """A network backend that resolves names itself and dials only checked IP literals.

    ``resolve`` and ``dial`` are injectable so tests can simulate DNS answers and observe dials.
    """

    def __init__(
        self,
        policy: NetPolicy,
        *,
        resolve: Resolver = system_resolve,
        dial: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolve = resolve
        self._dial = dial or httpcore.AnyIOBackend()

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The checked addresses to dial for ``host``: all of them, or BlockedURL if any one is blocked."""
        try:
            return await checked_addresses(host, port, self._policy, self._resolve)
        except OSError as exc:
            raise httpcore.ConnectError(f"could not resolve host {host[:80]!r}: {exc}") from None

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's backend interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = await self.addresses(host, port)
                last: Exception | None = None
                for addr in addresses:
                    try:
                        return await self._dial.connect_tcp(
                            str(addr), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                        )
                    except httpcore.ConnectError as exc:
                        last = exc
                assert last is not None
                raise last
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"connecting to {host[:80]!r} timed out") from None

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's backend interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedURL("Unix sockets are never dialed by the web fetcher.")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


def _httpx_error(exc: Exception) -> httpx.HTTPError | None:
    """The httpx exception for an httpcore one (the same mapping httpx's own transport makes)."""
    mapping: Sequence[tuple[type[Exception], type[httpx.HTTPError]]] = (
        (httpcore.ConnectTimeout, httpx.ConnectTimeout),
        (httpcore.ReadTimeout, httpx.ReadTimeout),
        (httpcore.WriteTimeout, httpx.WriteTimeout),
        (httpcore.PoolTimeout, httpx.PoolTimeout),
        (httpcore.TimeoutException, httpx.TimeoutException),
        (httpcore.ConnectError, httpx.ConnectError),
        (httpcore.ReadError, httpx.ReadError),
        (httpcore.WriteError, httpx.WriteError),
        (httpcore.NetworkError, httpx.NetworkError),
        (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
        (httpcore.LocalProtocolError, httpx.LocalProtocolError),
        (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
        (httpcore.ProtocolError, httpx.ProtocolError),
    )
    for source, target in mapping:
        if isinstance(exc, source):
            return target(str(exc))
    return None


class _GuardedStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._stream:
                yield part
        except Exception as exc:
            mapped = _httpx_error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that re-checks each request's URL and dials only checked addresses.

    HTTP/1.1 only, no proxies (a proxy would dial for us, out of the guard's sight), no redirects
    (the caller follows them one hop at a time). A cache transport may wrap it.
    """

    def __init__(
        self,
        policy: NetPolicy,
        *,
        resolve: Resolver = system_resolve,
        dial: httpcore.AsyncNetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 20,
        keepalive_expiry: float = 30.0,
    ) -> None:
        self.policy = policy
        self.backend = GuardedBackend(policy, resolve=resolve, dial=dial)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
            http1=True,
            http2=False,
            retries=0,
            network_backend=self.backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        check_url(str(request.url), self.policy)
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            response = await self._pool.handle_async_request(core_request)
        except Exception as exc:
            mapped = _httpx_error(exc)
            if mapped is None:
                raise
            raise mapped from exc
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_GuardedStream(response.stream),
            extensions=response.extensions,
        )

    async def __aenter__(self) -> Self:
        await self._pool.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self._pool.__aexit__(exc_type, exc_value, traceback)

    async def aclose(self) -> None:
        await self._pool.aclose()
