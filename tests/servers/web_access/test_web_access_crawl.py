"""Crawls of a local site as jobs: every page accounted for, cancel and resume without refetching."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from common.errors import InvalidInput
from common.testing import wait_until
from servers.web_access import store
from tests.servers.web_access.conftest import Handler, LocalServer, reply, text


def site(n: int, extras: dict[int, list[str]] | None = None) -> dict[str, Handler]:
    """Pages /p/0../p/{n-1} as a binary tree whose pages also link back to the root and their parent (cycles)."""
    routes: dict[str, Handler] = {}
    for i in range(n):
        links = [f"/p/{c}" for c in (2 * i + 1, 2 * i + 2) if c < n] + ["/p/0", f"/p/{max(0, (i - 1) // 2)}"]
        links += (extras or {}).get(i, [])
        anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
        body = f"<html><head><title>Page {i}</title></head><body><p>Page {i}</p>{anchors}</body></html>"
        routes[f"/p/{i}"] = text(body, "text/html")
    return routes


def slow(h: BaseHTTPRequestHandler) -> None:
    h.server.owner.stop.wait(3)  # type: ignore[attr-defined]
    reply(h, 200, b"too late")


def page_hits(server: LocalServer) -> Counter[str]:
    return Counter(s.path for s in server.seen if s.path.startswith("/p/"))


@pytest.mark.anyio
async def test_a_crawl_of_220_pages_with_cycles_broken_links_robots_and_a_slow_page_accounts_for_every_page(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    extras = {5: ["/missing"], 10: ["/private/secret"], 20: ["/slow"], 30: ["https://example.com/elsewhere"]}
    routes = site(220, extras)
    routes["/robots.txt"] = text("User-agent: *\nDisallow: /private/\n")
    routes["/private/secret"] = text("never fetched")
    routes["/slow"] = slow
    server = serve(routes)
    async with open_service(web_settings()) as svc:
        view = await svc.crawler.start(
            server.url("/p/0"), max_pages=500, max_depth=10, include=[], exclude=[], same_origin=True,
            use_sitemap=True, delay_s=0.0, wait_s=0.0, timeout_s=1.0,
        )  # fmt: skip

        async def finished() -> bool:
            return bool((await svc.jobs.get(view.job.id)).status != "running")

        await wait_until(finished, timeout_s=60, what="the crawl to end")
        done = await svc.crawler.view(view.job.id, limit=500)
        failed = await svc.crawler.view(view.job.id, state="failed", limit=50)
        skipped = await svc.crawler.view(view.job.id, state="skipped", limit=50)
        cached = await svc.deps.db.fetchval("SELECT count(*) FROM web_access.pages WHERE url LIKE '%/p/%'")
    assert done.job.status == "done", done.job.message
    assert done.pages == {"queued": 0, "fetched": 220, "skipped": 2, "failed": 2}
    assert done.total == 224
    assert not done.truncated
    reasons = {item.url.rsplit("/", 1)[-1]: item.reason for item in failed.items + skipped.items}
    assert reasons["missing"] == "HTTP 404"
    assert "within" in (reasons["slow"] or "")
    assert reasons["secret"] == "skipped: disallowed by robots.txt"
    assert reasons["elsewhere"] == "skipped: another origin"
    assert set(page_hits(server).values()) == {1}
    assert len(page_hits(server)) == 220
    assert not any(s.path.startswith("/private") for s in server.seen)
    assert cached == 220
    titles = {item.url.rsplit("/", 1)[-1]: item.title for item in done.items if item.state == "fetched"}
    assert titles["7"] == "Page 7"


@pytest.mark.anyio
async def test_an_interrupted_crawl_resumes_after_a_restart_without_refetching_done_pages(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    server = serve(site(60))
    settings = web_settings()
    async with open_service(settings) as svc:
        view = await svc.crawler.start(
            server.url("/p/0"), max_pages=60, max_depth=10, include=[], exclude=[], same_origin=True,
            use_sitemap=False, delay_s=0.05, wait_s=0.0, timeout_s=2.0,
        )  # fmt: skip
        job_id = view.job.id

        async def some_done() -> bool:
            return (await store.crawl_counts(svc.deps.db, job_id)).get("fetched", 0) >= 10

        await wait_until(some_done, timeout_s=20, what="ten pages")
    # The first service is gone (a restart); its job is left running with a stale heartbeat.
    before = page_hits(server)
    assert 10 <= len(before) < 60
    async with open_service(settings) as svc:

        async def interrupted() -> bool:
            await svc.jobs.recover()
            return bool((await svc.jobs.get(job_id)).status == "interrupted")

        await wait_until(interrupted, timeout_s=15, what="the job to be marked interrupted")
        resumed = await svc.crawler.resume(job_id, wait_s=30)
    assert resumed.job.status == "done", resumed.job.message
    assert resumed.job.attempts == 2
    assert resumed.pages["fetched"] == 60
    assert resumed.pages["queued"] == 0
    after = page_hits(server)
    assert len(after) == 60
    assert set(after.values()) == {1}


@pytest.mark.anyio
async def test_a_cancelled_crawl_stops_and_include_patterns_limit_what_is_queued(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    server = serve(site(40))
    async with open_service(web_settings()) as svc:
        with pytest.raises(InvalidInput, match="max_pages"):
            await svc.crawler.start(server.url("/p/0"), max_pages=0, max_depth=1, include=[], exclude=[], same_origin=True, use_sitemap=False, delay_s=0, wait_s=0, timeout_s=None)  # fmt: skip
        view = await svc.crawler.start(
            server.url("/p/0"), max_pages=40, max_depth=10, include=["*/p/?"], exclude=["*/p/3"], same_origin=True,
            use_sitemap=False, delay_s=0.0, wait_s=20, timeout_s=None,
        )  # fmt: skip
        slow_view = await svc.crawler.start(
            server.url("/p/1"), max_pages=40, max_depth=10, include=[], exclude=[], same_origin=True,
            use_sitemap=False, delay_s=0.5, wait_s=0, timeout_s=None,
        )  # fmt: skip
        await svc.jobs.cancel(slow_view.job.id)
        cancelled = await svc.crawler.wait(slow_view.job.id, 10)
    assert view.job.status == "done"
    # /p/0-/p/9 but /p/3 and its children /p/7 and /p/8, which only /p/3 links to.
    assert view.pages["fetched"] == 7
    assert cancelled.job.status == "cancelled"
    assert cancelled.pages["fetched"] < 40


@pytest.mark.anyio
async def test_sitemaps_seed_the_crawl_and_the_sites_crawl_delay_spaces_its_requests(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    routes = site(3)
    routes["/orphan"] = text("<html><body>only in the sitemap</body></html>", "text/html")
    routes["/listed-in-robots"] = text("<html><body>only in robots' sitemap</body></html>", "text/html")
    server = serve(routes)
    urlset = (
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>{server.url('/orphan')}</loc></url><url><loc>https://elsewhere.example/x</loc></url></urlset>"
    )
    server.routes["/sitemap.xml"] = text(urlset, "application/xml")
    server.routes["/robots-map.txt"] = text(server.url("/listed-in-robots") + "\n")
    robots = f"User-agent: *\nCrawl-delay: 0.3\nSitemap: {server.url('/robots-map.txt')}\n"
    server.routes["/robots.txt"] = text(robots)
    async with open_service(web_settings()) as svc:
        started = time.monotonic()
        view = await svc.crawler.start(
            server.url("/p/0"), max_pages=10, max_depth=3, include=[], exclude=[], same_origin=True,
            use_sitemap=True, delay_s=0.0, wait_s=30, timeout_s=None,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        pages = await svc.crawler.view(view.job.id, limit=20)
    fetched = {item.url.removeprefix(server.url("/")) for item in pages.items if item.state == "fetched"}
    assert fetched == {"p/0", "p/1", "p/2", "orphan", "listed-in-robots"}
    assert view.job.counts["sitemap_urls"] == 2
    # Five pages, each at least 0.3 s after the previous one: four gaps.
    assert elapsed >= 4 * 0.3


def overlapping(n: int, state: dict[str, int], lock: Any, arrived: Any) -> dict[str, Handler]:
    """Pages /q/0../q/{n-1} (a tree) whose handlers record how many requests are in flight at once.

    Each request waits (at most 0.75 s) for a second one to arrive, so fetches made at the same time
    are seen overlapping; sequential fetches never are.
    """

    def page(i: int) -> Handler:
        links = "".join(f'<a href="/q/{c}">{c}</a>' for c in (2 * i + 1, 2 * i + 2) if c < n)
        body = f"<html><body><p>Page {i}</p>{links}</body></html>".encode()

        def handle(h: BaseHTTPRequestHandler) -> None:
            with lock:
                state["now"] += 1
                state["most"] = max(state["most"], state["now"])
                if state["now"] >= 2:
                    arrived.set()
            arrived.wait(0.75)
            with lock:
                state["now"] -= 1
            reply(h, 200, body, [("Content-Type", "text/html")])

        return handle

    return {f"/q/{i}": page(i) for i in range(n)}


@pytest.mark.anyio
@pytest.mark.parametrize(("robots", "concurrent"), [("User-agent: *\nAllow: /\n", True), ("User-agent: *\nCrawl-delay: 0.05\n", False)])  # fmt: skip
async def test_without_a_delay_pages_are_fetched_at_once_and_a_crawl_delay_keeps_them_one_at_a_time(
    serve: Callable[..., LocalServer],
    web_settings: Callable[..., Any],
    open_service: Any,
    robots: str,
    concurrent: bool,
) -> None:
    import threading

    state = {"now": 0, "most": 0}
    arrived = threading.Event()
    routes = overlapping(15, state, threading.Lock(), arrived)
    routes["/robots.txt"] = text(robots)
    server = serve(routes)
    async with open_service(web_settings(crawl_concurrency=4)) as svc:
        view = await svc.crawler.start(
            server.url("/q/0"), max_pages=15, max_depth=10, include=[], exclude=[], same_origin=True,
            use_sitemap=False, delay_s=0.0, wait_s=0.0, timeout_s=10.0,
        )  # fmt: skip

        async def finished() -> bool:
            return bool((await svc.jobs.get(view.job.id)).status != "running")

        await wait_until(finished, timeout_s=120, what="the crawl to end")
        done = await svc.crawler.view(view.job.id)
    assert done.job.status == "done", done.job.message
    assert done.pages["fetched"] == 15
    assert len({s.path for s in server.seen if s.path.startswith("/q/")}) == 15
    assert (state["most"] >= 2) is concurrent
    assert state["most"] <= 4
