"""The service on a real database against real loopback HTTP servers: cache, revalidation, paging, bad input."""

from __future__ import annotations

import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from common.errors import InvalidInput, NotFound, SuiteError
from common.netguard import BlockedURL
from servers.web_access import store
from tests.servers.web_access.conftest import LocalServer, reply, text
from tests.servers.web_access.test_fetcher import endless, silent

ARTICLE = "<html><head><title>Cache test</title></head><body><article><h1>Caching</h1>{}</article></body></html>"


def etag_page(body: str, etag: str = '"v1"') -> Callable[[BaseHTTPRequestHandler], None]:
    def handler(h: BaseHTTPRequestHandler) -> None:
        if h.headers.get("If-None-Match") == etag:
            h.send_response(304)
            h.send_header("ETag", etag)
            h.end_headers()
            return
        reply(h, 200, body.encode(), [("Content-Type", "text/html; charset=utf-8"), ("ETag", etag), ("Cache-Control", "no-cache")])  # fmt: skip

    return handler


LAST_MODIFIED = "Tue, 01 Dec 2026 10:00:00 GMT"


def last_modified_page(body: str) -> Callable[[BaseHTTPRequestHandler], None]:
    def handler(h: BaseHTTPRequestHandler) -> None:
        if h.headers.get("If-Modified-Since") == LAST_MODIFIED:
            h.send_response(304)
            h.end_headers()
            return
        # max-age=0: stale at once, so every fetch revalidates.
        headers = [("Content-Type", "text/html"), ("Last-Modified", LAST_MODIFIED), ("Cache-Control", "max-age=0")]
        reply(h, 200, body.encode(), headers)

    return handler


def paragraphs(n: int) -> str:
    return "".join(
        f"<p>Paragraph {i} talks about HTTP caching, validators and freshness lifetimes.</p>" for i in range(n)
    )


def hits(server: LocalServer, path: str) -> list[dict[str, str]]:
    return [s.headers for s in server.seen if s.path == path]


@pytest.mark.anyio
async def test_a_second_fetch_sends_the_etag_and_a_304_refreshes_the_entry_without_a_download(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    server = serve({"/a": etag_page(ARTICLE.format(paragraphs(5)))})
    async with open_service(web_settings()) as svc:
        first = await svc.fetch_url(server.url("/a"))
        second = await svc.fetch_url(server.url("/a"))
        row = await store.get_page(svc.deps.db, first.page_id)
    assert (first.from_cache, first.revalidated) == (False, False)
    assert (second.from_cache, second.revalidated) == (True, True)
    assert second.content == first.content
    assert "Paragraph 3" in first.content
    assert first.title in ("Cache test", "Caching")
    seen = hits(server, "/a")
    assert len(seen) == 2
    assert "if-none-match" not in seen[0]
    assert seen[1]["if-none-match"] == '"v1"'
    assert row is not None
    assert (row["downloads"], row["revalidations"]) == (1, 1)
    assert second.checked_at > first.checked_at


@pytest.mark.anyio
async def test_last_modified_revalidates_and_force_refresh_downloads_without_validators(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    server = serve({"/lm": last_modified_page(ARTICLE.format(paragraphs(3)))})
    async with open_service(web_settings()) as svc:
        await svc.fetch_url(server.url("/lm"))
        again = await svc.fetch_url(server.url("/lm"))
        forced = await svc.fetch_url(server.url("/lm"), force_refresh=True)
        row = await store.get_page(svc.deps.db, forced.page_id)
    seen = hits(server, "/lm")
    assert [s.get("if-modified-since") for s in seen] == [None, LAST_MODIFIED, None]
    assert again.revalidated
    assert not forced.from_cache
    assert row is not None
    assert (row["downloads"], row["revalidations"]) == (2, 1)


@pytest.mark.anyio
async def test_a_fresh_page_is_answered_from_the_database_and_max_age_zero_asks_the_origin(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    page = ARTICLE.format(paragraphs(2)).encode()
    server = serve({"/fresh": lambda h: reply(h, 200, page, [("Content-Type", "text/html"), ("Cache-Control", "max-age=600")])})  # fmt: skip
    async with open_service(web_settings()) as svc:
        await svc.fetch_url(server.url("/fresh"))
        cached = await svc.fetch_url(server.url("/fresh"), mode="text")
        asked = await svc.fetch_url(server.url("/fresh"), max_age_s=0)
    assert cached.from_cache
    assert not cached.revalidated
    assert cached.format == "text"
    assert not asked.from_cache
    assert len(hits(server, "/fresh")) == 2


@pytest.mark.anyio
async def test_paging_a_200k_character_page_makes_exactly_one_network_request(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    big = "\n\n".join(f"Line {i}: " + "word " * 20 for i in range(2000))
    assert len(big) > 200_000
    server = serve({"/big.txt": text(big)})
    async with open_service(web_settings()) as svc:
        pieces = []
        start = 0
        for _ in range(100):  # bounded: 200k characters in 20k slices is about 10 calls
            answer = await svc.fetch_url(server.url("/big.txt"), start=start, max_chars=20_000)
            pieces.append(answer.content)
            if answer.next_start is None:
                break
            start = answer.next_start
        assert answer.total_chars == len(big)
        assert not answer.truncated
    assert "".join(pieces) == big
    assert len(pieces) >= 10
    assert len(hits(server, "/big.txt")) == 1


@pytest.mark.anyio
async def test_the_same_body_at_two_urls_is_stored_once_and_json_is_pretty_printed(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    data = text('{"b": [1, 2], "a": {"c": true}}', "application/json")
    server = serve({"/one.json": data, "/two.json": data})
    async with open_service(web_settings()) as svc:
        one = await svc.fetch_url(server.url("/one.json"))
        two = await svc.fetch_url(server.url("/two.json"))
        bodies = await svc.deps.db.fetchval("SELECT count(*) FROM web_access.bodies")
    assert one.format == "json"
    assert '\n  "b": [' in one.content
    assert one.page_id != two.page_id
    assert bodies == 1


@pytest.mark.anyio
async def test_bad_input_gives_clear_errors_and_writes_nothing(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    server = serve({"/endless": endless, "/silent": silent, "/ok": text("fine")})
    async with open_service(web_settings(max_bytes=100_000, timeout_s=1.0)) as svc:
        for bad in ("not a url", "ftp://example.com/x", "http://0x7f000001/", "http://user@example.com/", ""):
            with pytest.raises(InvalidInput):
                await svc.fetch_url(bad)
        with pytest.raises(BlockedURL):
            await svc.fetch_url("http://10.1.2.3/")
        with pytest.raises(InvalidInput, match="max_chars"):
            await svc.fetch_url(server.url("/ok"), max_chars=10_000_000)
        with pytest.raises(InvalidInput, match="timeout_s"):
            await svc.fetch_url(server.url("/ok"), timeout_s=10_000)
        with pytest.raises(SuiteError, match="ceiling"):
            await svc.fetch_url(server.url("/endless"))
        started = time.monotonic()
        with pytest.raises(SuiteError, match="within"):
            await svc.fetch_url(server.url("/silent"), timeout_s=1.0)
        assert time.monotonic() - started < 5
        with pytest.raises(NotFound):
            await svc.get_page(987654)
        with pytest.raises(NotFound):
            await svc.fetch_result(987654)
        ok = await svc.fetch_url(server.url("/ok"))
        with pytest.raises(InvalidInput, match="past the end"):
            await svc.fetch_url(server.url("/ok"), start=ok.total_chars + 5)
        pages = await svc.deps.db.fetchval("SELECT count(*) FROM web_access.pages")
        errors = await svc.deps.db.fetchval("SELECT count(*) FROM web_access.requests WHERE outcome = 'error'")
    assert pages == 1
    assert errors == 2


@pytest.mark.anyio
async def test_robots_txt_rules_for_the_configured_user_agent_are_obeyed_unless_turned_off(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    robots = "User-agent: TestBot\nDisallow: /private\n\nUser-agent: *\nDisallow: /\n"
    server = serve({"/robots.txt": text(robots), "/private/x": text("secret"), "/open": text("open")})
    async with open_service(web_settings(user_agent="TestBot/1.0")) as svc:
        with pytest.raises(InvalidInput, match=r"robots\.txt"):
            await svc.fetch_url(server.url("/private/x"))
        assert (await svc.fetch_url(server.url("/open"))).content == "open"
    assert {s.headers["user-agent"] for s in server.seen} == {"TestBot/1.0"}
    async with open_service(web_settings(obey_robots=False)) as svc:
        assert (await svc.fetch_url(server.url("/private/x"))).content == "secret"


@pytest.mark.anyio
async def test_a_robots_txt_answer_is_shared_by_processes_and_an_unreachable_one_is_not(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    server = serve({"/robots.txt": text("User-agent: *\nDisallow: /private\n"), "/a": text("a"), "/b": text("b")})
    settings = web_settings()
    async with open_service(settings) as first, open_service(settings) as second:
        assert (await first.fetch_url(server.url("/a"))).content == "a"
        assert (await second.fetch_url(server.url("/b"))).content == "b"
        with pytest.raises(InvalidInput, match=r"robots\.txt"):
            await second.fetch_url(server.url("/private/x"))
        await second.ledger.flush()  # cache answers' rows are written after the answer
        ledger = await first.deps.db.fetch(
            "SELECT outcome, count(*) AS n FROM web_access.requests WHERE provider = 'robots' GROUP BY outcome"
        )
    assert [s.path for s in server.seen].count("/robots.txt") == 1
    assert {r["outcome"]: r["n"] for r in ledger} == {"network": 1, "cache": 1}

    broken = serve({"/robots.txt": lambda h: reply(h, 503, b"down"), "/c": text("c")})
    async with open_service(settings) as first, open_service(settings) as second:
        for svc in (first, second):
            with pytest.raises(InvalidInput, match=r"robots\.txt"):
                await svc.fetch_url(broken.url("/c"))
    assert [s.path for s in broken.seen].count("/robots.txt") == 2


@pytest.mark.anyio
async def test_links_are_listed_a_page_at_a_time(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    html = "<html><body>" + "".join(f'<a href="/p{i}">P{i}</a>' for i in range(30)) + '<a href="https://example.com/">ext</a></body></html>'  # fmt: skip
    server = serve({"/links": text(html, "text/html")})
    async with open_service(web_settings()) as svc:
        first = await svc.list_links(server.url("/links"), limit=20)
        second = await svc.list_links(server.url("/links"), limit=20, cursor=first.next_cursor)
        external = await svc.list_links(server.url("/links"), which="external")
    assert (first.total, first.internal_count, first.external_count) == (31, 30, 1)
    assert first.truncated
    assert not second.truncated
    assert len(second.items) == 11
    assert [link.url for link in external.items] == ["https://example.com/"]


@pytest.mark.anyio
async def test_the_sweep_deletes_old_pages_unused_bodies_and_old_ledger_rows_only(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    server = serve({"/old": text("old page"), "/new": text("new page")})
    async with open_service(web_settings(cache_days=7, usage_days=30)) as svc:
        old = await svc.fetch_url(server.url("/old"))
        await svc.fetch_url(server.url("/new"))
        db = svc.deps.db
        await db.execute(
            "UPDATE web_access.pages SET checked_at = now() - interval '8 days' WHERE id = $1", old.page_id
        )
        await db.execute("UPDATE web_access.bodies SET created_at = now() - interval '8 days'")
        await svc.ledger.record("fetch", "gone", "network")
        await db.execute("UPDATE web_access.requests SET at = now() - interval '31 days' WHERE host = 'gone'")
        counts = await svc.sweep()
        left = await db.fetch("SELECT url FROM web_access.pages")
        documents = await db.fetchval("SELECT count(*) FROM web_access.documents")
        with pytest.raises(NotFound):
            await svc.get_page(old.page_id)
    assert counts == (1, 1, 1)
    assert [r["url"] for r in left] == [server.url("/new")]
    assert documents == 1


@pytest.mark.anyio
async def test_paging_reads_the_redis_hot_copy_of_the_document(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    server = serve({"/hot.txt": text("hot " * 5000)})
    async with open_service(web_settings()) as svc:
        first = await svc.fetch_url(server.url("/hot.txt"), max_chars=1000)
        await svc.deps.db.execute("DELETE FROM web_access.documents")
        second = await svc.fetch_url(server.url("/hot.txt"), max_chars=1000, start=first.next_start or 0)
    async with open_service(web_settings(hot_ttl_s=0)) as cold:
        third = await cold.fetch_url(server.url("/hot.txt"), max_chars=1000, start=first.next_start or 0)
        stored = await cold.deps.db.fetchval("SELECT count(*) FROM web_access.documents")
    assert second.content == third.content
    assert second.start == first.next_start
    assert stored == 1  # the cold service extracted it again from the stored body
