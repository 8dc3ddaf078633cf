"""The web_access service: fetching through the SSRF guard and a PostgreSQL page cache, links,
crawls, web search with a searchable history, the usage ledger and screenshots. No MCP here.

A fetch goes: canonical URL (``check_url``) and its normal form (the page key) -> the stored page
when the caller's ``max_age`` allows it -> otherwise the HTTP client, whose hishel cache
(``http_cache``, in PostgreSQL) answers from a fresh entry, or revalidates a stale one (ETag /
Last-Modified; a 304 refreshes it without a download), or downloads; robots.txt and the quota are
checked only when a request is about to reach the network. The page row then records the answer (a
download's body once per sha256). The readable document of a body is extracted once per mode and
stored, so paging with ``start`` reads the database, never the site.

The answer's page row is also kept in Redis until its HTTP entry would go stale (``hot.py``), so a
repeated fetch of a fresh page is one Redis GET; its ledger row is written after the answer.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import asyncpg
import httpx

from common.errors import InvalidInput, NotFound, SuiteError
from common.jobs import Jobs
from common.logging import get_logger
from common.netguard import NetPolicy, check_url
from common.paging import decode_cursor, fingerprint, page_of, slice_page
from common.retrieval import any_word_tsquery, rrf
from common.runtime import Deps
from common.safefiles import write_once
from common.workers import Periodic
from servers.web_access import hot, store
from servers.web_access.crawl import Crawler
from servers.web_access.extract import extract, page
from servers.web_access.fetcher import FetchResult, build_client, fetch
from servers.web_access.http_cache import GATE, PostgresStorage, cache_transport
from servers.web_access.links import extract_links, normalize_url
from servers.web_access.models import (
    FetchedPage,
    HostUsage,
    LinkItem,
    LinkList,
    PastSearch,
    QuotaState,
    Screenshot,
    SearchAnswer,
    SearchHistory,
    SearchHit,
    UsageReport,
    UsageRow,
)
from servers.web_access.netguard import GuardedTransport
from servers.web_access.render import Renderer
from servers.web_access.robots import RobotsAnswer, RobotsCache, robots_fetcher
from servers.web_access.search import SearchFailed, configured_provider
from servers.web_access.settings import Settings
from servers.web_access.usage import Ledger, QuotaExceeded

if TYPE_CHECKING:
    from common.embeddings import Embedder

log = get_logger(__name__)

SCHEMA = "web_access"
#: A plain fetch whose readable text is shorter than this is rendered in a browser when render=True.
RENDER_MIN_CHARS = 200
MAX_LINKS = 5_000
#: Width of searches.embedding (the default MiniLM model).
EMBED_DIM = 384
#: Largest document kept in the Redis hot copy.
HOT_MAX_CHARS = 1_000_000
#: Characters of extracted documents one process keeps in memory (by body hash, so never stale).
LOCAL_DOCS_MAX_CHARS = 8_000_000
Progress = Callable[[float, float | None, str], Awaitable[None]]


def utcnow() -> datetime:
    return datetime.now(UTC)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class RobotsDisallowed(InvalidInput):
    """robots.txt forbids the fetch."""


@dataclass
class Acquired:
    """A page row and how it was obtained for this call."""

    row: dict[str, Any]
    from_cache: bool
    revalidated: bool
    hot: bool = False  # answered from the Redis hot copy of the page row


class WebAccessService:
    """Every operation of the web_access server (see the module docstring)."""

    def __init__(self, deps: Deps, settings: Settings) -> None:
        self.deps = deps
        self.settings = settings
        self.policy = NetPolicy.from_entries(settings.allow_hosts)
        self.http_cache = PostgresStorage(deps.db, max_stream_size=settings.max_bytes)
        # hishel wraps the guarded transport, which stays the one that connects.
        cached = cache_transport(GuardedTransport(self.policy), self.http_cache)
        self.client = build_client(self.policy, transport=cached, user_agent=settings.user_agent)
        # robots.txt has its own shared cache (Redis), so it is fetched past the HTTP cache.
        self.direct_client = build_client(self.policy, user_agent=settings.user_agent)
        # Providers are operator-configured, so they go through a plain client (see search.py).
        self.search_client = httpx.AsyncClient(trust_env=False, follow_redirects=True, headers={"User-Agent": settings.user_agent})  # fmt: skip
        self.ledger = Ledger(deps.db, settings.quotas, deps.background)
        self.local_docs = hot.LocalDocuments(LOCAL_DOCS_MAX_CHARS)
        self._robots_get = robots_fetcher(self.direct_client, self.policy, user_agent=settings.user_agent)
        self.robots = RobotsCache(self._fetch_robots, ttl_s=settings.robots_ttl_s)
        self.jobs = Jobs(deps.db, SCHEMA, heartbeat_s=settings.heartbeat_s, stale_after_s=settings.job_stale_s)
        self.renderer = Renderer(self.policy, executable=settings.browser_path, user_agent=settings.user_agent)
        self.crawler = Crawler(self)

    @classmethod
    @asynccontextmanager
    async def open(cls, deps: Deps, settings: Settings) -> AsyncIterator[WebAccessService]:
        """The running service: HTTP clients open, interrupted crawls marked; all closed on exit."""
        svc = cls(deps, settings)
        sweeper = Periodic("web_access-sweep", svc.sweep, interval_s=settings.sweep_interval_s)
        async with svc.client, svc.direct_client, svc.search_client, sweeper:
            try:
                await svc.jobs.recover()
                yield svc
            finally:
                await svc.jobs.close()
                await svc.renderer.close()
                await svc.ledger.flush()

    async def sweep(self) -> tuple[int, int, int]:
        """Retention: old pages, unused bodies (their documents go with them) and old ledger rows."""
        s = self.settings

        async def run(conn: asyncpg.Connection) -> tuple[int, int, int, int]:
            return await store.sweep(conn, s.cache_days, s.usage_days)

        pages, entries, bodies, requests = await self.deps.db.run_in_transaction(run)
        if pages or entries or bodies or requests:
            log.info("web_access.swept", pages=pages, http_entries=entries, bodies=bodies, requests=requests)
        return pages, bodies, requests

    # ------------------------------------------------------------------------------- fetching

    def _timeout(self, timeout_s: float | None) -> float:
        if timeout_s is None:
            return min(self.settings.timeout_s, self.settings.max_timeout_s)
        if not 0 < timeout_s <= self.settings.max_timeout_s:
            raise InvalidInput(f"timeout_s must be above 0 and at most {self.settings.max_timeout_s:g} seconds.")
        return timeout_s

    async def _fetch_robots(self, robots_url: str) -> RobotsAnswer:
        """A robots.txt answer, shared by every process through the cache for ``robots_ttl_s``."""
        started = time.monotonic()
        host = httpx.URL(robots_url).host
        key = f"robots:{sha256(robots_url.encode())}"
        shared = await self.deps.cache.get(key)
        if isinstance(shared, dict) and isinstance(shared.get("status"), int) and isinstance(shared.get("body"), str):
            answer = RobotsAnswer(shared["status"], shared["body"].encode("latin-1"))
            self.ledger.record_later("robots", host, "cache", status=answer.status, size=len(answer.body))
            return answer
        answer = await self._robots_get(robots_url)
        outcome = "error" if answer.status is None else "network"
        await self.ledger.record(
            "robots", host, outcome, status=answer.status, size=len(answer.body),
            latency_ms=(time.monotonic() - started) * 1000,
        )  # fmt: skip
        # Only definite answers are shared: an unreachable site or a 429/5xx is asked again soon by each process.
        if answer.status is not None and answer.status < 500 and answer.status != 429:
            body = answer.body.decode("latin-1")
            await self.deps.cache.set(key, {"status": answer.status, "body": body}, ttl_s=self.settings.robots_ttl_s)
        return answer

    async def robots_allow(self, url: str) -> bool:
        """Whether robots.txt lets this server's user agent fetch ``url``."""
        return await self.robots.allowed(url, self.settings.user_agent)

    def cache_key(self, url: str) -> tuple[str, str]:
        """(normalised URL used as the cache key, host) of a URL the guard accepts."""
        checked = check_url(url, self.policy)
        return normalize_url(str(checked.url)) or str(checked.url), checked.host

    async def acquire(
        self,
        url: str,
        *,
        provider: str = "fetch",
        timeout_s: float | None = None,
        max_age_s: float | None = None,
        force_refresh: bool = False,
        obey_robots: bool = True,
    ) -> Acquired:
        """The page row for ``url``: stored and still usable, revalidated (304), or downloaded now.

        hishel decides freshness and revalidation; ``max_age_s`` is the caller's own limit on top of
        it (a page checked with its site at most that long ago is reused, else hishel must ask the
        site: ``Cache-Control: no-cache``), and ``force_refresh`` downloads past the stored entry.
        The Redis hot copy of the page row answers first while the entry it came from is fresh (``hot.py``).
        """
        timeout = self._timeout(timeout_s)
        key, host = self.cache_key(url)
        db = self.deps.db
        if not force_refresh:
            kept = await self._hot_page(key)
            if kept is not None:
                row = kept.row
                usable = kept.answers_unasked(key) if max_age_s is None else self._checked_within(row, max_age_s)
                if usable:
                    self.ledger.record_later(provider, host, "cache", status=row["status"])
                    return Acquired(row, True, False, hot=True)
        if max_age_s is not None and not force_refresh:
            stored = await store.get_page_by_url(db, key)
            if stored is not None and self._checked_within(stored, max_age_s):
                self.ledger.record_later(provider, host, "cache", status=stored["status"])
                return Acquired(stored, True, False)
        gated = False

        async def gate(request: httpx.Request) -> None:
            # Only a request about to reach the network is checked; a cache answer needs neither.
            nonlocal gated
            if gated:
                return
            gated = True
            if obey_robots and self.settings.obey_robots and not await self.robots_allow(key):
                await self.ledger.record(provider, host, "refused", error="robots.txt")
                raise RobotsDisallowed(
                    f"robots.txt of {host} disallows fetching {key[:80]!r}; it is not fetched "
                    "(an operator can set WEB_ACCESS_OBEY_ROBOTS=false)."
                )
            await self.ledger.check(provider, host)

        extensions: dict[str, Any] = {GATE: gate}
        if force_refresh:
            extensions["caching"] = {"storage": self.http_cache.refreshing()}
        started = time.monotonic()
        try:
            result = await fetch(
                key, client=self.client, policy=self.policy, timeout_s=timeout, max_bytes=self.settings.max_bytes,
                max_redirects=self.settings.max_redirects, refuse_oversize=True, extensions=extensions,
                headers={"Cache-Control": "no-cache"} if max_age_s is not None else None, defer_cached_body=True,
            )  # fmt: skip
        except (RobotsDisallowed, QuotaExceeded):
            raise
        except SuiteError as exc:
            latency = (time.monotonic() - started) * 1000
            await self.ledger.record(provider, host, "error", latency_ms=latency, error=str(exc)[:300])
            raise
        acquired = await self._record_fetch(key, host, provider, result, (time.monotonic() - started) * 1000)
        await self._keep_hot_page(key, acquired.row, result)
        return acquired

    async def _record_fetch(self, key: str, host: str, provider: str, result: FetchResult, latency: float) -> Acquired:
        """The page row of a fetch through the HTTP cache, written as the answer requires, and its ledger row."""
        db = self.deps.db
        received = utcnow()
        body = result.body
        digest = result.body_sha256 or sha256(body)
        page: dict[str, Any] = {
            "url": key, "final_url": result.final_url, "status": result.status, "content_type": result.content_type,
            "sha256": digest, "body": body, "storable": result.stored, "at": received,
        }  # fmt: skip
        if result.from_cache:
            row = await store.get_page_by_url(db, key)
            if row is None or row["body_sha256"] != digest or row["final_url"] != result.final_url:
                # Another process stored the entry and has not written this row yet, or the row was swept.
                storable = True if row is None else bool(row["storable"])
                if result.body_sha256 is not None:  # the cache left its stored body unread
                    page["body"] = await store.get_body(db, digest) or b""
                row = await store.upsert_page(db, **{**page, "storable": storable}, download=False)
            if result.revalidated:
                row = await store.refresh_page(db, row["id"], received) or row
                await self.ledger.record(provider, host, "revalidated", status=304, latency_ms=latency)
                return Acquired(row, True, True)
            self.ledger.record_later(provider, host, "cache", status=row["status"])
            return Acquired(row, True, False)

        new_row = await store.upsert_page(db, **page)
        await self.ledger.record(provider, host, "network", status=result.status, size=len(body), latency_ms=latency)
        return Acquired(new_row, False, False)

    @staticmethod
    def _checked_within(row: dict[str, Any], max_age_s: float) -> bool:
        """Whether a stored page may answer a call's ``max_age_s`` (it was checked that recently)."""
        return bool(row["storable"]) and (utcnow() - row["checked_at"]).total_seconds() <= max_age_s

    async def _hot_page(self, key: str) -> hot.Hot | None:
        """The Redis hot copy of page ``key``'s row and the stored response it came from, if kept."""
        if not self.settings.hot_ttl_s:
            return None
        return hot.decode(await self.deps.cache.get(hot.page_key(key)))

    async def _keep_hot_page(self, key: str, row: dict[str, Any], result: FetchResult) -> None:
        """Keep the row a fetch through the HTTP cache answered with for as long as hishel would
        answer again without asking the site; otherwise make sure no older copy answers instead."""
        if not self.settings.hot_ttl_s:
            return
        headers = None
        # A redirect hop or a response the cache did not keep is not answered from storage next time.
        if not result.redirects and (result.from_cache or result.stored):
            headers = hot.header_lists(result.headers)
        if headers is None or not hot.answers_unasked(key, result.status, headers):
            await self.deps.cache.delete(hot.page_key(key))
            return
        value = hot.encode(row, result.status, headers)
        await self.deps.cache.set(hot.page_key(key), value, ttl_s=float(self.settings.hot_ttl_s))

    async def forget_hot_page(self, key: str) -> None:
        """Drop page ``key``'s hot copy, so the next fetch reads the database (its row changed)."""
        if self.settings.hot_ttl_s:
            await self.deps.cache.delete(hot.page_key(key))

    async def document(self, sha: str, mode: str, content_type: str | None, url: str) -> dict[str, Any]:
        """The extracted document of body ``sha`` in ``mode``, made and stored on first use."""
        db = self.deps.db
        hot_key = f"doc:{sha}:{mode}"
        if self.settings.hot_ttl_s:
            local = self.local_docs.get(hot_key)
            if local is not None:
                return local
            shared = await self.deps.cache.get(hot_key)
            if isinstance(shared, dict):
                self.local_docs.put(hot_key, shared)
                return shared
        doc = await store.get_document(db, sha, mode)
        if doc is not None:
            await self._keep_hot(hot_key, doc)
            return doc
        body = await store.get_body(db, sha)
        if body is None:
            raise NotFound("The stored body of this page is gone; fetch it again with force_refresh.")
        made = await anyio.to_thread.run_sync(functools.partial(extract, body, content_type, url=url, mode=mode))  # type: ignore[arg-type]
        doc = {
            "kind": made.kind, "format": made.format, "title": made.title, "extractor": made.extractor,
            "notes": made.notes, "content": made.content,
        }  # fmt: skip
        await store.put_document(db, sha, mode, doc)
        await self._keep_hot(hot_key, doc)
        return doc

    async def _keep_hot(self, key: str, doc: dict[str, Any]) -> None:
        # Documents are addressed by content hash, so a hot copy never needs invalidating.
        if self.settings.hot_ttl_s and len(doc["content"]) <= HOT_MAX_CHARS:
            self.local_docs.put(key, doc)
            await self.deps.cache.set(key, doc, ttl_s=self.settings.hot_ttl_s)

    async def _rendered(self, row: dict[str, Any], limit_s: float) -> str:
        await self.ledger.check("render", httpx.URL(row["final_url"]).host)
        started = time.monotonic()
        host = httpx.URL(row["final_url"]).host
        try:
            _final, html = await self.renderer.html(row["final_url"], limit_s)
        except SuiteError as exc:
            await self.ledger.record("render", host, "error", error=str(exc))
            raise
        data = html.encode("utf-8")
        await self.ledger.record(
            "render", host, "network", status=200, size=len(data), latency_ms=(time.monotonic() - started) * 1000
        )
        digest = sha256(data)

        async def write(conn: asyncpg.Connection) -> None:
            await store.put_body(conn, digest, data)
            await store.set_rendered(conn, row["id"], digest)

        await self.deps.db.run_in_transaction(write)
        await self.forget_hot_page(row["url"])  # its hot copy lacks the rendered body
        return digest

    async def fetch_url(
        self,
        url: str,
        *,
        mode: str = "markdown",
        max_chars: int | None = None,
        start: int = 0,
        timeout_s: float | None = None,
        max_age_s: float | None = None,
        force_refresh: bool = False,
        render: bool = False,
    ) -> FetchedPage:
        """A page's readable content, a slice at a time; ``start`` > 0 reads the stored document."""
        limit = max_chars or self.settings.max_chars
        if not 1 <= limit <= self.settings.max_chars_ceiling:
            raise InvalidInput(f"max_chars must be from 1 to {self.settings.max_chars_ceiling}; page with start.")
        if start < 0:
            raise InvalidInput("start must be 0 or more (a next_start of an earlier answer).")
        acquired: Acquired | None = None
        if start > 0 and not force_refresh:
            key, host = self.cache_key(url)
            kept = await self._hot_page(key)
            row = kept[0] if kept is not None else await store.get_page_by_url(self.deps.db, key)
            if row is not None:
                self.ledger.record_later("fetch", host, "cache", status=row["status"])
                acquired = Acquired(row, True, False, hot=kept is not None)
        if acquired is None:
            acquired = await self.acquire(url, timeout_s=timeout_s, max_age_s=max_age_s, force_refresh=force_refresh)
        limit_s = timeout_s or self.settings.render_timeout_s
        try:
            return await self._answer(acquired, mode, limit, start, render, limit_s)
        except NotFound:
            if not acquired.hot:
                raise
        # The hot copy outlived its page (swept meanwhile): the database decides.
        await self.forget_hot_page(acquired.row["url"])
        acquired = await self.acquire(url, timeout_s=timeout_s, max_age_s=max_age_s, force_refresh=force_refresh)
        return await self._answer(acquired, mode, limit, start, render, limit_s)

    async def _answer(
        self, acquired: Acquired, mode: str, limit: int, start: int, render: bool, limit_s: float
    ) -> FetchedPage:
        row = acquired.row
        rendered = bool(render and row["rendered_sha256"])
        sha = row["rendered_sha256"] if rendered else row["body_sha256"]
        ctype = "text/html; charset=utf-8" if rendered else row["content_type"]
        doc = await self.document(sha, mode, ctype, row["final_url"])
        if render and not rendered and doc["kind"] == "html" and len(doc["content"].strip()) < RENDER_MIN_CHARS:
            sha = await self._rendered(row, limit_s)
            doc = await self.document(sha, mode, "text/html; charset=utf-8", row["final_url"])
            rendered = True
        piece = page(doc["content"], start, limit)
        return FetchedPage(
            page_id=row["id"], url=row["url"], final_url=row["final_url"], status=row["status"],
            content_type=row["content_type"], title=doc["title"], format=doc["format"], byte_size=row["byte_size"],
            fetched_at=row["fetched_at"], checked_at=row["checked_at"], from_cache=acquired.from_cache,
            revalidated=acquired.revalidated, rendered=rendered, content=piece.piece, start=start,
            total_chars=piece.total_chars, truncated=piece.truncated, next_start=piece.next_start, notes=doc["notes"],
        )  # fmt: skip

    async def get_page(self, page_id: int, mode: str = "markdown", start: int = 0, max_chars: int | None = None) -> FetchedPage:  # fmt: skip
        """A stored page by id (no network)."""
        row = await store.get_page(self.deps.db, page_id)
        if row is None:
            raise NotFound(f"No stored page {page_id}; fetch_url returns page ids.")
        limit = max_chars or self.settings.max_chars
        return await self._answer(Acquired(row, True, False), mode, limit, start, False, self.settings.render_timeout_s)

    async def list_links(
        self,
        url: str,
        *,
        which: str = "all",
        limit: int = 100,
        cursor: str | None = None,
        max_age_s: float | None = None,
        force_refresh: bool = False,
    ) -> LinkList:
        """The distinct links of a page, internal or external, a page at a time."""
        fp = fingerprint("list_links", url, which)
        offset = decode_cursor(cursor, fp).offset
        acquired = await self.acquire(url, max_age_s=max_age_s, force_refresh=force_refresh)
        row = acquired.row
        doc_sha = row["rendered_sha256"] or row["body_sha256"]
        body = await store.get_body(self.deps.db, doc_sha)
        html = (body or b"").decode("utf-8", errors="replace")
        found = await anyio.to_thread.run_sync(
            functools.partial(extract_links, html, row["final_url"], limit=MAX_LINKS, which=which)  # type: ignore[arg-type]
        )
        items = [LinkItem(url=link.url, text=link.text, internal=link.internal) for link in found.links]
        paged = page_of(items[offset : offset + limit], total=len(items), offset=offset, limit=limit, fp=fp)
        return LinkList(
            page_id=row["id"], url=row["url"], items=paged.items, total=paged.total,
            internal_count=found.internal_count, external_count=found.external_count, truncated=paged.truncated,
            next_cursor=paged.next_cursor, from_cache=acquired.from_cache,
        )  # fmt: skip

    # ------------------------------------------------------------------------------- search

    async def web_search(self, query: str, *, limit: int = 10) -> SearchAnswer:
        """Search the web through the configured provider; the search and its results are recorded."""
        query = " ".join(query.split())
        if not query:
            raise InvalidInput("query is empty; say what to search for.")
        provider = configured_provider(self.settings)
        host = provider.host()
        warning = await self.ledger.check(provider.name, host)
        started = time.monotonic()
        try:
            hits = await provider.search(self.search_client, query, limit, self.settings.search_timeout_s)
        except SearchFailed as exc:
            await self.ledger.record(provider.name, host, "error", latency_ms=(time.monotonic() - started) * 1000, error=str(exc))  # fmt: skip
            raise
        latency = int((time.monotonic() - started) * 1000)
        await self.ledger.record(provider.name, host, "network", status=200, latency_ms=latency)
        summary = "\n".join([query, *(f"{h.title} {h.snippet}" for h in hits)])[:8000]
        embedder = self.deps.embedder
        vector: list[float] | None = None
        try:
            vector = list(await embedder.embed_one(" ".join([query, *(h.title for h in hits[:3])])))
        except Exception as exc:  # the search is still kept; it is found by keywords until re-run
            log.warning("web_access.search_embed_failed", error=str(exc)[:200])
        if vector is not None and len(vector) != EMBED_DIM:
            vector = None  # another model's width does not fit the column; keyword search still finds it
        model = embedder.model_name if vector is not None else None
        write = functools.partial(
            store.insert_search,
            query=query,
            provider=provider.name,
            latency_ms=latency,
            summary=summary,
            embedding=vector,
            model=model,
            results=[(h.title, h.url, h.snippet) for h in hits],
        )
        search_id, _at, ids = await self.deps.db.run_in_transaction(write)
        results = [
            SearchHit(result_id=rid, rank=n, title=h.title, url=h.url, snippet=h.snippet)
            for n, (rid, h) in enumerate(zip(ids, hits, strict=True), start=1)
        ]
        return SearchAnswer(
            search_id=search_id,
            query=query,
            provider=provider.name,
            latency_ms=latency,
            results=results,
            warning=warning,
        )

    async def reembed_step(self, embedder: Embedder, limit: int) -> int:
        """One step of a switch of the store's model (``mcp-suite reembed``): re-embed at most ``limit``
        past searches not yet embedded by ``embedder``'s model; how many it picked (0: none left)."""
        rows = await store.other_model_searches(self.deps.db, embedder.model_name, limit)
        if rows:
            vectors = await embedder.embed([" ".join([r["query"], *r["titles"]]) for r in rows])
            updates = [(r["id"], list(v)) for r, v in zip(rows, vectors, strict=True)]
            await store.set_search_vectors(self.deps.db, updates, embedder.model_name)
        return len(rows)

    async def search_history(self, query: str | None, *, limit: int = 10, cursor: str | None = None) -> SearchHistory:
        """Past searches, newest first, or ranked by meaning and keywords when ``query`` is given."""
        db = self.deps.db
        if not query or not query.strip():
            fp = fingerprint("search_history", None)
            offset = decode_cursor(cursor, fp).offset
            rows, total = await store.recent_searches(db, limit, offset)
            items = await self._past(rows)
            paged = page_of(items, total=total, offset=offset, limit=limit, fp=fp)
            return SearchHistory(items=paged.items, total=paged.total, truncated=paged.truncated, next_cursor=paged.next_cursor)  # fmt: skip
        fp = fingerprint("search_history", query)
        embedder = self.deps.embedder
        vector = list(await embedder.embed_one(query))
        by_meaning = (
            await store.searches_by_vector(db, vector, embedder.model_name, 100) if len(vector) == EMBED_DIM else []
        )
        words = any_word_tsquery(query)
        by_words = await store.searches_by_keyword(db, words, 100) if words else []
        scores = rrf([by_meaning, by_words])
        ranked = sorted(scores, key=lambda k: (-scores[k], -k))
        window = slice_page(ranked, cursor=cursor, limit=limit, fp=fp)
        found = await store.searches_by_id(db, list(window.items))
        items = await self._past([found[i] for i in window.items if i in found])
        return SearchHistory(
            items=items, total=window.total, truncated=window.truncated, next_cursor=window.next_cursor
        )

    async def _past(self, rows: list[dict[str, Any]]) -> list[PastSearch]:
        results = await store.results_of(self.deps.db, [int(r["id"]) for r in rows]) if rows else []
        by_search: dict[int, list[SearchHit]] = {}
        for r in results:
            hits = by_search.setdefault(int(r["search_id"]), [])
            if len(hits) < 3:
                hits.append(SearchHit(result_id=r["id"], rank=r["rank"], title=r["title"], url=r["url"], snippet=r["snippet"][:200]))  # fmt: skip
        out = []
        for r in rows:
            out.append(PastSearch(
                search_id=r["id"], query=r["query"], provider=r["provider"], created_at=r["created_at"],
                latency_ms=r["latency_ms"], result_count=r["result_count"], results=by_search.get(int(r["id"]), []),
            ))  # fmt: skip
        return out

    async def result_url(self, result_id: int) -> str:
        """The URL of a recorded search result."""
        row = await store.get_result(self.deps.db, result_id)
        if row is None:
            raise NotFound(f"No search result {result_id}; web_search and search_history give result ids.")
        return str(row["url"])

    async def fetch_result(self, result_id: int, **kw: Any) -> FetchedPage:
        """Fetch the page of a recorded search result."""
        return await self.fetch_url(await self.result_url(result_id), **kw)

    # ------------------------------------------------------------------------------- usage

    async def usage_report(
        self, *, days: int = 7, provider: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> UsageReport:
        """Requests per day and provider, quota states and the busiest hosts."""
        fp = fingerprint("usage_report", days, provider)
        offset = decode_cursor(cursor, fp).offset
        db = self.deps.db
        await self.ledger.flush()  # this process's cache answers are in the report
        rows, total = await store.usage_report(db, days, provider, limit, offset)
        paged = page_of([UsageRow(**r) for r in rows], total=total, offset=offset, limit=limit, fp=fp)
        quotas = []
        for name, quota in sorted(self.settings.quotas.items()):
            if provider is not None and name != provider:
                continue
            used = await self.ledger.used_today(name)
            state: Literal["ok", "warning", "exhausted"] = "exhausted" if quota.hard is not None and used >= quota.hard else (
                "warning" if quota.warn is not None and used >= quota.warn else "ok")  # fmt: skip
            quotas.append(QuotaState(provider=name, used_today=used, warn=quota.warn, hard=quota.hard, state=state))
        hosts = [HostUsage(**h) for h in await store.top_hosts(db, days, provider, 10)]
        return UsageReport(
            days=days, items=paged.items, total=paged.total, truncated=paged.truncated,
            next_cursor=paged.next_cursor, quotas=quotas, top_hosts=hosts,
        )  # fmt: skip

    # ------------------------------------------------------------------------------- screenshots

    async def screenshot(
        self, url: str, *, full_page: bool = False, width: int = 1280, height: int = 800, timeout_s: float | None = None
    ) -> Screenshot:
        """A PNG of the page stored by content hash, with a thumbnail; paths, never the image itself."""
        timeout = self._timeout(timeout_s) if timeout_s is not None else self.settings.render_timeout_s
        key, host = self.cache_key(url)
        if self.settings.obey_robots and not await self.robots_allow(key):
            await self.ledger.record("screenshot", host, "refused", error="robots.txt")
            raise RobotsDisallowed(f"robots.txt of {host} disallows {key[:80]!r}; no screenshot was taken.")
        await self.ledger.check("screenshot", host)
        started = time.monotonic()
        try:
            shot = await self.renderer.screenshot(key, full_page=full_page, width=width, height=height, timeout_s=timeout)  # fmt: skip
        except SuiteError as exc:
            await self.ledger.record("screenshot", host, "error", error=str(exc))
            raise
        await self.ledger.record(
            "screenshot",
            host,
            "network",
            status=200,
            size=len(shot.png),
            latency_ms=(time.monotonic() - started) * 1000,
        )
        digest = sha256(shot.png)
        root = self.settings.screenshot_root() / digest[:2]
        path, thumb = root / f"{digest}.png", root / f"{digest}.thumb.png"
        await anyio.to_thread.run_sync(_write_pair, path, shot.png, thumb, shot.thumb)
        sid, _at = await store.insert_screenshot(
            self.deps.db, digest, key, full_page, shot.width, shot.height, len(shot.png), str(path), str(thumb)
        )
        return Screenshot(
            screenshot_id=sid, url=key, final_url=shot.final_url, path=str(path), thumb_path=str(thumb), sha256=digest,
            width=shot.width, height=shot.height, bytes=len(shot.png), full_page=full_page,
        )  # fmt: skip


def _write_pair(path: Path, data: bytes, thumb: Path, thumb_data: bytes) -> None:
    """Write both files atomically; the names are content hashes, so an existing file is already right."""
    write_once(path, data)
    write_once(thumb, thumb_data)
