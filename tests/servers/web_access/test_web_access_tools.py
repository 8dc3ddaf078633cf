"""The tools through the SDK's in-process client: argument checks, error texts, result shapes, sizes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from common.testing import call_fails, call_ok
from servers.web_access.server import build
from tests.servers.web_access.conftest import LocalServer, redirect, text
from tests.servers.web_access.test_fetcher import endless, silent

pytestmark = pytest.mark.anyio

PAGE = "<html><head><title>Tools</title></head><body><main>{}</main></body></html>"


async def test_fetch_url_pages_the_stored_document_and_returns_a_bounded_answer(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any]
) -> None:
    body = "".join(f"<p>Section {i}: the quick brown fox jumps over the lazy dog again.</p>" for i in range(2000))
    server = serve({"/long": text(PAGE.format(body), "text/html")})
    async with Client(build(web_settings()), raise_exceptions=True) as client:
        first = await call_ok(client, "fetch_url", {"url": server.url("/long")})
        assert len(first["content"]) <= 20_000
        assert first["truncated"] is True
        assert len(json.dumps(first)) < 30_000
        second = await call_ok(client, "fetch_url", {"url": server.url("/long"), "start": first["next_start"]})
        assert second["from_cache"] is True
        assert second["start"] == first["next_start"]
        resource = await client.read_resource(f"web://pages/{first['page_id']}")
        assert "Section 1" in resource.contents[0].text  # type: ignore[union-attr]
        usage = await client.read_resource("web://usage")
        assert '"provider":"fetch"' in usage.contents[0].text  # type: ignore[union-attr]
    assert len([s for s in server.seen if s.path == "/long"]) == 1


async def test_bad_arguments_and_unreachable_pages_give_short_clear_errors_within_the_timeout(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any]
) -> None:
    server = serve({"/endless": endless, "/silent": silent})
    settings = web_settings(max_bytes=50_000)
    async with Client(build(settings)) as client:
        await call_fails(client, "fetch_url", {"url": "javascript:alert(1)"}, "http://")
        await call_fails(client, "fetch_url", {"url": "http://169.254.169.254/latest/meta-data/"}, "link-local")
        await call_fails(client, "fetch_url", {}, "exactly one of url or result_id")
        await call_fails(client, "fetch_url", {"url": server.url("/x"), "max_chars": 5_000_000}, "max_chars")
        await call_fails(client, "fetch_url", {"result_id": 424242}, "No search result 424242")
        await call_fails(client, "fetch_url", {"url": server.url("/endless")}, "ceiling")
        started = time.monotonic()
        message = await call_fails(client, "fetch_url", {"url": server.url("/silent"), "timeout_s": 1}, "1 s")
        assert time.monotonic() - started < 5
        assert len(message) < 1024
        await call_fails(client, "manage_crawl", {"action": "status"}, "needs job_id")
        await call_fails(client, "manage_crawl", {"action": "status", "job_id": "nope"}, "not a job id")
        await call_fails(
            client, "manage_crawl", {"action": "status", "job_id": "00000000-0000-0000-0000-000000000000"}, "No job"
        )
        await call_fails(client, "web_search", {"query": "x"}, "WEB_ACCESS_SEARXNG_URL")
        await call_fails(client, "screenshot_page", {"url": "http://10.0.0.1/"}, "private")
        await call_fails(client, "list_links", {"url": "file:///etc/passwd"}, "http://")
        await call_fails(client, "search_history", {"cursor": "bogus"}, "cursor")


async def test_crawl_site_returns_the_job_and_manage_crawl_lists_its_pages(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any]
) -> None:
    links = "".join(f'<a href="/s/{i}">{i}</a>' for i in range(5))
    routes = {"/": text(PAGE.format(links), "text/html")} | {f"/s/{i}": text(PAGE.format(i), "text/html") for i in range(5)}  # fmt: skip
    server = serve(routes)
    async with Client(build(web_settings(crawl_wait_s=20)), raise_exceptions=True) as client:
        started = await call_ok(client, "crawl_site", {"url": server.url("/"), "max_pages": 10, "use_sitemap": False})
        assert started["job"]["status"] == "done"
        assert started["pages"]["fetched"] == 6
        pages = await call_ok(client, "manage_crawl", {"action": "pages", "job_id": started["job"]["id"], "limit": 4})
        assert pages["crawl"]["total"] == 6
        assert len(pages["crawl"]["items"]) == 4
        assert pages["crawl"]["truncated"]
        listed = await call_ok(client, "manage_crawl", {"action": "list"})
        assert listed["total"] == 1
        links_answer = await call_ok(client, "list_links", {"url": server.url("/"), "limit": 2})
        assert links_answer["total"] == 5
        assert links_answer["next_cursor"]


def check_files(path: Path, thumb: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert thumb.stat().st_size < path.stat().st_size


async def test_screenshot_page_stores_a_png_and_a_thumbnail_by_content_hash(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], tmp_path: Path
) -> None:
    # 127.0.0.2 is loopback too, but only 127.0.0.1 is allow-listed: the browser must not reach it.
    private = serve({"/pixel.png": text("x", "image/png")}, host="127.0.0.2")
    html = PAGE.format(f"<h1 style='height:2000px;background:#36c'>Tall</h1><img src='{private.url('/pixel.png')}'>")
    server = serve({"/shot": text(html, "text/html")})
    settings = web_settings(browser_path="/usr/bin/chromium", screenshots_dir=tmp_path / "shots", timeout_s=30)
    async with Client(build(settings), raise_exceptions=True) as client:
        shot = await call_ok(client, "screenshot_page", {"url": server.url("/shot"), "width": 800, "height": 600})
        full = await call_ok(client, "screenshot_page", {"url": server.url("/shot"), "full_page": True, "width": 800})
        again = await call_ok(client, "screenshot_page", {"url": server.url("/shot"), "width": 800, "height": 600})
    assert (shot["width"], shot["height"]) == (800, 600)
    assert full["height"] > 2000
    assert full["sha256"] != shot["sha256"]
    path, thumb = Path(shot["path"]), Path(shot["thumb_path"])
    check_files(path, thumb)
    assert path.parent.parent == tmp_path / "shots"
    assert shot["sha256"] in path.name
    assert again["path"] == shot["path"]
    assert again["screenshot_id"] != shot["screenshot_id"]
    assert "base64" not in json.dumps(shot)
    assert private.seen == []
    assert private.connections == 0


async def test_a_page_in_the_browser_cannot_follow_a_redirect_to_a_blocked_address(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], tmp_path: Path
) -> None:
    # Every redirect hop is a new connection through the guard's proxy, checked before it is dialed.
    private = serve({"/secret.png": text("x", "image/png")}, host="127.0.0.2")
    server = serve(
        {
            "/hop.png": redirect(private.url("/secret.png")),
            "/shot": text(PAGE.format("<h1>Hi</h1><img src='/hop.png'>"), "text/html"),
        }
    )
    settings = web_settings(browser_path="/usr/bin/chromium", screenshots_dir=tmp_path / "shots", timeout_s=30)
    async with Client(build(settings), raise_exceptions=True) as client:
        shot = await call_ok(client, "screenshot_page", {"url": server.url("/shot"), "width": 400, "height": 300})
    assert shot["width"] == 400
    assert private.connections == 0


async def test_render_uses_the_browser_when_the_plain_page_has_no_text(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any]
) -> None:
    script = (
        "<html><head><title>App</title></head><body><div id='app'></div><script>"
        "document.getElementById('app').innerHTML = '<article><h1>Rendered</h1>' + "
        "'<p>This paragraph only exists once the script has run in a real browser engine.</p>'.repeat(6) + '</article>';"
        "</script></body></html>"
    )
    server = serve({"/app": text(script, "text/html")})
    settings = web_settings(browser_path="/usr/bin/chromium", timeout_s=30)
    async with Client(build(settings), raise_exceptions=True) as client:
        plain = await call_ok(client, "fetch_url", {"url": server.url("/app")})
        rendered = await call_ok(client, "fetch_url", {"url": server.url("/app"), "render": True})
        again = await call_ok(client, "fetch_url", {"url": server.url("/app"), "render": True, "start": 10})
    assert "only exists once the script" not in plain["content"]
    assert plain["rendered"] is False
    assert rendered["rendered"] is True
    assert "only exists once the script" in rendered["content"]
    assert again["rendered"] is True
    assert again["from_cache"] is True
