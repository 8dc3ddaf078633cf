"""The browser reaches no loopback, private or link-local address unless UI_TESTING_ALLOW_HOSTS lists it."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from common.browser_guard import NetGuard
from common.errors import InvalidInput
from common.netguard import NetPolicy
from common.testing import loopback_hostname
from servers.ui_testing.browser import Browser, BrowserOptions
from servers.ui_testing.capture import CaptureSpec, WaitSpec, capture
from servers.ui_testing.viewport import Viewport
from tests.servers.ui_testing.conftest import Site, page

pytestmark = pytest.mark.anyio

SMALL = Viewport(width=400, height=300, scale=1)


class Trap:
    """An HTTP server that must never be reached: it counts every connection it accepts."""

    def __init__(self, host: str, port: int = 0, body: bytes = b"secret") -> None:
        trap = self
        self.connections = 0
        self.body = body

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = trap.body
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def get_request(self) -> tuple[socket.socket, Any]:
                trap.connections += 1
                return super().get_request()

        self.server = Server((host, port), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def trap() -> Iterator[Trap]:
    # 127.0.0.2 is loopback too, but the test allow-list names only 127.0.0.1/32.
    t = Trap("127.0.0.2")
    yield t
    t.close()


@pytest.fixture(scope="module")
def trap_local() -> Iterator[Trap]:
    t = Trap("127.0.0.1")
    yield t
    t.close()


async def test_cloud_metadata_is_refused_before_the_browser_starts(browser: Browser, tmp_path: Path):
    with pytest.raises(InvalidInput, match=r"link-local.*UI_TESTING_ALLOW_HOSTS"):
        await capture(browser, CaptureSpec(url="http://169.254.169.254/latest/meta-data/", viewport=SMALL), tmp_path)


async def test_loopback_is_refused_without_the_allow_list(trap_local: Trap, tmp_path: Path):
    async with Browser() as strict:
        with pytest.raises(InvalidInput, match=r"loopback address.*UI_TESTING_ALLOW_HOSTS"):
            await capture(strict, CaptureSpec(url=trap_local.url + "/", viewport=SMALL), tmp_path)
        assert not strict.started
    assert trap_local.connections == 0


async def test_ipv6_loopback_is_refused(browser: Browser, tmp_path: Path):
    with pytest.raises(InvalidInput, match=r"::1 is a loopback address"):
        await capture(browser, CaptureSpec(url="http://[::1]:8080/", viewport=SMALL), tmp_path)


async def test_a_decimal_ip_is_refused_even_when_it_means_an_allowed_address(
    browser: Browser, trap_local: Trap, tmp_path: Path
):
    port = trap_local.url.rsplit(":", 1)[1]
    with pytest.raises(InvalidInput, match="non-standard notation"):
        await capture(browser, CaptureSpec(url=f"http://2130706433:{port}/", viewport=SMALL), tmp_path)
    assert trap_local.connections == 0


async def test_a_redirect_from_an_allowed_page_to_a_blocked_address_is_aborted(
    browser: Browser, site: Site, trap: Trap, tmp_path: Path
):
    url = site.redirect("/jump", trap.url + "/inside")
    with pytest.raises(InvalidInput, match="ERR_BLOCKED_BY_CLIENT"):
        await capture(browser, CaptureSpec(url=url, viewport=SMALL), tmp_path)
    assert trap.connections == 0


async def test_sub_resources_from_a_blocked_address_are_aborted_and_the_page_still_captures(
    browser: Browser, site: Site, trap: Trap, tmp_path: Path
):
    body = (
        f'<img src="{trap.url}/pixel.png" onerror="document.body.dataset.img = 1">'
        f"<script>fetch('{trap.url}/api').catch(() => {{ document.body.dataset.fetch = 1; }});</script>"
        "<p>allowed page</p>"
    )
    url = site.put("/loads-blocked", page(body))
    wait = WaitSpec(selector="body[data-img][data-fetch]")
    result = await capture(browser, CaptureSpec(url=url, viewport=SMALL, wait=wait), tmp_path)
    assert result.status == 200
    assert trap.connections == 0


async def test_the_allow_list_opens_a_local_page(browser: Browser, site: Site, tmp_path: Path):
    url = site.put("/ok", page("<p>hello</p>"))
    result = await capture(browser, CaptureSpec(url=url, viewport=SMALL), tmp_path)
    assert result.status == 200


async def test_a_name_resolving_to_a_private_address_is_refused():
    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.1.2.3"]

    guard = NetGuard(NetPolicy(), setting="UI_TESTING_ALLOW_HOSTS", resolve=resolve)
    with pytest.raises(InvalidInput, match=r"resolves to 10\.1\.2\.3, which is a private"):
        await guard.check("https://rebind.example/")
    await guard.check("file:///tmp/x.html")  # files are the allowed roots' business, not the network guard's


async def test_a_web_socket_to_a_blocked_address_is_closed_before_it_connects(
    browser: Browser, site: Site, trap: Trap, tmp_path: Path
):
    ws_url = trap.url.replace("http://", "ws://") + "/socket"
    script = (
        f"<script>const ws = new WebSocket('{ws_url}');"
        "ws.onclose = () => { document.body.dataset.closed = 1; };</script><p>ws</p>"
    )
    url = site.put("/ws-blocked", page(script))
    await capture(browser, CaptureSpec(url=url, viewport=SMALL, wait=WaitSpec(selector="body[data-closed]")), tmp_path)
    assert trap.connections == 0


ALLOWED_ONLY = NetPolicy.from_entries(["127.0.0.2/32"])


def pinned_pair() -> tuple[Trap, Trap]:
    """A page server on 127.0.0.2 (allow-listed) and a trap on 127.0.0.1 (loopback, refused), on one port."""
    for _ in range(50):
        allowed = Trap("127.0.0.2")
        port = allowed.server.server_address[1]
        try:
            return allowed, Trap("127.0.0.1", port)
        except OSError:
            allowed.close()
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


async def test_the_browser_dials_the_address_the_guard_checked_not_its_own_lookup(tmp_path: Path):
    # The guard's resolver answers the allow-listed 127.0.0.2; the system's (which Chromium or
    # Playwright would use for a second lookup) answers 127.0.0.1, where the trap listens.
    name = loopback_hostname()

    async def resolve(host: str, port: int) -> list[str]:
        if host != name:
            raise OSError("unknown host")  # Chromium's own background requests
        return ["127.0.0.2"]

    allowed, trap = pinned_pair()
    port = trap.server.server_address[1]
    script = (
        f"<script>const ws = new WebSocket('ws://{name}:{port}/socket');"
        "ws.onclose = () => { document.body.dataset.ws = 1; };"
        f"fetch('https://{name}:{port}/tls').catch(() => {{ document.body.dataset.tls = 1; }});</script><p>pinned</p>"
    )
    allowed.body = script.encode()
    try:
        async with Browser(BrowserOptions(net_policy=ALLOWED_ONLY, resolve=resolve)) as pinned:
            wait = WaitSpec(selector="body[data-ws][data-tls]")
            result = await capture(
                pinned, CaptureSpec(url=f"http://{name}:{port}/", viewport=SMALL, wait=wait), tmp_path
            )
    finally:
        allowed.close()
        trap.close()
    assert result.status == 200
    assert trap.connections == 0
    assert allowed.connections >= 3  # the page (http), the https tunnel and the web socket


async def test_names_that_rebind_to_loopback_after_the_check_are_refused_over_http_https_and_ws(
    tmp_path: Path,
):
    lookups: dict[str, int] = {}

    async def resolve(host: str, port: int) -> list[str]:
        if not host.endswith(".rebind.example"):
            raise OSError("unknown host")  # Chromium's own background requests
        lookups[host] = lookups.get(host, 0) + 1
        return ["127.0.0.2"] if lookups[host] == 1 else ["127.0.0.1"]

    allowed, trap = pinned_pair()
    port = trap.server.server_address[1]
    script = (
        f"<img src='http://a.rebind.example:{port}/pixel.png' onerror='document.body.dataset.img = 1'>"
        f"<script>fetch('https://b.rebind.example:{port}/api').catch(() => {{ document.body.dataset.tls = 1; }});"
        f"const ws = new WebSocket('ws://c.rebind.example:{port}/socket');"
        "ws.onclose = () => { document.body.dataset.ws = 1; };</script><p>page</p>"
    )
    allowed.body = script.encode()
    try:
        async with Browser(BrowserOptions(net_policy=ALLOWED_ONLY, resolve=resolve)) as guarded:
            for sub in ("a", "b", "c"):  # the first lookup of each name: the allowed address
                await guarded.net.check(f"http://{sub}.rebind.example:{port}/")
            wait = WaitSpec(selector="body[data-img][data-tls][data-ws]")
            result = await capture(
                guarded, CaptureSpec(url=f"http://127.0.0.2:{port}/", viewport=SMALL, wait=wait), tmp_path
            )
            # A navigation whose check saw the allowed address and whose connection would see loopback.
            with pytest.raises(InvalidInput, match=r"ERR_BLOCKED_BY_CLIENT.*127\.0\.0\.1, which is a loopback"):
                await capture(guarded, CaptureSpec(url=f"http://d.rebind.example:{port}/", viewport=SMALL), tmp_path)
    finally:
        allowed.close()
        trap.close()
    assert result.status == 200
    assert trap.connections == 0
    assert all(lookups[f"{sub}.rebind.example"] >= 2 for sub in "abcd")


async def test_webrtc_sends_nothing_to_a_blocked_address_around_the_proxy(browser: Browser, trap: Trap):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.2", 0))
    udp.setblocking(False)
    port = udp.getsockname()[1]
    tcp_port = trap.server.server_address[1]
    gather = """async ([udp, tcp]) => {
      const pc = new RTCPeerConnection({iceServers: [
        {urls: `stun:127.0.0.2:${udp}`},
        {urls: [`turn:127.0.0.2:${udp}?transport=udp`, `turn:127.0.0.2:${tcp}?transport=tcp`],
         username: 'u', credential: 'p'}]});
      pc.createDataChannel('d');
      const done = new Promise(resolve => {
        pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') resolve(true); };
        setTimeout(() => resolve(false), 8000);
      });
      await pc.setLocalDescription(await pc.createOffer());
      const complete = await done;
      pc.close();
      return complete;
    }"""
    try:
        async with browser.page(SMALL) as tab:
            await tab.set_content("<p>webrtc</p>")
            await tab.evaluate(gather, [port, tcp_port])
        with pytest.raises(BlockingIOError):
            udp.recv(2048)  # no STUN or TURN datagram arrived
    finally:
        udp.close()
    assert trap.connections == 0
