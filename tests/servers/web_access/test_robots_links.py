"""robots.txt policy and caching; link listing and sitemap parsing."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from common.netguard import NetPolicy
from servers.web_access.fetcher import build_client
from servers.web_access.links import extract_links, normalize_url, parse_sitemap
from servers.web_access.netguard import GuardedTransport
from servers.web_access.robots import RobotsAnswer, RobotsCache, decide, origin_of, robots_fetcher
from tests.servers.web_access.conftest import LocalServer, LoopbackDial, redirect, reply, text

LOOPBACK = NetPolicy.from_entries(["127.0.0.1/32"])
ROBOTS = """User-agent: *
Disallow: /private/
Crawl-delay: 2

User-agent: mcp-suite-web-access
Disallow: /
Allow: /docs/
Crawl-delay: 0.5

Sitemap: https://example.com/sitemap.xml
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.anyio
async def test_robots_rules_from_a_real_server_are_applied_and_cached(serve: Callable[..., LocalServer]) -> None:
    server = serve({"/robots.txt": text(ROBOTS)})
    clock = Clock()
    transport = GuardedTransport(LOOPBACK, dial=LoopbackDial())
    async with build_client(LOOPBACK, transport=transport) as client:
        cache = RobotsCache(robots_fetcher(client, LOOPBACK), ttl_s=60, clock=clock)
        site = server.url("")
        assert await cache.allowed(f"{site}/docs/intro", "mcp-suite-web-access/0.1")
        assert not await cache.allowed(f"{site}/blog/post", "mcp-suite-web-access/0.1")
        assert await cache.allowed(f"{site}/blog/post", "otherbot")
        assert not await cache.allowed(f"{site}/private/x", "otherbot")
        assert await cache.crawl_delay(f"{site}/", "mcp-suite-web-access") == 0.5
        assert await cache.crawl_delay(f"{site}/", "otherbot") == 2.0
        assert (await cache.rules(site + "/")).sitemaps == ["https://example.com/sitemap.xml"]
        assert [s.path for s in server.seen] == ["/robots.txt"], "one fetch per origin within the TTL"
        clock.now += 61
        assert await cache.allowed(f"{site}/docs/intro", "mcp-suite-web-access")
        assert [s.path for s in server.seen] == ["/robots.txt", "/robots.txt"], "fetched again after the TTL"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "allowed"),
    [(404, True), (410, True), (401, True), (403, True), (429, False), (500, False), (503, False)],
)
async def test_robots_status_policy_allows_on_4xx_and_refuses_on_5xx(
    status: int, allowed: bool, serve: Callable[..., LocalServer]
) -> None:
    server = serve({"/robots.txt": lambda h: reply(h, status, b"User-agent: *\nAllow: /\n")})
    transport = GuardedTransport(LOOPBACK, dial=LoopbackDial())
    async with build_client(LOOPBACK, transport=transport) as client:
        cache = RobotsCache(robots_fetcher(client, LOOPBACK))
        assert await cache.allowed(server.url("/page"), "bot") is allowed


@pytest.mark.anyio
async def test_an_unreachable_robots_txt_disallows_and_is_retried_sooner(serve: Callable[..., LocalServer]) -> None:
    server = serve({})
    port = server.port
    server.close()
    clock = Clock()
    calls: list[str] = []
    transport = GuardedTransport(LOOPBACK, dial=LoopbackDial())
    async with build_client(LOOPBACK, transport=transport) as client:
        real = robots_fetcher(client, LOOPBACK, timeout_s=2)

        async def counting(url: str) -> RobotsAnswer:
            calls.append(url)
            return await real(url)

        cache = RobotsCache(counting, ttl_s=3600, error_ttl_s=30, clock=clock)
        url = f"http://127.0.0.1:{port}/page"
        rules = await cache.rules(url)
        assert rules.policy == "disallow_all"
        assert "unreachable" in rules.reason
        assert not await cache.allowed(url, "bot")
        clock.now += 31
        await cache.rules(url)
    assert calls == [f"http://127.0.0.1:{port}/robots.txt"] * 2


@pytest.mark.anyio
async def test_more_than_five_robots_redirects_count_as_no_robots_txt(serve: Callable[..., LocalServer]) -> None:
    routes = {"/robots.txt": redirect("/r1")} | {f"/r{i}": redirect(f"/r{i + 1}") for i in range(1, 10)}
    server = serve(routes)
    transport = GuardedTransport(LOOPBACK, dial=LoopbackDial())
    async with build_client(LOOPBACK, transport=transport) as client:
        cache = RobotsCache(robots_fetcher(client, LOOPBACK))
        assert (await cache.rules(server.url("/"))).policy == "allow_all"


@pytest.mark.anyio
async def test_concurrent_questions_about_one_origin_share_one_fetch() -> None:
    release = anyio.Event()
    calls: list[str] = []

    async def slow(url: str) -> RobotsAnswer:
        calls.append(url)
        await release.wait()
        return RobotsAnswer(200, b"User-agent: *\nDisallow: /x\n")

    cache = RobotsCache(slow)
    answers: list[bool] = []

    async def ask(path: str) -> None:
        answers.append(await cache.allowed(f"https://example.com{path}", "bot"))

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(ask, "/x/1" if i % 2 else "/ok")
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert calls == ["https://example.com/robots.txt"]
    assert sorted(answers) == [False] * 5 + [True] * 5


def test_robots_origins_keep_scheme_host_and_port_apart() -> None:
    assert origin_of("https://Example.com/a?b") == "https://example.com"
    assert origin_of("http://example.com:8080/") == "http://example.com:8080"
    assert origin_of("http://[2001:db8::1]/x") == "http://[2001:db8::1]"
    rules = decide("https://e.com", RobotsAnswer(200, b"\xff\xfe garbage\nUser-agent: *\nDisallow: /"), now=0, ttl_s=1, error_ttl_s=1)  # fmt: skip
    assert not rules.allowed("https://e.com/a", "bot")


PAGE = """<html><head><base href="https://example.com/docs/"></head><body>
<a href="intro.html#top">Intro</a>
<a href="intro.html">Intro again</a>
<a href="./guide/../setup.html">Setup</a>
<a href="/">   Home
   page </a>
<a href="https://example.com:443/api?b=2&amp;a=1">API</a>
<a href="https://example.com/api?a=1&amp;b=2">API sorted</a>
<a href="http://example.com/insecure">Plain http</a>
<a href="https://example.com:8443/admin">Other port</a>
<a href="https://other.org/page" rel="nofollow sponsored">Sponsor</a>
<a href="HTTPS://OTHER.org/page">Sponsor again</a>
<a href="https://cdn.example.com/x">CDN</a>
<a href="mailto:team@example.com">Mail</a>
<a href="javascript:void(0)">JS</a>
<a href="tel:+123">Call</a>
<a href="https://user:pw@example.com/secret">Creds</a>
<a href="#section">Same page</a>
<a href="contact.html"><img src="x.png"></a>
<a href="contact.html">Contact us</a>
<a>No href</a>
<map><area href="/map-target" alt="Region"></map>
</body></html>"""


def test_links_are_absolute_normalised_deduplicated_and_classified() -> None:
    listing = extract_links(PAGE, "https://example.com/docs/page.html")
    got = [(link.url, link.text, link.internal) for link in listing.links]
    assert got == [
        ("https://example.com/docs/intro.html", "Intro", True),
        ("https://example.com/docs/setup.html", "Setup", True),
        ("https://example.com/", "Home page", True),
        ("https://example.com/api?b=2&a=1", "API", True),
        ("https://example.com/api?a=1&b=2", "API sorted", True),
        ("http://example.com/insecure", "Plain http", False),
        ("https://example.com:8443/admin", "Other port", False),
        ("https://other.org/page", "Sponsor", False),
        ("https://cdn.example.com/x", "CDN", False),
        ("https://example.com/docs/", "Same page", True),  # resolved against <base>, as browsers do
        ("https://example.com/docs/contact.html", "Contact us", True),
        ("https://example.com/map-target", "Region", True),
    ]
    assert listing.total == 12
    assert not listing.truncated
    assert (listing.internal_count, listing.external_count) == (8, 4)
    assert [link.nofollow for link in listing.links if link.url == "https://other.org/page"] == [True]


def test_link_listing_is_bounded_and_filterable() -> None:
    external = extract_links(PAGE, "https://example.com/docs/page.html", which="external", limit=2)
    assert [link.url for link in external.links] == ["http://example.com/insecure", "https://example.com:8443/admin"]
    assert external.total == 4
    assert external.truncated
    assert extract_links("", "https://example.com/").total == 0


@pytest.mark.parametrize(
    ("url", "base", "normal"),
    [
        ("HTTP://Example.COM:80/a/./b/../c?x=1&y=%7e#frag", None, "http://example.com/a/c?x=1&y=~"),
        ("../d e", "https://ex.com/a/b/c", "https://ex.com/a/d%20e"),
        ("https://ex.com/%2fa%2Fb", None, "https://ex.com/%2Fa%2Fb"),
        ("http://bücher.de", None, "http://xn--bcher-kva.de/"),
        ("//cdn.ex.com/lib.js", "https://ex.com/", "https://cdn.ex.com/lib.js"),
        ("ftp://ex.com/file", None, None),
        ("http://ex.com:notaport/", None, None),
    ],
)
def test_url_normalisation(url: str, base: str | None, normal: str | None) -> None:
    assert normalize_url(url, base) == normal


URLSET = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>https://example.com/</loc><lastmod>2026-01-02</lastmod></url>
  <url><loc> https://example.com/a#frag </loc></url>
  <url><loc>mailto:x@example.com</loc></url>
  <url><loc>https://example.com/b</loc><changefreq>daily</changefreq></url>
</urlset>"""
INDEX = b"""<?xml version="1.0"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>https://example.com/sitemap-1.xml.gz</loc><lastmod>2026-03-04T05:06:07+00:00</lastmod></sitemap>
  <sitemap><loc>https://example.com/sitemap-2.xml</loc></sitemap>
</sitemapindex>"""


def test_a_urlset_sitemap_gives_its_pages_and_dates() -> None:
    sitemap = parse_sitemap(URLSET)
    assert sitemap.kind == "urlset"
    assert [(e.loc, e.lastmod) for e in sitemap.entries] == [
        ("https://example.com/", "2026-01-02"),
        ("https://example.com/a", None),
        ("https://example.com/b", None),
    ]
    assert (sitemap.total, sitemap.truncated) == (3, False)


def test_a_sitemap_index_and_a_gzipped_sitemap_are_read() -> None:
    index = parse_sitemap(INDEX)
    assert index.kind == "sitemapindex"
    assert [e.loc for e in index.entries] == [
        "https://example.com/sitemap-1.xml.gz",
        "https://example.com/sitemap-2.xml",
    ]
    assert index.entries[0].lastmod == "2026-03-04T05:06:07+00:00"
    assert parse_sitemap(gzip.compress(URLSET)).total == 3


def test_sitemaps_are_bounded_and_plain_text_lists_work() -> None:
    many = b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">' + b"".join(
        f"<url><loc>https://example.com/p{i}</loc></url>".encode() for i in range(50)
    ) + b"</urlset>"  # fmt: skip
    bounded = parse_sitemap(many, limit=10)
    assert len(bounded.entries) == 10
    assert (bounded.total, bounded.truncated) == (50, True)
    listing = parse_sitemap(b"https://example.com/one\nnot a url\nhttps://example.com/two\n")
    assert listing.kind == "text"
    assert [e.loc for e in listing.entries] == ["https://example.com/one", "https://example.com/two"]


def test_a_sitemap_with_an_external_entity_does_not_read_local_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("topsecretvalue")
    evil = f"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY xxe SYSTEM "file://{secret}">]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>https://example.com/&xxe;</loc></url></urlset>"""
    sitemap = parse_sitemap(evil.encode())
    assert all("topsecretvalue" not in e.loc for e in sitemap.entries)


def test_broken_sitemaps_give_no_entries_rather_than_errors() -> None:
    assert parse_sitemap(b"<urlset><url><loc>").entries == []
    assert parse_sitemap(b"\x1f\x8b garbage").entries == []
