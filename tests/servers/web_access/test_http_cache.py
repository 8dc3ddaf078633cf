"""hishel's PostgreSQL storage on the real database, and hishel's decisions through the service."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import AsyncIterator, Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from hishel import Entry, Headers, Request, Response

from common.testing import wait_until
from servers.web_access.fetcher import BODY_SHA_HEADER
from servers.web_access.http_cache import PostgresStorage
from tests.servers.web_access.conftest import LocalServer, reply

pytestmark = pytest.mark.anyio

URL = "https://example.org/page"


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def request() -> Request:
    return Request("GET", URL, Headers({"user-agent": "test/1", "accept-encoding": "gzip, deflate"}))


def response(*parts: bytes, **headers: str) -> Response:
    return Response(200, Headers({k.replace("_", "-"): v for k, v in headers.items()}), chunks(*parts))


async def read(stream: Any) -> bytes:
    return b"".join([part async for part in stream])


async def stored(storage: PostgresStorage, key: str, answer: Response, **limits: float) -> Entry:
    """An entry created and its stream read to the end (which is when it is saved)."""
    entry = await storage.create_entry(request(), answer, key, **limits)
    await read(entry.response.stream)
    return entry


@pytest.fixture
async def svc(web_settings: Callable[..., Any], open_service: Any) -> AsyncIterator[Any]:
    async with open_service(web_settings()) as opened:
        yield opened


async def test_an_entry_is_stored_when_its_stream_ends_and_read_back_by_another_storage(svc: Any) -> None:
    db = svc.deps.db
    writer, reader = PostgresStorage(db), PostgresStorage(db)
    entry = await writer.create_entry(request(), response(b"hello ", b"world", etag='"v1"'), "k1")
    stream = entry.response.stream
    assert await reader.get_entries("k1") == []
    assert await read(stream) == b"hello world"
    [back] = await reader.get_entries("k1")
    assert back.id == entry.id
    assert (back.request.method, back.request.url, back.request.headers["user-agent"]) == ("GET", URL, "test/1")
    assert (back.response.status_code, back.response.headers["etag"]) == (200, '"v1"')
    assert await read(back.response.stream) == b"hello world"
    assert await db.fetchval("SELECT count(*) FROM web_access.bodies") == 1


async def test_a_gzip_body_is_stored_decoded_once_per_hash_and_a_new_response_replaces_the_entry(svc: Any) -> None:
    db = svc.deps.db
    storage = PostgresStorage(db)
    packed = gzip.compress(b"same text")
    first = await storage.create_entry(request(), response(packed, content_encoding="gzip"), "k")
    assert await read(first.response.stream) == packed  # the reader gets what the origin sent
    second = await stored(storage, "k", response(b"same text", etag='"b"'))
    [entry] = await storage.get_entries("k")
    await stored(storage, "other", response(b"same text"))
    bodies = await db.fetchval("SELECT count(*) FROM web_access.bodies")
    assert entry.id == second.id
    assert entry.response.headers["etag"] == '"b"'
    assert await read(entry.response.stream) == b"same text"
    assert bodies == 1


async def test_a_stream_closed_early_or_over_the_size_limit_stores_nothing_but_reads_whole(svc: Any) -> None:
    storage = PostgresStorage(svc.deps.db, max_stream_size=10)
    big = await storage.create_entry(request(), response(b"0123456789", b"abc"), "big")
    assert await read(big.response.stream) == b"0123456789abc"
    cut = await storage.create_entry(request(), response(b"one", b"two"), "cut")
    stream = cut.response.stream
    assert isinstance(stream, AsyncIterator)
    assert await stream.__anext__() == b"one"
    await stream.aclose()  # type: ignore[attr-defined]
    broken = await storage.create_entry(request(), response(b"not gzip", content_encoding="gzip"), "broken")
    assert await read(broken.response.stream) == b"not gzip"
    assert await storage.get_entries("big") == []
    assert await storage.get_entries("cut") == []
    assert await storage.get_entries("broken") == []
    assert await svc.deps.db.fetchval("SELECT count(*) FROM web_access.http_entries") == 0


async def test_headers_are_replaced_after_a_304_and_removed_or_expired_entries_are_not_returned(svc: Any) -> None:
    storage = PostgresStorage(svc.deps.db)
    entry = await stored(storage, "k", response(b"x", cache_control="max-age=0", etag='"a"'))
    [before] = await storage.get_entries("k")
    # hishel hands back the stored headers it read (the body's hash among them) with the 304's merged in.
    merged = {name: list(before.response.headers.get_list(name) or []) for name in before.response.headers}
    await storage.update_headers(entry.id, Headers({**merged, "cache-control": ["max-age=600"]}))
    [updated] = await storage.get_entries("k")
    assert updated.response.headers["cache-control"] == "max-age=600"
    assert updated.response.headers[BODY_SHA_HEADER] == hashlib.sha256(b"x").hexdigest()
    assert await read(updated.response.stream) == b"x"
    kept = await svc.deps.db.fetchval("SELECT response_headers FROM web_access.http_entries WHERE key = 'k'")
    assert BODY_SHA_HEADER not in kept  # added on every read, never stored
    await storage.remove_entry(entry.id)
    assert await storage.get_entries("k") == []
    await storage.update_headers(entry.id, Headers({"etag": '"gone"'}))  # no entry: nothing happens
    await storage.remove_entry(entry.id)

    await stored(storage, "ttl", response(b"y"), ttl=0)
    assert await storage.get_entries("ttl") == []
    lasting = PostgresStorage(svc.deps.db, default_ttl=3600, default_tti=0.5)
    await stored(lasting, "tti", response(b"z"))
    assert len(await lasting.get_entries("tti")) == 1

    async def idled_out() -> bool:
        # Read past the storage: each lookup through it would restart the idle time.
        sql = "SELECT count(*) FROM web_access.http_entries WHERE key = 'tti' AND expires_at > now()"
        return bool(await svc.deps.db.fetchval(sql) == 0)

    await wait_until(idled_out, timeout_s=10, what="the entry to expire after its idle time")
    assert await lasting.get_entries("tti") == []
    assert await storage.refreshing().get_entries("k") == []


async def test_the_sweep_deletes_expired_entries_and_then_their_unused_bodies(svc: Any) -> None:
    db = svc.deps.db
    storage = PostgresStorage(db)
    await stored(storage, "kept", response(b"kept"))
    await stored(storage, "gone", response(b"gone"), ttl=0)
    await db.execute("UPDATE web_access.bodies SET created_at = now() - interval '2 hours'")
    await svc.sweep()
    left = await db.fetch("SELECT key FROM web_access.http_entries")
    bodies = await db.fetch("SELECT body FROM web_access.bodies")
    assert [r["key"] for r in left] == ["kept"]
    assert [bytes(r["body"]) for r in bodies] == [b"kept"]


# ------------------------------------------------------------------------------ hishel's decisions


def cached(body: bytes, *headers: tuple[str, str]) -> Callable[[BaseHTTPRequestHandler], None]:
    return lambda h: reply(h, 200, body, [("Content-Type", "text/plain"), *headers])


def undated(h: BaseHTTPRequestHandler) -> None:
    # send_response_only sends no Date: the cache must stamp one or max-age could never run out.
    h.send_response_only(200)
    h.send_header("Content-Type", "text/plain")
    h.send_header("Cache-Control", "max-age=600")
    h.send_header("Content-Length", "7")
    h.end_headers()
    h.wfile.write(b"undated")


async def test_expires_no_store_and_a_missing_date_follow_hishels_rules(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    server = serve({
        "/expires": cached(b"e", ("Expires", "Thu, 01 Jan 2099 00:00:00 GMT")),
        "/expired": cached(b"x", ("Expires", "Thu, 01 Jan 1998 00:00:00 GMT")),
        "/no-store": cached(b"n", ("Cache-Control", "no-store")),
        "/undated": undated,
    })  # fmt: skip
    async with open_service(web_settings()) as svc:
        answers = {}
        for path in ("/expires", "/expired", "/no-store", "/undated"):
            await svc.fetch_url(server.url(path))
            answers[path] = await svc.fetch_url(server.url(path))
        stored = await svc.deps.db.fetchval(
            "SELECT response_headers->'date' FROM web_access.http_entries WHERE url = $1", server.url("/undated")
        )
    assert {path: a.from_cache for path, a in answers.items()} == {
        "/expires": True, "/expired": False, "/no-store": False, "/undated": True,
    }  # fmt: skip
    counts = {path: len([s for s in server.seen if s.path == path]) for path in answers}
    assert counts == {"/expires": 1, "/expired": 2, "/no-store": 2, "/undated": 1}
    assert stored is not None


async def test_a_304_with_a_new_max_age_makes_the_next_fetch_a_cache_hit_and_max_age_s_reuses_a_checked_page(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    def handler(h: BaseHTTPRequestHandler) -> None:
        if h.headers.get("If-None-Match") == '"v1"':
            h.send_response(304)
            h.send_header("ETag", '"v1"')
            h.send_header("Cache-Control", "max-age=600")
            h.end_headers()
            return
        reply(h, 200, b"validated", [("ETag", '"v1"'), ("Cache-Control", "no-cache")])

    server = serve({"/v": handler, "/plain": cached(b"plain")})
    async with open_service(web_settings()) as svc:
        first = await svc.fetch_url(server.url("/v"))
        second = await svc.fetch_url(server.url("/v"))
        third = await svc.fetch_url(server.url("/v"))
        await svc.fetch_url(server.url("/plain"))
        reused = await svc.fetch_url(server.url("/plain"), max_age_s=3600)
        refetched = await svc.fetch_url(server.url("/plain"))
    assert (first.from_cache, second.revalidated, third.from_cache, third.revalidated) == (False, True, True, False)
    assert third.content == "validated"
    assert [s.headers.get("if-none-match") for s in server.seen if s.path == "/v"] == [None, '"v1"']
    assert (reused.from_cache, refetched.from_cache) == (True, False)
    assert len([s for s in server.seen if s.path == "/plain"]) == 2
