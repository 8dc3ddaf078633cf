"""Fixtures of the ui_testing tests: a tiny HTTP site on 127.0.0.1 and one shared browser per module."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from common.netguard import NetPolicy
from servers.ui_testing.browser import Browser, BrowserOptions

#: The test site runs on loopback, which the browser refuses unless allow-listed.
LOCAL = BrowserOptions(net_policy=NetPolicy.from_entries(["127.0.0.1/32"]))

# No favicon request, and the default font pinned by the browser applies.
HEAD = '<meta charset="utf-8"><link rel="icon" href="data:,"><title>t</title>'


def page(body: str, *, lang: str | None = "en", style: str = "") -> str:
    """A whole HTML document around ``body``."""
    lang_attr = f' lang="{lang}"' if lang else ""
    return f"<!doctype html><html{lang_attr}><head>{HEAD}<style>{style}</style></head><body>{body}</body></html>"


class Site:
    """Pages served from memory; a path not set answers 404."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.redirects: dict[str, str] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                target = site.redirects.get(self.path.split("?")[0])
                if target is not None:
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = site.pages.get(self.path.split("?")[0])
                data = (body or "not found").encode()
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def put(self, path: str, html: str) -> str:
        """Serve ``html`` at ``path``; returns its URL."""
        self.pages[path] = html
        return self.base + path

    def redirect(self, path: str, location: str) -> str:
        """Answer ``path`` with a 302 to ``location``; returns its URL."""
        self.redirects[path] = location
        return self.base + path


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    # Module scope so the browser fixture below can be shared by a module's tests.
    return "asyncio"


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    s = Site()
    thread = threading.Thread(target=s.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield s
    finally:
        s.server.shutdown()
        s.server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
async def browser(anyio_backend: str) -> AsyncIterator[Browser]:
    async with Browser(LOCAL) as b:
        yield b
