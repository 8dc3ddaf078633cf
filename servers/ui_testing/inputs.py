"""Arguments of the ui_testing tools turned into domain values: viewports, page keys, waits, pages that fit."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from common.errors import InvalidInput
from common.paging import Page, page_of
from servers.ui_testing.capture import WaitSpec, short
from servers.ui_testing.viewport import PRESETS, Viewport, resolve_viewport

T = TypeVar("T")

DEFAULT_VIEWPORT = "laptop"
MAX_ANSWER = 2000  # bytes of JSON in a default answer
_VIEWPORT = re.compile(r"^(\d{1,6})x(\d{1,6})(?:@(\d{1,2}(?:\.\d{1,3})?))?$")


def parse_viewport(text: str | None) -> Viewport:
    """A preset name (desktop, laptop, tablet, phone) or ``WIDTHxHEIGHT[@SCALE]``; InvalidInput otherwise."""
    text = (text or DEFAULT_VIEWPORT).strip().lower()
    if text in PRESETS:
        return PRESETS[text]
    m = _VIEWPORT.match(text)
    if not m:
        raise InvalidInput(
            f"Invalid viewport {short(text, 40)!r}: use one of {', '.join(PRESETS)} or WIDTHxHEIGHT[@SCALE], "
            "e.g. 1280x800 or 390x844@3."
        )
    return resolve_viewport(None, int(m[1]), int(m[2]), float(m[3]) if m[3] else 1.0)


def viewport_key(vp: Viewport) -> str:
    """How a viewport is named in rows and answers: ``1366x768@1``."""
    return f"{vp.width}x{vp.height}@{vp.scale:g}"


def default_page_key(url: str) -> str:
    """A page key from a URL: host and path for http(s), ``file:<name>`` for a local file, ``inline:<hash>``."""
    parts = urlsplit(url)
    if parts.scheme == "data":
        return f"inline:{hashlib.sha256(url.encode()).hexdigest()[:12]}"
    if parts.scheme == "file":
        return f"file:{Path(unquote(parts.path)).name}"[:200]
    return (parts.netloc + (parts.path or "/"))[:200]


def wait_spec(wait_for: str | None, delay_ms: int, timeout_ms: int) -> WaitSpec:
    """``wait_for`` is a load state (load, domcontentloaded, networkidle) or a selector to wait for."""
    if wait_for in ("load", "domcontentloaded", "networkidle"):
        until, selector = wait_for, None
    else:
        until, selector = "load", wait_for
    if not 0 <= delay_ms <= 10_000 or not 100 <= timeout_ms <= 30_000:
        raise InvalidInput("delay_ms must be 0..10000 and timeout_ms 100..30000.")
    return WaitSpec.model_validate(
        {"until": until, "selector": selector, "delay_ms": delay_ms, "timeout_ms": timeout_ms}
    )


def fit(items: list[T], *, total: int, offset: int, limit: int, fp: str, room: int = MAX_ANSWER - 200) -> Page[T]:
    """A page of at most ``limit`` items whose JSON stays within ``room`` bytes (the next cursor follows the last)."""
    page = page_of(items, total=total, offset=offset, limit=limit, fp=fp)
    while len(page.model_dump_json()) > room and len(page.items) > 1:
        shown = page.items[:-1]
        page = page_of(shown, total=total, offset=offset, limit=len(shown), fp=fp)
    return page


def check_page_key(key: str) -> str:
    key = key.strip()
    if not 1 <= len(key) <= 200:
        raise InvalidInput("page_key must be 1 to 200 characters.")
    return key
