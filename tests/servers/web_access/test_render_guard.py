"""Rendering goes through the browser guard's proxy: one lookup per connection, the checked address dialed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from common.netguard import NetPolicy, Resolver
from common.testing import loopback_hostname
from servers.web_access.render import Renderer, RenderFailed
from tests.servers.web_access.conftest import LocalServer, redirect, text

pytestmark = pytest.mark.anyio

ALLOWED_ONLY = NetPolicy.from_entries(["127.0.0.2/32"])
PAGE = "<html><body><h1>pinned page</h1><img src='{img}'></body></html>"


@pytest.fixture
def pair() -> Iterator[tuple[LocalServer, LocalServer]]:
    """A page server on 127.0.0.2 (allow-listed) and a trap on 127.0.0.1 (loopback), on one port."""
    for _ in range(50):
        trap = LocalServer(host="127.0.0.1").start()
        try:
            site = LocalServer(host="127.0.0.2", port=trap.port).start()
        except OSError:
            trap.close()
            continue
        yield site, trap
        site.close()
        trap.close()
        return
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


def renderer(resolve: Resolver) -> Renderer:
    return Renderer(ALLOWED_ONLY, executable="/usr/bin/chromium", user_agent="test", resolve=resolve)


async def test_render_dials_the_address_the_guard_checked_not_chromiums_own_lookup(
    pair: tuple[LocalServer, LocalServer],
) -> None:
    name = loopback_hostname()  # the system answers 127.0.0.1 (the trap); the guard's resolver 127.0.0.2

    async def resolve(host: str, port: int) -> list[str]:
        if host != name:
            raise OSError("unknown host")  # Chromium's own background requests
        return ["127.0.0.2"]

    site, trap = pair
    site.routes["/page"] = text(PAGE.format(img=f"http://{name}:{site.port}/pixel.png"), "text/html")
    r = renderer(resolve)
    try:
        final_url, html = await r.html(f"http://{name}:{site.port}/page", timeout_s=20)
    finally:
        await r.close()
    assert "pinned page" in html
    assert final_url.startswith(f"http://{name}:")
    assert trap.connections == 0
    assert site.connections >= 2  # the page and its image


async def test_a_name_rebinding_to_loopback_and_a_redirect_to_loopback_are_refused(
    pair: tuple[LocalServer, LocalServer],
) -> None:
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        if host != "rebind.example":
            raise OSError("unknown host")  # Chromium's own background requests
        lookups.append(host)
        return ["127.0.0.2"] if len(lookups) == 1 else ["127.0.0.1"]

    site, trap = pair
    site.routes["/jump"] = redirect(trap.url("/inside"))
    r = renderer(resolve)
    try:
        # The check before the navigation sees 127.0.0.2; the proxy's lookup for the connection 127.0.0.1.
        with pytest.raises(RenderFailed, match=r"ERR_BLOCKED_BY_CLIENT.*127\.0\.0\.1, which is a loopback"):
            await r.html(f"http://rebind.example:{site.port}/page", timeout_s=20)
        with pytest.raises(RenderFailed, match="ERR_BLOCKED_BY_CLIENT"):
            await r.html(site.url("/jump"), timeout_s=20)
    finally:
        await r.close()
    assert len(lookups) >= 2  # the check before the navigation, then the connection(s)
    assert trap.connections == 0
    assert site.connections >= 1  # the redirect was served by the allowed server
