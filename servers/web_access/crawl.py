"""Crawling a site as a job: the frontier and the result live in ``crawl_pages``, so a crawl resumes
after a restart without refetching the pages it finished.

Each page URL is queued once per job (its normal form is the key), then ends fetched, skipped (and
why: robots.txt, another origin, a pattern, the depth or page limit) or failed (and why). Pages
go through :meth:`WebAccessService.acquire`, so they land in the page cache and the ledger. The
crawl is breadth first, with a politeness delay per host (the larger of the call's delay and the
site's Crawl-delay); sitemap.xml entries (from robots.txt or /sitemap.xml) seed the frontier.
Without a delay, up to ``crawl_concurrency`` queued pages are fetched at once (a host whose
robots.txt sets a Crawl-delay still gets one at a time).
"""

from __future__ import annotations

import fnmatch
import functools
import re
import time
from typing import TYPE_CHECKING, Any

import anyio

from common.concurrency import gather_all
from common.errors import InvalidInput, SuiteError
from common.jobs import JobContext
from common.paging import decode_cursor, encode_cursor, fingerprint, page_of
from servers.web_access import store
from servers.web_access.extract import html_title, sniff_kind
from servers.web_access.links import extract_links, normalize_url, origin, parse_sitemap
from servers.web_access.models import CrawlJobs, CrawlPage, CrawlView
from servers.web_access.robots import origin_of

if TYPE_CHECKING:
    from servers.web_access.service import WebAccessService

KIND = "crawl"
MAX_PATTERNS = 20
MAX_SITEMAP_URLS = 10_000
REASON_LIMIT = "not fetched: the crawl reached its page limit"
Rows = list[dict[str, Any]]


def compile_patterns(patterns: list[str]) -> list[re.Pattern[str]]:
    """Glob patterns (``*`` any characters) matched against the whole URL; ``re:`` prefixes a regex."""
    if len(patterns) > MAX_PATTERNS:
        raise InvalidInput(f"give at most {MAX_PATTERNS} include or exclude patterns.")
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p[3:]) if p.startswith("re:") else re.compile("^" + fnmatch.translate(p)))
        except re.error:
            raise InvalidInput(f"pattern {p[:80]!r} is not a valid regular expression.") from None
    return out


def _matches(url: str, patterns: list[re.Pattern[str]]) -> bool:
    return any(p.search(url) for p in patterns)


def admit(url: str, depth: int, params: dict[str, Any], home: tuple[str, str, int]) -> str | None:
    """Why ``url`` is not crawled (a skip reason), or None when it is queued."""
    if params["same_origin"] and origin(url) != home:
        return "skipped: another origin"
    if depth > params["max_depth"]:
        return f"skipped: deeper than max_depth {params['max_depth']}"
    include = compile_patterns(params["include"])
    if include and not _matches(url, include):
        return "skipped: matches no include pattern"
    if _matches(url, compile_patterns(params["exclude"])):
        return "skipped: matches an exclude pattern"
    return None


class Crawler:
    """Runs and reports crawl jobs for one service."""

    def __init__(self, svc: WebAccessService) -> None:
        self.svc = svc
        self._last_hit: dict[str, float] = {}

    async def start(
        self,
        url: str,
        *,
        max_pages: int,
        max_depth: int,
        include: list[str],
        exclude: list[str],
        same_origin: bool,
        use_sitemap: bool,
        delay_s: float | None,
        wait_s: float,
        timeout_s: float | None,
        progress: Any = None,
    ) -> CrawlView:
        s = self.svc.settings
        if not 1 <= max_pages <= s.crawl_max_pages:
            raise InvalidInput(f"max_pages must be from 1 to {s.crawl_max_pages}.")
        if not 0 <= max_depth <= s.crawl_max_depth:
            raise InvalidInput(f"max_depth must be from 0 to {s.crawl_max_depth}.")
        compile_patterns(include)
        compile_patterns(exclude)
        root, _host = self.svc.cache_key(url)
        self.svc._timeout(timeout_s)
        params = {
            "root": root, "max_pages": max_pages, "max_depth": max_depth, "include": include, "exclude": exclude,
            "same_origin": same_origin, "use_sitemap": use_sitemap,
            "delay_s": s.crawl_delay_s if delay_s is None else delay_s, "timeout_s": timeout_s,
        }  # fmt: skip
        key = f"{root} {fingerprint(params)}"
        job = await self.svc.jobs.start(KIND, key[:1000], params, total=max_pages)
        await store.enqueue(self.svc.deps.db, job.id, [root], 0)
        self.svc.jobs.spawn(job, self.work)
        return await self.wait(job.id, wait_s, progress)

    async def wait(self, job_id: str, wait_s: float, progress: Any = None) -> CrawlView:
        if wait_s > 0:
            await self.svc.jobs.wait(job_id, timeout_s=wait_s, progress=progress)
        return await self.view(job_id)

    async def view(self, job_id: str, *, state: str | None = None, limit: int = 0, cursor: str | None = None) -> CrawlView:  # fmt: skip
        job = await self.svc.jobs.get(job_id)
        if job.kind != KIND:
            raise InvalidInput(f"Job {job_id} is not a crawl.")
        counts = await store.crawl_counts(self.svc.deps.db, job.id)
        view = CrawlView(
            job=job.view(), pages={k: counts.get(k, 0) for k in ("queued", "fetched", "skipped", "failed")}
        )
        if limit:
            fp = fingerprint("crawl_pages", job.id, state)
            offset = decode_cursor(cursor, fp).offset
            rows, total = await store.crawl_list(self.svc.deps.db, job.id, state, limit, offset)
            view.items = [CrawlPage(**{k: r[k] for k in CrawlPage.model_fields}) for r in rows]
            view.total = total
            view.truncated = offset + len(rows) < total
            if view.truncated:
                view.next_cursor = encode_cursor(fp, offset=offset + len(rows))
        return view

    async def list(self, limit: int, cursor: str | None) -> CrawlJobs:
        """Crawl jobs, newest first."""
        fp = fingerprint("crawl_jobs")
        offset = decode_cursor(cursor, fp).offset
        jobs, total = await self.svc.jobs.find(kind=KIND, limit=limit, offset=offset)
        paged = page_of([j.view() for j in jobs], total=total, offset=offset, limit=limit, fp=fp)
        return CrawlJobs(items=paged.items, total=paged.total, truncated=paged.truncated, next_cursor=paged.next_cursor)

    async def resume(self, job_id: str, wait_s: float, progress: Any = None) -> CrawlView:
        job = await self.svc.jobs.claim_resume(job_id)
        self.svc.jobs.spawn(job, self.work)
        return await self.wait(job.id, wait_s, progress)

    async def _politely(self, url: str, delay_s: float) -> None:
        host = origin_of(url)
        if self.svc.settings.obey_robots:
            site_delay = await self.svc.robots.crawl_delay(url, self.svc.settings.user_agent)
            delay_s = max(delay_s, min(site_delay or 0.0, 60.0))
        last = self._last_hit.get(host)
        if last is not None and delay_s > 0:
            wait = last + delay_s - time.monotonic()
            if wait > 0:
                await anyio.sleep(wait)

    async def _one_per_delayed_host(self, queued: Rows) -> Rows:
        """The queued pages to fetch at once: all of them, except that a host whose robots.txt sets a
        Crawl-delay gets one page per batch (the delay is per host, between requests)."""
        batch: Rows = []
        delayed: set[str] = set()
        for row in queued:
            host = origin_of(row["url"])
            if host in delayed:
                continue
            if self.svc.settings.obey_robots and await self.svc.robots.crawl_delay(
                row["url"], self.svc.settings.user_agent
            ):
                delayed.add(host)
            batch.append(row)
        return batch

    async def _seed_sitemaps(self, ctx: JobContext, params: dict[str, Any], home: tuple[str, str, int]) -> None:
        svc = self.svc
        root = params["root"]
        candidates = [origin_of(root) + "/sitemap.xml"]
        if svc.settings.obey_robots:
            candidates = list(dict.fromkeys([*(await svc.robots.rules(root)).sitemaps, *candidates]))
        seen = 0
        for sitemap_url in candidates[:5]:
            try:
                acquired = await svc.acquire(
                    sitemap_url, provider=KIND, timeout_s=params["timeout_s"], obey_robots=False
                )
            except SuiteError:
                continue
            row = acquired.row
            if row["status"] != 200:
                continue
            body = await store.get_body(svc.deps.db, row["body_sha256"]) or b""
            parsed = await anyio.to_thread.run_sync(functools.partial(parse_sitemap, body, limit=MAX_SITEMAP_URLS))
            if parsed.kind == "sitemapindex":
                continue  # nested sitemaps are not followed; the links of the pages still are
            urls = [e.loc for e in parsed.entries if admit(e.loc, 1, params, home) is None]
            if urls:
                await store.enqueue(svc.deps.db, ctx.job.id, urls, 1)
                seen += len(urls)
        ctx.count("sitemap_urls", seen)

    async def work(self, ctx: JobContext) -> str:
        svc = self.svc
        db = svc.deps.db
        params = ctx.job.params
        job_id = ctx.job.id
        home = origin(params["root"])
        state = dict(ctx.state)
        if params["use_sitemap"] and not state.get("sitemap_done"):
            await self._seed_sitemaps(ctx, params, home)
            state["sitemap_done"] = True
            await ctx.step(state=state, message="sitemap read")
        width = 1 if float(params["delay_s"]) > 0 else self.svc.settings.crawl_concurrency
        while True:
            counts = await store.crawl_counts(db, job_id)
            attempted = counts.get("fetched", 0) + counts.get("failed", 0)
            queued = await store.next_queued(db, job_id, max(1, min(width, params["max_pages"] - attempted)))
            if not queued:
                break
            if attempted >= params["max_pages"]:
                for rest in await store.next_queued(db, job_id, 100_000):
                    await store.mark(db, job_id, rest["url"], "skipped", REASON_LIMIT, None, None, None)
                break
            batch = await self._one_per_delayed_host(queued)
            first = batch[0]["url"]
            more = f" and {len(batch) - 1} more" if len(batch) > 1 else ""
            await ctx.step(
                done=attempted, total=params["max_pages"], message=f"fetching {first[:200]}{more}", state=state
            )
            await gather_all(*(self._visit(ctx, params, home, r["url"], int(r["depth"])) for r in batch))
        counts = await store.crawl_counts(db, job_id)
        for name in ("fetched", "skipped", "failed"):
            ctx.counts[name] = counts.get(name, 0)
        ctx.done = counts.get("fetched", 0) + counts.get("failed", 0)
        return (
            f"Crawl finished: {counts.get('fetched', 0)} fetched, {counts.get('skipped', 0)} skipped, "
            f"{counts.get('failed', 0)} failed."
        )

    async def _visit(self, ctx: JobContext, params: dict[str, Any], home: tuple[str, str, int], url: str, depth: int) -> None:  # fmt: skip
        svc = self.svc
        db = svc.deps.db
        job_id = ctx.job.id
        if svc.settings.obey_robots and not await svc.robots_allow(url):
            await store.mark(db, job_id, url, "skipped", "skipped: disallowed by robots.txt", None, None, None)
            return
        await self._politely(url, float(params["delay_s"]))
        try:
            acquired = await svc.acquire(url, provider=KIND, timeout_s=params["timeout_s"], obey_robots=False)
        except SuiteError as exc:
            self._last_hit[origin_of(url)] = time.monotonic()
            await store.mark(db, job_id, url, "failed", str(exc)[:500], None, None, None)
            ctx.error(url, str(exc))
            return
        if not acquired.from_cache or acquired.revalidated:
            self._last_hit[origin_of(url)] = time.monotonic()
        row = acquired.row
        if row["status"] >= 400:
            await store.mark(db, job_id, url, "failed", f"HTTP {row['status']}", row["status"], row["id"], None)
            ctx.error(url, f"HTTP {row['status']}")
            return
        title = None
        body = await store.get_body(db, row["body_sha256"]) or b""
        if sniff_kind(row["content_type"], body) == "html":
            html = body.decode("utf-8", errors="replace")
            found, title = await anyio.to_thread.run_sync(_links_and_title, html, row["final_url"])
            queue: list[str] = []
            for link in found:
                why = admit(link, depth + 1, params, home)
                if why is None:
                    queue.append(link)
                else:
                    await store.enqueue_done(db, job_id, link, depth + 1, "skipped", why)
            if queue:
                await store.enqueue(db, job_id, queue, depth + 1)
        await store.mark(db, job_id, url, "fetched", None, row["status"], row["id"], title)


def _links_and_title(html: str, page_url: str) -> tuple[list[str], str | None]:
    links = extract_links(html, page_url, limit=5_000)
    return [link.url for link in links.links if normalize_url(link.url)], html_title(html)
