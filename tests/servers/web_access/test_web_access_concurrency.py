"""Four service instances (four server processes' worth of state) fetching and crawling one site at once."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest

from common.testing import wait_until
from tests.servers.web_access.conftest import Handler, LocalServer, reply

N_PAGES = 30


def cached_page(i: int) -> Handler:
    links = "".join(f'<a href="/c/{j}">{j}</a>' for j in (i + 1, i + 2) if j < N_PAGES)
    body = f"<html><body><p>Page {i}</p>{links}</body></html>".encode()
    return lambda h: reply(h, 200, body, [("Content-Type", "text/html"), ("Cache-Control", "max-age=600")])


@pytest.mark.anyio
async def test_four_instances_fetching_and_crawling_lose_and_double_count_nothing(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    server = serve({f"/c/{i}": cached_page(i) for i in range(N_PAGES)})
    settings = web_settings(crawl_max_depth=N_PAGES)
    calls_per_instance = N_PAGES
    async with AsyncExitStack() as stack:
        services = [await stack.enter_async_context(open_service(settings)) for _ in range(4)]

        async def fetch_all(svc: Any, offset: int) -> None:
            for k in range(calls_per_instance):
                await svc.fetch_url(server.url(f"/c/{(k + offset) % N_PAGES}"))

        crawls = []
        async with anyio.create_task_group() as tg:
            for n, svc in enumerate(services):
                tg.start_soon(fetch_all, svc, n * 7)
            for n, svc in enumerate(services):
                view = await svc.crawler.start(
                    server.url(f"/c/{n}"), max_pages=N_PAGES, max_depth=N_PAGES, include=[], exclude=[],
                    same_origin=True, use_sitemap=False, delay_s=0.0, wait_s=0.0, timeout_s=None,
                )  # fmt: skip
                crawls.append((svc, view.job.id))
        for svc, job_id in crawls:

            async def ended(svc: Any = svc, job_id: str = job_id) -> bool:
                return bool((await svc.jobs.get(job_id)).status != "running")

            await wait_until(ended, timeout_s=60, what="crawls to end")
        for svc in services:
            await svc.ledger.flush()  # cache answers' rows are written after the answer
        db = services[0].deps.db
        pages = await db.fetchval("SELECT count(*) FROM web_access.pages")
        downloads = await db.fetchval("SELECT sum(downloads) FROM web_access.pages")
        ledger = {
            (r["provider"], r["outcome"]): r["n"]
            for r in await db.fetch("SELECT provider, outcome, count(*) AS n FROM web_access.requests GROUP BY 1, 2")
        }
        fetched = [await svc.crawler.view(job_id) for svc, job_id in crawls]
    page_hits = len([s for s in server.seen if s.path.startswith("/c/")])
    robots_hits = len([s for s in server.seen if s.path == "/robots.txt"])
    assert pages == N_PAGES
    assert all(v.job.status == "done" and v.pages["fetched"] == N_PAGES - n for n, v in enumerate(fetched))
    network = sum(n for (p, o), n in ledger.items() if p in ("fetch", "crawl") and o == "network")
    assert network == page_hits == downloads
    assert ledger.get(("robots", "network"), 0) == robots_hits
    fetch_rows = ledger.get(("fetch", "network"), 0) + ledger.get(("fetch", "cache"), 0)
    assert fetch_rows == 4 * calls_per_instance
    assert ledger.get(("fetch", "error"), 0) == 0
    assert ledger.get(("crawl", "error"), 0) == 0
