"""The hot path of a repeated fetch: a page's row in Redis with the time its HTTP entry stays fresh,
and the extracted documents this process used last.

A fetch of a URL whose stored response is still fresh needs nothing from PostgreSQL: hishel would
answer from its entry without asking the site, and the page row would not change. So whenever a
fetch goes through the HTTP cache, the page row it answered with is kept in Redis (one JSON value
per page key, shared by every process) with ``fresh_until``, computed by hishel's own freshness
rules from the response headers; until then a repeated fetch is answered from that value with one
GET. Responses hishel would revalidate anyway (``no-cache``, ``Vary`` on a header a request of ours
could change, no freshness lifetime) and redirected fetches get no such value.

Documents are addressed by body hash and mode, so a copy never goes stale; this process keeps the
ones it used last, up to a character budget.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
from hishel import Headers, Response
from hishel._core._headers import parse_cache_control
from hishel._core._spec import get_freshness_lifetime
from hishel._utils import parse_date

#: Request headers of ours a stored response may vary on and still be reused as is: every fetch
#: of this server sends the same value.
SAME_EVERY_REQUEST = frozenset({"accept-encoding"})
#: A value kept for less than this is not worth a write.
MIN_HOT_S = 1.0
_DATES = ("fetched_at", "checked_at")


def page_key(url: str) -> str:
    """The cache key of a page's hot value (``url`` is the page key, the normalised URL)."""
    return f"page:{hashlib.sha256(url.encode()).hexdigest()}"


def fresh_until(headers: httpx.Headers, now: float) -> float | None:
    """Until when hishel (a private cache) would answer with this response without asking the site;
    None when it would revalidate now or on every request."""
    lists: dict[str, list[str]] = {}
    for name, value in headers.multi_items():
        lists.setdefault(name.lower(), []).append(value)
    response = Response(200, Headers(lists))
    if parse_cache_control(response.headers.get("cache-control")).no_cache:
        return None
    vary = {v.strip().lower() for v in ",".join(lists.get("vary", [])).split(",") if v.strip()}
    if not vary <= SAME_EVERY_REQUEST:
        return None
    date = parse_date(response.headers.get("date", ""))
    lifetime = get_freshness_lifetime(response, is_cache_shared=False)
    if date is None or lifetime is None:
        return None
    # hishel counts a response as fresh while int(now - Date) < lifetime.
    until = float(date + lifetime)
    return until if until - now >= MIN_HOT_S else None


def encode(row: Mapping[str, Any], until: float) -> dict[str, Any]:
    """The JSON value of a page row that stays fresh until ``until`` (epoch seconds)."""
    return {
        "fresh_until": until,
        "row": {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()},
    }


def decode(value: Any) -> tuple[dict[str, Any], float] | None:
    """(page row, fresh_until) of a hot value, or None when it is not one."""
    if not isinstance(value, dict) or not isinstance(value.get("row"), dict):
        return None
    until = value.get("fresh_until")
    if not isinstance(until, int | float):
        return None
    row = dict(value["row"])
    try:
        for name in _DATES:
            row[name] = datetime.fromisoformat(row[name])
    except (KeyError, TypeError, ValueError):
        return None
    return row, float(until)


def is_fresh(until: float) -> bool:
    return time.time() < until


class LocalDocuments:
    """The extracted documents this process used last, up to ``max_chars`` of content in all."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.chars = 0
        self._docs: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def get(self, key: str) -> dict[str, Any] | None:
        doc = self._docs.get(key)
        if doc is not None:
            self._docs.move_to_end(key)
        return doc

    def put(self, key: str, doc: dict[str, Any]) -> None:
        size = len(doc["content"])
        if size > self.max_chars or key in self._docs:
            return
        self._docs[key] = doc
        self.chars += size
        while self.chars > self.max_chars:
            _key, gone = self._docs.popitem(last=False)
            self.chars -= len(gone["content"])
