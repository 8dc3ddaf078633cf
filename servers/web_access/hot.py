"""The hot path of a repeated fetch: a page's row in Redis with the time its HTTP entry stays fresh,
and the extracted documents this process used last.

A fetch of a URL whose stored response is still fresh needs nothing from PostgreSQL: hishel would
answer from its entry without asking the site, and the page row would not change. So whenever a
fetch goes through the HTTP cache, the page row it answered with is kept in Redis (one JSON value
per page key, shared by every process) with the stored response's status and headers; a repeated
fetch reads that value with one GET and asks hishel's own state machine (its public sans-I/O
``IdleClient``) whether it would answer from storage now. Responses it would not (``no-cache``, no
freshness lifetime, stale), those that vary on a header a request of ours could change, and
redirected fetches get no such value.

Documents are addressed by body hash and mode, so a copy never goes stale; this process keeps the
ones it used last, up to a character budget.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

import httpx
from hishel import CacheOptions, Entry, FromCache, Headers, IdleClient, Request, Response

#: Request headers of ours a stored response may vary on and still be reused as is: every fetch
#: of this server sends the same value.
SAME_EVERY_REQUEST = frozenset({"accept-encoding"})
#: The options of the HTTP cache's transport (``http_cache.cache_transport``): a private cache.
OPTIONS = CacheOptions(shared=False)
_DATES = ("fetched_at", "checked_at")


def page_key(url: str) -> str:
    """The cache key of a page's hot value (``url`` is the page key, the normalised URL)."""
    return f"page:{hashlib.sha256(url.encode()).hexdigest()}"


def header_lists(headers: httpx.Headers) -> dict[str, list[str]] | None:
    """A response's headers as a hot value keeps them, or None when a later request of ours could
    get a different answer from storage (``Vary`` on a header it may change) or the response has no
    ``Date`` (the age hishel computes would then never grow)."""
    lists: dict[str, list[str]] = {}
    for name, value in headers.multi_items():
        lists.setdefault(name.lower(), []).append(value)
    vary = {v.strip().lower() for v in ",".join(lists.get("vary", [])).split(",") if v.strip()}
    if "date" not in lists or not vary <= SAME_EVERY_REQUEST:
        return None
    return lists


def answers_unasked(url: str, status: int, headers: Mapping[str, list[str]]) -> bool:
    """Whether hishel would now answer a GET of ``url`` from a stored response with ``status`` and
    ``headers`` without asking the site (its own state machine decides: freshness, age, no-cache)."""
    request = Request(method="GET", url=url, headers=Headers({}))
    entry = Entry(
        id=uuid.uuid4(), request=request, response=Response(status_code=status, headers=Headers(dict(headers)))
    )
    return isinstance(IdleClient(options=OPTIONS).next(request, [entry]), FromCache)


def encode(row: Mapping[str, Any], status: int, headers: Mapping[str, list[str]]) -> dict[str, Any]:
    """The JSON value of a page row with the stored response it came from (status and headers)."""
    return {
        "status": status,
        "headers": dict(headers),
        "row": {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()},
    }


class Hot(NamedTuple):
    """A decoded hot value: the page row and the stored response it came from."""

    row: dict[str, Any]
    status: int
    headers: dict[str, list[str]]

    def answers_unasked(self, url: str) -> bool:
        return answers_unasked(url, self.status, self.headers)


def decode(value: Any) -> Hot | None:
    """The page row and stored response of a hot value, or None when it is not one."""
    if not isinstance(value, dict) or not isinstance(value.get("row"), dict):
        return None
    status, headers = value.get("status"), value.get("headers")
    if not isinstance(status, int) or not isinstance(headers, dict):
        return None
    row = dict(value["row"])
    try:
        for name in _DATES:
            row[name] = datetime.fromisoformat(row[name])
    except (KeyError, TypeError, ValueError):
        return None
    return Hot(row, status, headers)


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
