"""Arguments of the ui_testing tools turned into domain values: viewports, page keys, waits, pages that fit."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel

from common.errors import InvalidInput
from common.paging import Page, page_of
from common.tools import compact_json
from servers.ui_testing.capture import WaitSpec, short
from servers.ui_testing.viewport import PRESETS, Viewport, resolve_viewport

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_VIEWPORT = "laptop"
#: Bytes of a default answer as sent: the whole JSON-RPC response line, structured content and text.
MAX_SENT = 2048
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


#: What the SDK adds to every tool result (a version string of up to 20 characters allowed for).
_SERVER_INFO = {
    "io.modelcontextprotocol/serverInfo": {"name": "mcp-suite-ui-testing", "title": "UI testing", "version": "0" * 20}
}


def sent_bytes(answer: BaseModel) -> int:
    """Bytes of ``answer`` on the wire: the JSON-RPC response with its structured content and, as the
    server's tools send it (``compact_text``), the same JSON without nulls as text."""
    structured = answer.model_dump(mode="json")
    result = {
        "_meta": _SERVER_INFO,
        "content": [{"type": "text", "text": compact_json(structured)}],
        "structuredContent": structured,
        "isError": False,
        "resultType": "complete",
    }
    message = {"jsonrpc": "2.0", "id": 10**9, "result": result}
    return len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode())


def trimmed(answer: M, shrink: Callable[[M], M | None]) -> M:
    """``answer`` made smaller by ``shrink`` (None once nothing more can go) until it fits in MAX_SENT bytes as sent."""
    while sent_bytes(answer) > MAX_SENT:
        smaller = shrink(answer)
        if smaller is None:
            break
        answer = smaller
    return answer


def fit(
    items: list[T],
    *,
    total: int,
    offset: int,
    limit: int,
    fp: str,
    answer: Callable[[Page[T]], BaseModel] | None = None,
    room: int = MAX_SENT,
) -> Page[T]:
    """A page of at most ``limit`` items whose ``answer`` (default: the page itself) stays within ``room``
    bytes as sent (:func:`sent_bytes`); the next cursor follows the last item shown."""
    page = page_of(items, total=total, offset=offset, limit=limit, fp=fp)
    while sent_bytes(answer(page) if answer else page) > room and len(page.items) > 1:
        shown = page.items[:-1]
        page = page_of(shown, total=total, offset=offset, limit=len(shown), fp=fp)
    return page


def check_page_key(key: str) -> str:
    key = key.strip()
    if not 1 <= len(key) <= 200:
        raise InvalidInput("page_key must be 1 to 200 characters.")
    return key
