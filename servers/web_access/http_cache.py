"""The HTTP cache: hishel's RFC 9111 transport over the guarded transport, stored in PostgreSQL.

hishel (``AsyncCacheTransport`` with ``CacheOptions(shared=False)``: a private cache) decides whether
a stored response is fresh, must be revalidated with ``If-None-Match``/``If-Modified-Since``, is
refreshed by a 304 or replaced. This module gives it:

- ``PostgresStorage``, hishel's ``AsyncBaseStorage`` on table ``web_access.http_entries``: one entry
  per cache key and method (a new response replaces the stored one), the body decoded and kept once
  per sha256 in ``web_access.bodies`` (the table the page documents use), so every process and every
  restart share one cache. ``refreshing()`` is the same storage with no lookups: a request through it
  is a plain download whose response is stored as usual (``force_refresh``).
- ``OriginTransport``, the layer under hishel and over ``GuardedTransport``: it runs a per-request
  gate just before a request goes to the network (robots.txt, quotas), and stamps a ``Date`` on a
  response that has none, as RFC 9110 section 6.6.1 asks of a cache, because hishel ages a stored
  response from its ``Date`` header only.

The guarded transport stays the one that connects, so every hop's address is checked as before.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import formatdate

import httpx
from hishel import AsyncBaseStorage, CacheOptions, Entry, Headers, Request, Response
from hishel.httpx import AsyncCacheTransport

from common.db import Database
from common.logging import get_logger
from servers.web_access import store
from servers.web_access.fetcher import BODY_SHA_HEADER, BoundedBody, FetchFailed

log = get_logger(__name__)

#: Largest decoded body stored when the storage is given no ``max_stream_size``.
DEFAULT_MAX_STREAM = 64 * 1024 * 1024
#: ``used_at`` is written on a lookup at most this often (seconds): the retention sweep counts in days.
TOUCH_INTERVAL_S = 3600.0
#: The request extension holding the gate ``OriginTransport`` awaits before the network is used.
GATE = "web_access_gate"
Gate = Callable[[httpx.Request], Awaitable[None]]


def _at(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _lists(headers: Headers) -> dict[str, list[str]]:
    return {name: list(headers.get_list(name) or []) for name in headers}


async def _replay(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def _stored_body(db: Database, sha: str) -> AsyncIterator[bytes]:
    """A stored body, read from the database only if the response is read at all."""
    yield await store.get_body(db, sha) or b""


class PostgresStorage(AsyncBaseStorage):
    """hishel's storage contract on PostgreSQL (see the module docstring).

    A body is saved once the response stream has been read to its end; a stream closed early, a
    body over ``max_stream_size`` (decoded), an encoding that cannot be decoded or a database error
    saves nothing and never fails the reader. Lookups that fail answer "no entries".
    """

    def __init__(
        self,
        db: Database,
        *,
        default_ttl: float | None = None,
        default_tti: float | None = None,
        max_stream_size: int | None = None,
        lookups: bool = True,
    ) -> None:
        super().__init__(default_ttl=default_ttl, default_tti=default_tti, max_stream_size=max_stream_size)
        self.db = db
        self.lookups = lookups

    def refreshing(self) -> PostgresStorage:
        """This storage without lookups: hishel sees a miss, downloads without validators and stores."""
        return PostgresStorage(
            self.db, default_ttl=self.default_ttl, default_tti=self.default_tti,
            max_stream_size=self.max_stream_size, lookups=False,
        )  # fmt: skip

    async def create_entry(
        self, request: Request, response: Response, key: str, *, ttl: float | None = None, tti: float | None = None
    ) -> Entry:
        body = response.stream if response.stream is not None else _replay(b"")
        assert isinstance(body, AsyncIterator)
        entry = Entry(uuid.uuid4(), request, replace(response, stream=body))
        ttl_deadline, tti = self._limits(ttl, tti, time.time())
        saving = self._saving(body, entry, key, ttl_deadline, tti)
        return replace(entry, response=replace(response, stream=saving))

    async def _saving(
        self, source: AsyncIterator[bytes], entry: Entry, key: str, ttl_deadline: float | None, tti: float | None
    ) -> AsyncIterator[bytes]:
        """Yield ``source`` unchanged, and store the entry once it has been read to its end."""
        encoding = entry.response.headers.get("content-encoding", "")
        try:
            decoded: BoundedBody | None = BoundedBody(self.max_stream_size or DEFAULT_MAX_STREAM, encoding, entry.request.url)  # fmt: skip
        except FetchFailed:
            decoded = None  # an encoding we cannot decode is passed on but not stored
        async for chunk in source:
            if decoded is not None:
                try:
                    if decoded.feed(chunk):
                        decoded = None  # over the size limit
                except FetchFailed:
                    decoded = None
            yield chunk
        if decoded is None:
            return
        try:
            if decoded.finish():
                return
        except FetchFailed:
            return
        await self._store(entry, key, decoded.value(), ttl_deadline, tti)

    async def _store(self, entry: Entry, key: str, body: bytes, ttl_deadline: float | None, tti: float | None) -> None:
        headers = _lists(entry.response.headers)
        # The body is kept decoded, so the headers must describe it that way.
        if headers.pop("content-encoding", None) is not None:
            headers["content-length"] = [str(len(body))]
        now = time.time()
        digest = hashlib.sha256(body).hexdigest()

        try:
            await store.put_entry(
                self.db, id=entry.id, key=key, method=entry.request.method, url=entry.request.url,
                request_headers=_lists(entry.request.headers), status=entry.response.status_code,
                response_headers=headers, sha256=digest, body=body, at=_at(now) or datetime.now(UTC),
                ttl_deadline=_at(ttl_deadline), tti_s=tti, expires_at=_at(self._expires_at(ttl_deadline, tti, now)),
            )  # fmt: skip
        except Exception as exc:  # a cache that cannot write serves the response uncached
            log.warning("web_access.http_cache_store_failed", url=entry.request.url[:200], error=str(exc)[:200])

    async def get_entries(self, key: str) -> list[Entry]:
        if not self.lookups:
            return []
        now = time.time()
        try:
            rows = await store.get_entries(self.db, key, _at(now) or datetime.now(UTC))
        except Exception as exc:  # the request goes to the origin instead
            log.warning("web_access.http_cache_read_failed", error=str(exc)[:200])
            return []
        entries = []
        for row in rows:
            tti = row["tti_s"]
            expires_at = _ts(row["expires_at"])
            new_expires = self._expires_at(_ts(row["ttl_deadline"]), tti, now)
            tti_lags = tti is not None and expires_at is not None and new_expires is not None and new_expires - expires_at >= tti / 2  # fmt: skip
            if tti_lags or now - row["used_at"].timestamp() >= TOUCH_INTERVAL_S:
                try:
                    if not await store.touch_entry(self.db, row["id"], _at(now) or datetime.now(UTC), _at(new_expires)):
                        continue  # removed or expired since the lookup
                except Exception as exc:
                    log.warning("web_access.http_cache_touch_failed", error=str(exc)[:200])
            request = Request(row["method"], row["url"], Headers(row["request_headers"]))
            headers = Headers({**row["response_headers"], BODY_SHA_HEADER: [row["body_sha256"]]})
            response = Response(row["status"], headers, _stored_body(self.db, row["body_sha256"]))
            entries.append(Entry(uuid.UUID(bytes=row["id"].bytes), request, response))
        return entries

    async def update_headers(self, id: uuid.UUID, headers: Headers) -> None:
        kept = {name: values for name, values in _lists(headers).items() if name.lower() != BODY_SHA_HEADER}
        try:
            await store.set_entry_headers(self.db, id, kept, datetime.now(UTC))
        except Exception as exc:
            log.warning("web_access.http_cache_update_failed", error=str(exc)[:200])

    async def remove_entry(self, id: uuid.UUID) -> None:
        # The body stays until the retention sweep finds nothing using it.
        try:
            await store.delete_entry(self.db, id)
        except Exception as exc:
            log.warning("web_access.http_cache_remove_failed", error=str(exc)[:200])


class OriginTransport(httpx.AsyncBaseTransport):
    """Under hishel: the request's gate runs before the network is used; a response gets a ``Date``."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        gate = request.extensions.get(GATE)
        if gate is not None:
            await gate(request)
        response = await self.inner.handle_async_request(request)
        if "date" not in response.headers:
            response.headers["Date"] = formatdate(usegmt=True)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def cache_transport(inner: httpx.AsyncBaseTransport, storage: AsyncBaseStorage) -> AsyncCacheTransport:
    """hishel's RFC 9111 cache (private) over ``inner``, which stays the transport that connects."""
    return AsyncCacheTransport(next_transport=OriginTransport(inner), storage=storage, rfc=CacheOptions(shared=False))
