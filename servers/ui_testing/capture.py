"""Screenshots of a URL or local HTML file: viewport, full page or one element, waits, masks, stored by hash.

Errors a caller can fix: ``InvalidInput`` (bad URL, unreachable page, load timeout, invalid selector,
page over the size ceiling) and ``NotFound`` (a selector that never became visible within its wait).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from common.browser_guard import failure_reason
from common.errors import InvalidInput, NotFound
from servers.ui_testing.browser import REPRO_CSS, Browser, first_line
from servers.ui_testing.images import Rect, StoredImage, blank_rects, store_png, thumbnail
from servers.ui_testing.viewport import PRESETS, Viewport

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

MAX_FULL_PAGE_HEIGHT = 20_000  # CSS px
MAX_PIXELS = 64_000_000  # device pixels in one capture: bounds memory while encoding and diffing
MAX_DELAY_MS = 10_000
URL_SCHEMES = ("http", "https", "file")
#: Inline pages (a component or snippet under test) need no server and can read no local files.
INLINE_HTML = "data:text/html"


class WaitSpec(BaseModel):
    """When the page is ready to capture."""

    model_config = ConfigDict(frozen=True)

    until: Literal["load", "domcontentloaded", "networkidle"] = Field(
        default="load", description="Navigation event to wait for."
    )
    selector: str | None = Field(default=None, max_length=500, description="Also wait until this is visible.")
    delay_ms: int = Field(default=0, ge=0, le=MAX_DELAY_MS, description="Fixed extra wait after the rest.")
    timeout_ms: int = Field(default=10_000, ge=100, le=30_000, description="Bound on the selector wait.")


class CaptureSpec(BaseModel):
    """What to capture and how."""

    model_config = ConfigDict(frozen=True)

    url: str = Field(min_length=1, max_length=4000)
    viewport: Viewport = PRESETS["desktop"]
    full_page: bool = False
    selector: str | None = Field(default=None, max_length=500, description="Capture only this element.")
    wait: WaitSpec = Field(default_factory=WaitSpec)
    mask_selectors: list[str] = Field(default_factory=list, max_length=20)
    mask_rects: list[Rect] = Field(default_factory=list, max_length=20)
    thumbnail: bool = False


class CaptureResult(StoredImage):
    """A stored screenshot (path, hash, size) and where it came from."""

    url: str
    viewport: Viewport
    full_page: bool
    selector: str | None = None
    status: int | None = Field(default=None, description="HTTP status of the page (none for files).")
    thumbnail: StoredImage | None = None


def short(text: str, limit: int = 80) -> str:
    """At most ``limit`` characters of a caller's input, for messages."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_url(url: str) -> str:
    """``url`` if its scheme is http, https or file, or it is an inline ``data:text/html`` page; else ``InvalidInput``."""
    if url[: len(INLINE_HTML)].lower() == INLINE_HTML:
        return url
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES or (parts.scheme != "file" and not parts.netloc):
        raise InvalidInput(f"Cannot open {short(url)!r}: give an http(s):// URL or a local HTML file.")
    return url


async def open_url(page: Page, url: str, wait: WaitSpec, navigation_timeout_ms: int | None = None) -> int | None:
    """Navigate and wait as ``wait`` says; returns the HTTP status (None for files).

    Unreachable pages and timeouts become clear errors; a 4xx/5xx page is still a page and loads.
    The navigation timeout defaults to the browser context's.
    """
    # Heavy: playwright is loaded on first browser use only.
    from playwright.async_api import Error as PWError
    from playwright.async_api import TimeoutError as PWTimeout

    check_url(url)
    try:
        response = await page.goto(url, wait_until=wait.until, timeout=navigation_timeout_ms)
    except PWTimeout as exc:
        raise InvalidInput(f"{short(url)} did not finish loading ({wait.until}) in time; try until='load'.") from exc
    except PWError as exc:
        code = re.search(r"net::ERR_[A-Z_]+", str(exc))
        reason = failure_reason(url, code.group(0)) if code else first_line(str(exc))
        raise InvalidInput(
            f"Could not load {short(url)}: {reason}. Check the address and that the site is up."
        ) from exc
    if wait.selector:
        await wait_visible(page.locator(wait.selector).first, wait.selector, wait.timeout_ms)
    if wait.delay_ms:
        await page.wait_for_timeout(wait.delay_ms)
    return response.status if response is not None and url.startswith("http") else None


async def wait_visible(locator: Locator, selector: str, timeout_ms: int) -> None:
    """Wait until ``locator`` is visible, at most ``timeout_ms``; ``NotFound`` or ``InvalidInput`` otherwise."""
    from playwright.async_api import Error as PWError
    from playwright.async_api import TimeoutError as PWTimeout

    try:
        await locator.wait_for(state="visible", timeout=timeout_ms)
    except PWTimeout as exc:
        raise NotFound(f"Selector {short(selector)!r} was not visible within {timeout_ms} ms.") from exc
    except PWError as exc:
        raise InvalidInput(f"Selector {short(selector)!r} is not usable: {first_line(str(exc), 120)}") from exc


async def shoot(
    page: Page,
    root: Path,
    *,
    viewport: Viewport,
    full_page: bool = False,
    selector: str | None = None,
    mask_selectors: list[str] | None = None,
    mask_rects: list[Rect] | None = None,
    make_thumbnail: bool = False,
    timeout_ms: int = 10_000,
    max_height: int = MAX_FULL_PAGE_HEIGHT,
) -> CaptureResult:
    """Screenshot the loaded ``page`` (viewport, full page or one element) and store it by hash under ``root``."""
    from playwright.async_api import Error as PWError

    masks = [page.locator(s) for s in mask_selectors or []]
    try:
        if selector:
            target = page.locator(selector).first
            await wait_visible(target, selector, timeout_ms)
            box = await target.bounding_box()
            height = box["height"] if box else 0
            width = box["width"] if box else 0
            _check_size(width, height, viewport.scale, max_height, f"element {short(selector, 40)!r}")
            png = await target.screenshot(
                animations="disabled", caret="hide", mask=masks, style=REPRO_CSS, type="png", timeout=timeout_ms
            )
        else:
            if full_page:
                width, height = await page.evaluate(
                    "() => [document.documentElement.scrollWidth,"
                    " Math.max(document.documentElement.scrollHeight, document.body ? document.body.scrollHeight : 0)]"
                )
                _check_size(width, height, viewport.scale, max_height, "page")
            png = await page.screenshot(
                full_page=full_page,
                animations="disabled",
                caret="hide",
                mask=masks,
                style=REPRO_CSS,
                type="png",
                timeout=timeout_ms,
            )
    except PWError as exc:
        raise InvalidInput(f"Screenshot failed: {first_line(str(exc), 160)}") from exc
    stored, thumb = await asyncio.to_thread(_store, png, root, list(mask_rects or []), viewport.scale, make_thumbnail)
    return CaptureResult(
        **stored.model_dump(),
        url=page.url,
        viewport=viewport,
        full_page=full_page and not selector,
        selector=selector,
        thumbnail=thumb,
    )


def _store(
    png: bytes, root: Path, rects: list[Rect], scale: float, make_thumbnail: bool
) -> tuple[StoredImage, StoredImage | None]:
    """Blank, store and thumbnail in a worker thread: Pillow and disk writes would stall the event loop."""
    png = blank_rects(png, rects, scale)
    return store_png(png, root), thumbnail(png, root) if make_thumbnail else None


def _check_size(width: float, height: float, scale: float, max_height: int, what: str) -> None:
    if height > max_height:
        raise InvalidInput(
            f"The {what} is {int(height)} px tall, over the {max_height} px ceiling; "
            "capture the viewport or one element by selector instead."
        )
    if width * height * scale * scale > MAX_PIXELS:
        raise InvalidInput(
            f"The {what} is {int(width)}x{int(height)} px at scale {scale:g}, over {MAX_PIXELS:,} pixels; "
            "use a smaller scale or capture one element."
        )


async def capture(browser: Browser, spec: CaptureSpec, root: Path) -> CaptureResult:
    """Open ``spec.url`` in a fresh context, wait, and store the screenshot under ``root``."""
    check_url(spec.url)
    await browser.net.check(spec.url)
    async with browser.page(spec.viewport) as page:
        status = await open_url(page, spec.url, spec.wait)
        result = await shoot(
            page,
            root,
            viewport=spec.viewport,
            full_page=spec.full_page,
            selector=spec.selector,
            mask_selectors=spec.mask_selectors,
            mask_rects=spec.mask_rects,
            make_thumbnail=spec.thumbnail,
            timeout_ms=spec.wait.timeout_ms,
        )
        return result.model_copy(update={"status": status})
