"""Bounded fetches against real loopback servers: ceilings, endless bodies, silence, redirects, conditionals."""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from common.errors import InvalidInput
from common.netguard import NetPolicy
from servers.web_access.fetcher import (
    FetchFailed,
    FetchResult,
    FetchTimeout,
    ResponseTooLarge,
    TooManyRedirects,
    build_client,
    fetch,
)
from servers.web_access.netguard import GuardedTransport
from tests.servers.web_access.conftest import LocalServer, LoopbackDial, redirect, reply, text

LOOPBACK = NetPolicy.from_entries(["127.0.0.1/32", "127.0.0.2/32"])


async def get(url: str, **kwargs: Any) -> FetchResult:
    transport = GuardedTransport(LOOPBACK, dial=LoopbackDial())
    async with build_client(LOOPBACK, transport=transport) as client:
        return await fetch(url, client=client, policy=LOOPBACK, **kwargs)


def endless(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/plain")
    h.end_headers()
    chunk = b"x" * 65536
    for _ in range(3000):  # bounded: about 200 MB at most, far past any ceiling the tests use
        if h.server.owner.stop.is_set():  # type: ignore[attr-defined]
            return
        try:
            h.wfile.write(chunk)
        except OSError:
            return


def silent(h: BaseHTTPRequestHandler) -> None:
    h.server.owner.stop.wait(10)  # type: ignore[attr-defined]


def gzip_bomb(h: BaseHTTPRequestHandler) -> None:
    body = gzip.compress(b"\0" * 20_000_000, compresslevel=9)
    reply(h, 200, body, [("Content-Encoding", "gzip"), ("Content-Type", "text/plain")])


def conditional(h: BaseHTTPRequestHandler) -> None:
    if h.headers.get("If-None-Match") == '"v1"':
        h.send_response(304)
        h.send_header("ETag", '"v1"')
        h.end_headers()
        return
    reply(h, 200, b"fresh", [("ETag", '"v1"'), ("Last-Modified", "Wed, 21 Oct 2026 07:28:00 GMT")])


@pytest.mark.anyio
async def test_a_small_page_comes_back_whole_with_its_metadata(serve: Callable[..., LocalServer]) -> None:
    server = serve({"/p": text("<h1>hi</h1>", "text/html; charset=utf-8")})
    result = await get(server.url("/p"))
    assert result.status == 200
    assert result.body == b"<h1>hi</h1>"
    assert result.content_type == "text/html; charset=utf-8"
    assert not result.truncated
    assert result.declared_length == len(result.body)
    assert result.redirects == []
    assert 0 <= result.elapsed_s < 5
    assert server.seen[0].headers["user-agent"].startswith("mcp-suite-web-access/")


@pytest.mark.anyio
async def test_a_body_over_the_ceiling_is_cut_and_marked_truncated(serve: Callable[..., LocalServer]) -> None:
    server = serve({"/big": text("a" * 100_000)})
    result = await get(server.url("/big"), max_bytes=10_000)
    assert result.truncated
    assert result.body == b"a" * 10_000
    assert result.declared_length == 100_000


@pytest.mark.anyio
async def test_a_body_exactly_at_the_ceiling_is_not_truncated(serve: Callable[..., LocalServer]) -> None:
    server = serve({"/exact": text("b" * 4096)})
    result = await get(server.url("/exact"), max_bytes=4096)
    assert not result.truncated
    assert len(result.body) == 4096


@pytest.mark.anyio
async def test_an_oversized_body_is_refused_when_asked_before_it_is_read(serve: Callable[..., LocalServer]) -> None:
    server = serve({"/big": text("a" * 100_000), "/endless": endless})
    with pytest.raises(ResponseTooLarge, match="declares 100000 bytes"):
        await get(server.url("/big"), max_bytes=10_000, refuse_oversize=True)
    with pytest.raises(ResponseTooLarge, match="more than the 10000-byte ceiling"):
        await get(server.url("/endless"), max_bytes=10_000, refuse_oversize=True)


@pytest.mark.anyio
async def test_an_endless_response_stops_at_the_ceiling(serve: Callable[..., LocalServer]) -> None:
    server = serve({"/endless": endless})
    started = time.monotonic()
    result = await get(server.url("/endless"), max_bytes=300_000, timeout_s=10)
    assert result.truncated
    assert len(result.body) == 300_000
    assert result.declared_length is None
    assert time.monotonic() - started < 5


@pytest.mark.anyio
async def test_a_compression_bomb_is_decoded_only_up_to_the_ceiling(serve: Callable[..., LocalServer]) -> None:
    server = serve({"/bomb": gzip_bomb})
    result = await get(server.url("/bomb"), max_bytes=100_000)
    assert result.truncated
    assert result.body == b"\0" * 100_000
    assert server.seen[0].headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.anyio
async def test_a_server_that_never_answers_fails_clearly_within_the_timeout(serve: Callable[..., LocalServer]) -> None:
    server = serve({"/silent": silent})
    started = time.monotonic()
    with pytest.raises(FetchTimeout, match=r"within 0\.5 s"):
        await get(server.url("/silent"), timeout_s=0.5)
    assert time.monotonic() - started < 3


@pytest.mark.anyio
async def test_a_refused_connection_is_a_clear_fetch_error(serve: Callable[..., LocalServer]) -> None:
    server = serve({})
    port = server.port
    server.close()
    with pytest.raises(FetchFailed, match="ConnectError"):
        await get(f"http://127.0.0.1:{port}/")


@pytest.mark.anyio
async def test_the_redirect_ceiling_stops_a_loop(serve: Callable[..., LocalServer]) -> None:
    routes = {f"/r{i}": redirect(f"/r{i + 1}") for i in range(10)}
    server = serve(routes)
    with pytest.raises(TooManyRedirects, match="more than 3 times"):
        await get(server.url("/r0"), max_redirects=3)
    assert len(server.seen) == 4
    result = await get(server.url("/r7"), max_redirects=3)
    assert result.status == 404
    assert [hop.status for hop in result.redirects] == [302, 302, 302]
    with pytest.raises(TooManyRedirects):
        await get(server.url("/r9"), max_redirects=0)


@pytest.mark.anyio
async def test_conditional_headers_reach_the_server_and_a_304_comes_back(serve: Callable[..., LocalServer]) -> None:
    server = serve({"/doc": conditional})
    fresh = await get(server.url("/doc"))
    assert fresh.etag == '"v1"'
    assert fresh.last_modified == "Wed, 21 Oct 2026 07:28:00 GMT"
    again = await get(server.url("/doc"), if_none_match='"v1"', if_modified_since=fresh.last_modified)
    assert again.not_modified
    assert again.body == b""
    assert server.seen[1].headers["if-none-match"] == '"v1"'
    assert server.seen[1].headers["if-modified-since"] == fresh.last_modified


@pytest.mark.anyio
async def test_credentials_and_conditionals_do_not_follow_a_redirect_to_another_origin(
    serve: Callable[..., LocalServer],
) -> None:
    other = serve({"/hop": redirect("/land"), "/land": text("ok")}, host="127.0.0.2")
    first = serve({"/go": redirect(other.url("/hop"))})
    result = await get(
        first.url("/go"), headers={"Authorization": "Bearer t", "X-Keep": "1"}, if_none_match='"v9"', user_agent="ua/1"
    )
    assert result.body == b"ok"
    assert first.seen[0].headers["authorization"] == "Bearer t"
    assert first.seen[0].headers["if-none-match"] == '"v9"'
    assert [s.path for s in other.seen] == ["/hop", "/land"]
    for landed in (s.headers for s in other.seen):
        assert "authorization" not in landed, "not even on a second hop within the other origin"
        assert "if-none-match" not in landed
        assert landed["x-keep"] == "1"
        assert landed["user-agent"] == "ua/1"


@pytest.mark.anyio
async def test_head_requests_return_headers_without_a_body(serve: Callable[..., LocalServer]) -> None:
    server = serve({"/h": text("body here")})
    result = await get(server.url("/h"), method="HEAD")
    assert result.status == 200
    assert result.body == b""
    assert result.declared_length == 9


@pytest.mark.anyio
async def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(InvalidInput):
        await get("http://127.0.0.1:9/", timeout_s=0)


@pytest.mark.anyio
async def test_cookies_a_site_sets_are_never_sent_back(serve: Callable[..., LocalServer]) -> None:
    set_cookie = [("Set-Cookie", "session=abc; Path=/"), ("Location", "/check")]
    server = serve({"/set": lambda h: reply(h, 302, b"", set_cookie), "/check": text("ok")})
    transport = GuardedTransport(LOOPBACK, dial=LoopbackDial())
    async with build_client(LOOPBACK, transport=transport) as client:
        await fetch(server.url("/set"), client=client, policy=LOOPBACK)
        await fetch(server.url("/check"), client=client, policy=LOOPBACK)
    assert [s.path for s in server.seen] == ["/set", "/check", "/check"]
    assert all("cookie" not in s.headers for s in server.seen)
