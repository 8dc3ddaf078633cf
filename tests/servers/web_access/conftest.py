"""Real HTTP servers on loopback for the web_access tests, and a dialer that never leaves loopback."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import pytest

Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str, owner: LocalServer) -> None:
        self.owner = owner
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, owner.port), _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self.owner.lock:
            self.owner.connections += 1
        return True


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        with owner.lock:
            owner.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}))
        route = owner.routes.get(self.path.split("?", 1)[0])
        if route is None:
            reply(self, 404, b"not found")
        else:
            route(self)

    do_HEAD = do_GET


@dataclass
class LocalServer:
    """An HTTP/1.0 server in a thread; ``connections`` counts every accepted TCP connection."""

    host: str = "127.0.0.1"
    routes: dict[str, Handler] = field(default_factory=dict)
    port: int = 0  # 0: any free port
    connections: int = 0
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> LocalServer:
        self._server = _Server(self.host, self)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def url(self, path: str = "/") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"


def reply(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: Iterable[tuple[str, str]] = ()) -> None:
    h.send_response(status)
    names = set()
    for name, value in headers:
        names.add(name.lower())
        h.send_header(name, value)
    if "content-type" not in names:
        h.send_header("Content-Type", "text/plain; charset=utf-8")
    if "content-length" not in names:
        h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def redirect(location: str, status: int = 302) -> Handler:
    return lambda h: reply(h, status, b"", [("Location", location)])


def text(body: str, content_type: str = "text/plain; charset=utf-8") -> Handler:
    return lambda h: reply(h, 200, body.encode(), [("Content-Type", content_type)])


@pytest.fixture
def serve() -> Iterator[Callable[..., LocalServer]]:
    """Start loopback servers: ``serve(routes, host="127.0.0.1")``; all are closed after the test."""
    started: list[LocalServer] = []

    def start(routes: dict[str, Handler] | None = None, host: str = "127.0.0.1") -> LocalServer:
        server = LocalServer(host=host, routes=dict(routes or {})).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


class LoopbackDial(httpcore.AsyncNetworkBackend):
    """The lowest network layer for tests: records every dial, reaches loopback only.

    ``remap`` sends a (pretend public) IP to a loopback server, so a test can play the internet
    without any packet leaving the machine; any other non-loopback address fails without a dial.
    """

    def __init__(self, remap: dict[str, tuple[str, int]] | None = None) -> None:
        self.remap = remap or {}
        self.dialed: list[tuple[str, int]] = []
        self._real = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's backend interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.dialed.append((host, port))
        if host in self.remap:
            host, port = self.remap[host]
        ip = ipaddress.ip_address(host)
        inner = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        if not (ip.is_loopback or (inner is not None and inner.is_loopback)):
            raise httpcore.ConnectError(f"the test dialer refuses {host}: tests stay on loopback")
        return await self._real.connect_tcp(host, port, timeout=timeout, local_address=local_address)

    async def sleep(self, seconds: float) -> None:
        await self._real.sleep(seconds)


# ----------------------------------------------------------------------------- service fixtures

LOOPBACK_HOSTS = ["127.0.0.1/32"]


@pytest.fixture
def web_settings(make_settings: Callable[..., Any]) -> Any:
    """Settings that open 127.0.0.1 and keep crawls fast (no politeness delay)."""
    from servers.web_access.settings import Settings

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "embedding_model": "hash-384",
            "allow_hosts": LOOPBACK_HOSTS,
            "crawl_delay_s": 0.0,
            "timeout_s": 5.0,
            "heartbeat_s": 0.2,
            "job_stale_s": 2.0,
        }
        values.update(overrides)
        settings: Settings = make_settings(Settings, **values)
        return settings

    return factory


@pytest.fixture
async def open_service() -> Any:
    """``async with open_service(settings) as svc``: the service on this test's database."""
    from contextlib import asynccontextmanager

    from common.runtime import open_deps
    from servers.web_access.service import WebAccessService

    @asynccontextmanager
    async def opened(settings: Any, embedder: Any = None) -> Any:
        import dataclasses

        async with open_deps("web_access", settings) as deps:
            if embedder is not None:
                deps = dataclasses.replace(deps, embedder=embedder)
            async with WebAccessService.open(deps, settings) as svc:
                yield svc

    return opened
