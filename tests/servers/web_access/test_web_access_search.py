"""Search through a fake SearXNG on loopback, the history found again by meaning, quotas and the ledger."""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from common.errors import Conflict, InvalidInput, SuiteError
from tests.servers.web_access.conftest import LocalServer, reply, text

CORPUS = {
    "how to bake sourdough bread": [
        ("Sourdough baking guide", "https://bread.example/sourdough", "Starter, levain, proofing and baking a loaf."),
        ("Crumb and crust", "https://bread.example/crumb", "Getting an open crumb in a home oven."),
    ],
    "python asyncio timeout": [
        ("asyncio.timeout", "https://docs.python.example/asyncio", "Cancel an awaitable after a deadline."),
    ],
    "best hiking trails in the alps": [
        ("Alpine routes", "https://hike.example/alps", "Mountain paths, huts and passes in Switzerland."),
    ],
}


def fake_searxng(h: BaseHTTPRequestHandler) -> None:
    query = parse_qs(urlsplit(h.path).query)
    q = query.get("q", [""])[0]
    if query.get("format") != ["json"]:
        reply(h, 403, b"format not allowed")
        return
    results = [{"title": t, "url": u, "content": c} for t, u, c in CORPUS.get(q, [])]
    reply(h, 200, json.dumps({"query": q, "results": results}).encode(), [("Content-Type", "application/json")])


@pytest.mark.anyio
async def test_searches_are_recorded_and_found_again_by_paraphrase_and_keyword(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any, embedder: Any
) -> None:
    engine = serve({"/search": fake_searxng})
    settings = web_settings(searxng_url=engine.url("/"), embedding_model="local/all-MiniLM-L6-v2-int8")
    async with open_service(settings, embedder=embedder) as svc:
        answers = [await svc.web_search(q) for q in CORPUS]
        by_meaning = await svc.search_history("making a loaf of bread with a starter", limit=1)
        by_keyword = await svc.search_history("asyncio", limit=1)
        recent = await svc.search_history(None, limit=2)
        older = await svc.search_history(None, limit=2, cursor=recent.next_cursor)
        usage = await svc.usage_report(days=1)
    first = answers[0]
    assert first.provider == "searxng"
    assert [r.rank for r in first.results] == [1, 2]
    assert first.results[0].url == "https://bread.example/sourdough"
    assert by_meaning.items[0].query == "how to bake sourdough bread"
    assert by_meaning.items[0].results[0].result_id == first.results[0].result_id
    assert by_keyword.items[0].query == "python asyncio timeout"
    assert recent.total == 3
    assert recent.truncated
    assert next(i.query for i in recent.items) == "best hiking trails in the alps"
    assert len(older.items) == 1
    assert not older.truncated
    searx = [row for row in usage.items if row.provider == "searxng"]
    assert searx
    assert searx[0].requests == 3


@pytest.mark.anyio
async def test_a_result_is_fetched_by_its_id(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    site = serve({"/doc": text("The page behind the result.")})

    def engine_handler(h: BaseHTTPRequestHandler) -> None:
        body = {"results": [{"title": "Doc", "url": site.url("/doc"), "content": "snippet"}]}
        reply(h, 200, json.dumps(body).encode(), [("Content-Type", "application/json")])

    engine = serve({"/search": engine_handler})
    async with open_service(web_settings(searxng_url=engine.url())) as svc:
        answer = await svc.web_search("anything")
        page = await svc.fetch_result(answer.results[0].result_id)
    assert page.content == "The page behind the result."


@pytest.mark.anyio
async def test_search_without_a_provider_says_how_to_configure_one(
    web_settings: Callable[..., Any], open_service: Any
) -> None:
    async with open_service(web_settings()) as svc:
        with pytest.raises(InvalidInput, match=r"WEB_ACCESS_SEARXNG_URL.*WEB_ACCESS_BRAVE_API_KEY"):
            await svc.web_search("anything")


@pytest.mark.anyio
async def test_brave_is_called_with_its_key_and_a_failing_provider_is_a_clear_error(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    def brave(h: BaseHTTPRequestHandler) -> None:
        if h.headers.get("X-Subscription-Token") != "k3y":
            reply(h, 401, b"no")
            return
        body = {"web": {"results": [{"title": "B", "url": "https://b.example/", "description": "d"}]}}
        reply(h, 200, json.dumps(body).encode(), [("Content-Type", "application/json")])

    engine = serve({"/brave": brave, "/search": lambda h: reply(h, 500, b"down")})
    async with open_service(web_settings(brave_api_key="k3y", brave_url=engine.url("/brave"))) as svc:
        answer = await svc.web_search("q")
    assert answer.provider == "brave"
    assert answer.results[0].snippet == "d"
    async with open_service(web_settings(searxng_url=engine.url())) as svc:
        with pytest.raises(SuiteError, match="HTTP 500"):
            await svc.web_search("q")
        usage = await svc.usage_report(days=1, provider="searxng")
    assert usage.items[0].errors == 1


@pytest.mark.anyio
async def test_a_provider_past_its_hard_quota_is_refused_with_the_figures_and_warned_before(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    engine = serve({"/search": fake_searxng})
    quotas = {"searxng": {"warn": 2, "hard": 3}}
    async with open_service(web_settings(searxng_url=engine.url(), quotas=quotas)) as svc:
        first = await svc.web_search("python asyncio timeout")
        await svc.web_search("python asyncio timeout")
        third = await svc.web_search("python asyncio timeout")
        with pytest.raises(Conflict, match=r"3 requests today .* hard limit of 3"):
            await svc.web_search("python asyncio timeout")
        report = await svc.usage_report(days=1)
    assert first.warning is None
    assert third.warning is not None
    assert "warning" in third.warning
    assert report.quotas[0].state == "exhausted"
    assert report.quotas[0].used_today == 3
    row = next(r for r in report.items if r.provider == "searxng")
    assert (row.requests, row.refused) == (3, 1)
    assert len([s for s in engine.seen if s.path.startswith("/search")]) == 3
