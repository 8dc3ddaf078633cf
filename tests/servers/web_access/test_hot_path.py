"""The hot path of a repeated fetch: the page row kept in Redis while its HTTP entry is fresh, and
cache answers' ledger rows written after the answer."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from servers.web_access import hot
from tests.servers.web_access.conftest import LocalServer, redirect, reply

URL = "http://127.0.0.1/a"


def fresh(body: str, max_age: int = 600) -> Callable[..., None]:
    return lambda h: reply(h, 200, body.encode(), [("Cache-Control", f"max-age={max_age}")])


def hits(server: LocalServer, path: str) -> int:
    return len([s for s in server.seen if s.path == path])


def kept(age_s: float = 0, **values: str) -> dict[str, list[str]] | None:
    """The header lists a hot value keeps of a response dated ``age_s`` ago, or None."""
    date = formatdate(time.time() - age_s, usegmt=True)
    return hot.header_lists(httpx.Headers({"Date": date, **{k.replace("_", "-"): v for k, v in values.items()}}))


def unasked(lists: dict[str, list[str]] | None, status: int = 200) -> bool:
    assert lists is not None
    return hot.answers_unasked(URL, status, lists)


def test_a_response_stays_hot_as_long_as_hishel_would_answer_it_without_asking_the_site() -> None:
    assert unasked(kept(Cache_Control="max-age=600"))
    assert not unasked(kept(700, Cache_Control="max-age=600"))  # stale by now
    assert unasked(kept(Expires=formatdate(time.time() + 120, usegmt=True)))
    assert unasked(kept(Cache_Control="max-age=600", Vary="Accept-Encoding"))
    assert not unasked(kept(Cache_Control="no-cache, max-age=600"))
    assert not unasked(kept(Cache_Control="max-age=0"))
    assert not unasked(kept())  # no freshness lifetime
    assert kept(Cache_Control="max-age=600", Vary="Cookie") is None
    assert hot.header_lists(httpx.Headers({"Cache-Control": "max-age=600"})) is None  # no Date


@pytest.mark.anyio
async def test_a_fresh_page_is_answered_from_its_hot_copy_without_the_database(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    server = serve({"/a": fresh("hot page")})
    async with open_service(web_settings()) as svc:
        first = await svc.fetch_url(server.url("/a"))
        # Without its rows the database could not answer; the hot copy and the document still can.
        await svc.deps.db.execute("DELETE FROM web_access.http_entries")
        second = await svc.fetch_url(server.url("/a"))
    assert (first.from_cache, second.from_cache, second.revalidated) == (False, True, False)
    assert (second.page_id, second.content) == (first.page_id, "hot page")
    assert hits(server, "/a") == 1


@pytest.mark.anyio
async def test_a_forced_refresh_replaces_the_hot_copy_for_every_process(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    versions = ["first version"]
    server = serve({"/v": lambda h: fresh(versions[-1])(h)})
    settings = web_settings()
    async with open_service(settings) as one, open_service(settings) as two:
        await one.fetch_url(server.url("/v"))
        versions.append("second version")
        still = await two.fetch_url(server.url("/v"))
        forced = await two.fetch_url(server.url("/v"), force_refresh=True)
        after = await one.fetch_url(server.url("/v"))
    assert (still.content, still.from_cache) == ("first version", True)
    assert (forced.content, forced.from_cache) == ("second version", False)
    assert (after.content, after.from_cache) == ("second version", True)
    assert hits(server, "/v") == 2


@pytest.mark.anyio
async def test_a_redirected_fetch_asks_for_the_redirect_again(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    server = serve({"/target": fresh("target page")})
    server.routes["/moved"] = redirect(server.url("/target"))
    async with open_service(web_settings()) as svc:
        await svc.fetch_url(server.url("/moved"))
        again = await svc.fetch_url(server.url("/moved"))
    assert (again.content, again.from_cache) == ("target page", True)
    assert (hits(server, "/moved"), hits(server, "/target")) == (2, 1)


@pytest.mark.anyio
async def test_cache_answers_are_in_the_ledger_by_the_report_and_after_a_normal_shutdown(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    server = serve({"/l": fresh("ledger page")})
    settings = web_settings()
    async with open_service(settings) as svc:
        for _ in range(3):
            await svc.fetch_url(server.url("/l"))
        report = await svc.usage_report(days=1, provider="fetch")
    async with open_service(settings) as svc:
        for _ in range(2):
            await svc.fetch_url(server.url("/l"))
    async with open_service(settings) as svc:
        rows = await svc.deps.db.fetch(
            "SELECT outcome, count(*) AS n FROM web_access.requests WHERE provider = 'fetch' GROUP BY outcome"
        )
    assert [(r.requests, r.cache_hits) for r in report.items] == [(1, 2)]
    assert {r["outcome"]: r["n"] for r in rows} == {"network": 1, "cache": 4}
