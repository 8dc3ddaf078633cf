"""Headless Chromium for screenshots and JS-rendered fetches, started on first use.

Chromium does its own networking, out of the guarded transport's sight, so it is launched with all
its traffic (the document, redirect hops, scripts, images, XHR, web sockets) going through the shared
browser guard's proxy (``common.browser_guard``): each connection's host is resolved once, every
address checked by the same rules, and the checked address dialed, so DNS rebinding is held there as
it is in the plain fetcher. Service workers are blocked; pages never load local files.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from common.browser_guard import GUARD_ARGS, NetGuard, failure_reason
from common.chromium import close_quietly, launch_args
from common.errors import SuiteError
from common.logging import get_logger
from common.netguard import BlockedURL, NetPolicy, Resolver, check_url, system_resolve
from servers.web_access.netguard import GuardedBackend

if TYPE_CHECKING:
    from playwright.async_api import Browser, Playwright

log = get_logger(__name__)

THUMB_WIDTH = 320
THUMB_MAX_HEIGHT = 960
MAX_FULL_PAGE_HEIGHT = 16_000


class RenderFailed(SuiteError):
    """The browser could not load or capture the page; the message says why."""


@dataclass(frozen=True)
class Capture:
    final_url: str
    png: bytes
    thumb: bytes
    width: int
    height: int


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if len(png) < 24 or png[:8] != b"\x89PNG\r\n\x1a\n":
        raise RenderFailed("The browser returned something that is not a PNG.")
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


class Renderer:
    """One Chromium per process, shared by the calls, closed with the service."""

    def __init__(
        self, policy: NetPolicy, *, executable: str | None, user_agent: str, resolve: Resolver = system_resolve
    ) -> None:
        self.policy = policy
        self.executable = executable
        self.user_agent = user_agent
        self._guard = GuardedBackend(policy, resolve=resolve)
        # Every connection Chromium opens goes through the guard's proxy, started and stopped with it.
        self._net = NetGuard(policy, setting="WEB_ACCESS_ALLOW_HOSTS", resolve=resolve)
        self._lock = asyncio.Lock()
        self._pw: Playwright | None = None
        self._browser: Browser | None = None

    async def _ensure(self) -> Browser:
        async with self._lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            await self._shutdown()
            path = self.executable or shutil.which("chromium") or shutil.which("chromium-browser")
            if not path or not await anyio.Path(path).exists():
                raise RenderFailed(
                    "Chromium was not found; install it (Debian: apt-get install chromium) or set "
                    "WEB_ACCESS_BROWSER_PATH."
                )
            # Heavy: loaded on first browser use only, never at server start-up.
            from playwright.async_api import Error as PWError
            from playwright.async_api import async_playwright

            try:
                self._pw = await async_playwright().start()
                self._browser = await self._pw.chromium.launch(
                    executable_path=path,
                    headless=True,
                    args=launch_args(["--mute-audio", *GUARD_ARGS]),
                    **await self._net.launch_options(),
                )
            except (PWError, OSError) as exc:
                await self._shutdown()
                raise RenderFailed(f"Chromium at {path} failed to start: {str(exc).splitlines()[0][:200]}") from None
            return self._browser

    @contextlib.asynccontextmanager
    async def _page(self, width: int, height: int, timeout_s: float) -> Any:
        browser = await self._ensure()
        ctx = await browser.new_context(
            viewport={"width": width, "height": height}, user_agent=self.user_agent, service_workers="block",
            locale="en-US", timezone_id="UTC",
        )  # fmt: skip
        try:
            ctx.set_default_timeout(timeout_s * 1000)
            yield await ctx.new_page()
        finally:
            with contextlib.suppress(Exception):  # the browser may be gone already; closing is best effort
                await ctx.close()

    async def _goto(self, page: Any, url: str, timeout_s: float) -> None:
        from playwright.async_api import Error as PWError

        checked = check_url(url, self.policy)
        await self._guard.addresses(checked.host, checked.port)
        try:
            response = await page.goto(str(checked.url), wait_until="load", timeout=timeout_s * 1000)
        except PWError as exc:
            why = failure_reason(url, str(exc).splitlines()[0])
            raise RenderFailed(f"The browser could not load {url[:80]!r}: {why[:300]}") from None
        if response is None:
            raise RenderFailed(f"The browser got no response for {url[:80]!r}.")
        with contextlib.suppress(PWError):  # pages that keep connections open never go idle; load is enough
            await page.wait_for_load_state("networkidle", timeout=min(3.0, timeout_s) * 1000)

    async def html(self, url: str, timeout_s: float) -> tuple[str, str]:
        """(final URL, serialised DOM) of ``url`` after its scripts ran."""
        try:
            async with asyncio.timeout(timeout_s + 5):
                async with self._page(1280, 900, timeout_s) as page:
                    await self._goto(page, url, timeout_s)
                    return str(page.url), str(await page.content())
        except TimeoutError:
            raise RenderFailed(f"Rendering {url[:80]!r} took longer than {timeout_s:g} s.") from None

    async def screenshot(self, url: str, *, full_page: bool, width: int, height: int, timeout_s: float) -> Capture:
        """A PNG of ``url`` (the viewport, or the whole page up to a height ceiling) and a thumbnail."""
        try:
            async with asyncio.timeout(timeout_s + 10):
                async with self._page(width, height, timeout_s) as page:
                    await self._goto(page, url, timeout_s)
                    clip = None
                    if full_page:
                        total = int(await page.evaluate("document.documentElement.scrollHeight"))
                        if total > MAX_FULL_PAGE_HEIGHT:
                            clip = {"x": 0, "y": 0, "width": width, "height": MAX_FULL_PAGE_HEIGHT}
                    png = await page.screenshot(full_page=full_page, clip=clip, type="png")
                    final_url = str(page.url)
                w, h = png_size(png)
                thumb = await self._thumbnail(png, w, h, timeout_s)
        except TimeoutError:
            raise RenderFailed(f"Capturing {url[:80]!r} took longer than {timeout_s:g} s.") from None
        return Capture(final_url, png, thumb, w, h)

    async def _thumbnail(self, png: bytes, width: int, height: int, timeout_s: float) -> bytes:
        thumb_h = max(1, min(THUMB_MAX_HEIGHT, round(height * THUMB_WIDTH / max(width, 1))))
        data = base64.b64encode(png).decode("ascii")
        async with self._page(THUMB_WIDTH, thumb_h, timeout_s) as page:
            await page.set_content(
                f'<body style="margin:0"><img style="width:{THUMB_WIDTH}px;display:block" '
                f'src="data:image/png;base64,{data}"></body>',
                wait_until="load",
            )
            shot: bytes = await page.screenshot(type="png")
            return shot

    async def close(self) -> None:
        async with self._lock:
            await self._shutdown()

    async def _shutdown(self) -> None:
        browser, pw = self._browser, self._pw
        self._browser = self._pw = None
        await close_quietly(browser, pw)
        await self._net.close()


__all__ = ["BlockedURL", "Capture", "RenderFailed", "Renderer", "png_size"]
