"""web_access benchmark next to the reference ``mcp-server-fetch``, both over stdio, on a local site.

Run: ``.venv/bin/python -m tests.benchmarks.bench_web_access [--samples 20] [--starts 3]
[--crawl-pages 200] [--shots 5] [--no-peer]``.
Starts its own embedded PostgreSQL in a temporary directory, uses Redis at REDIS_URL (default
127.0.0.1:6379) and an HTTP server on 127.0.0.1 that counts the requests it answers. The reference
and the extraction corpus come from PyPI into the benchmark cache folder (see peer_fetch.py).
Measures spawn to initialize, first and repeated fetch of a 100 KB article page, paging a
200k-character page in 5k pieces (requests counted at the server), extraction quality on 20 saved
news pages (share of the expected main text's words recovered, and share of the answer that is
main text), a 200-page crawl without politeness delay, screenshots, and peak RSS. Prints one table;
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mcp import Client
from mcp.client.stdio import StdioServerParameters

from common.testing import call_ok, create_database, server_env, start_cluster
from tests.benchmarks import peer_fetch
from tests.benchmarks._util import (
    WORDS,
    bare_round_trip_ms,
    children_peak_rss_mb,
    drop_prefix,
    median,
    pct,
    print_table,
    run_prefix,
)

ROOT = Path(__file__).resolve().parents[2]
PIECE = 5_000
SEED = 11


# ------------------------------------------------------------------------------------ local site


def _sentence(rng: random.Random, words: int = 14) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def article_page(target_bytes: int, seed: int) -> bytes:
    """An article page with navigation, a sidebar and a footer around the text, about ``target_bytes``."""
    rng = random.Random(seed)
    nav = "".join(f'<li><a href="/section/{i}">Section {i}</a></li>' for i in range(40))
    side = "".join(f'<li><a href="/related/{i}">{_sentence(rng, 6)}</a></li>' for i in range(20))
    head = (
        "<!doctype html><html><head><meta charset='utf-8'><title>A long article</title></head><body>"
        f"<header><nav><ul>{nav}</ul></nav></header><aside><ul>{side}</ul></aside>"
        "<main><article><h1>A long article</h1>"
    )
    tail = "</article></main><footer><p>Copyright. All rights reserved. Terms. Privacy.</p></footer></body></html>"
    parts = [head]
    size = len(head) + len(tail)
    n = 0
    while size < target_bytes:
        n += 1
        block = f"<h2>Part {n}</h2>" if n % 8 == 0 else ""
        block += "<p>" + " ".join(_sentence(rng) for _ in range(5)) + "</p>"
        parts.append(block)
        size += len(block)
    parts.append(tail)
    return "".join(parts).encode()


def long_page(chars: int, seed: int) -> bytes:
    """A page whose readable text is about ``chars`` characters."""
    rng = random.Random(seed)
    parts = ["<!doctype html><html><head><title>Long</title></head><body><article><h1>Long</h1>"]
    total = 0
    while total < chars:
        text = " ".join(_sentence(rng) for _ in range(6))
        parts.append(f"<p>{text}</p>")
        total += len(text) + 2
    parts.append("</article></body></html>")
    return "".join(parts).encode()


def site_page(i: int, n: int, prefix: str) -> bytes:
    """Page ``i`` of an ``n``-page site: a binary tree of links plus a link home (a cycle)."""
    links = [c for c in (2 * i + 1, 2 * i + 2) if c < n] + [0]
    anchors = "".join(f'<li><a href="{prefix}{c}.html">page {c}</a></li>' for c in links)
    return (
        f"<!doctype html><html><head><title>Page {i}</title></head><body><h1>Page {i}</h1>"
        f"<p>{_sentence(random.Random(i), 40)}</p><ul>{anchors}</ul></body></html>"
    ).encode()


class Site:
    """A local HTTP server: fixed routes, counting every request by path."""

    def __init__(self, routes: dict[str, tuple[bytes, str]], cache_control: str = "max-age=3600") -> None:
        self.routes = routes
        self.cache_control = cache_control
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                with owner._lock:
                    owner.hits[path] += 1
                found = owner.routes.get(path)
                if found is None:
                    body, ctype, status = b"not found", "text/plain", 404
                else:
                    (body, ctype), status = found, 200
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                if status == 200:
                    self.send_header("Cache-Control", owner.cache_control)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def count(self, path: str) -> int:
        with self._lock:
            return self.hits[path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ------------------------------------------------------------------------------------- scoring

_TOKEN = re.compile(r"[\u0e00-\u0e7f\u1000-\u109f\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|[^\W_]+")


def tokens(text: str) -> Counter[str]:
    """Words, and single characters of scripts written without spaces (Thai, Burmese, CJK)."""
    return Counter(t.lower() for t in _TOKEN.findall(text))


def overlap(expected: str, got: str) -> tuple[float, float]:
    """(share of the expected words found in ``got``, share of ``got``'s words that are expected)."""
    want, have = tokens(expected), tokens(got)
    common = sum((want & have).values())
    return common / max(1, sum(want.values())), common / max(1, sum(have.values()))


# ----------------------------------------------------------------------------------- the servers


class Side:
    """One server under test: how to call its fetch tool and read the page text from the answer."""

    def __init__(self, name: str, params: StdioServerParameters, marker: str) -> None:
        self.name = name
        self.params = params
        self.marker = marker

    async def fetch(self, client: Client, url: str, max_chars: int, start: int = 0) -> tuple[str, int | None]:
        """The page text of one call and the next start (None at the end)."""
        raise NotImplementedError


class Ours(Side):
    async def fetch(self, client: Client, url: str, max_chars: int, start: int = 0) -> tuple[str, int | None]:
        out = await call_ok(client, "fetch_url", {"url": url, "max_chars": max_chars, "start": start})
        return str(out["content"]), out.get("next_start")


_NEXT = re.compile(r"<error>Content truncated\. Call the fetch tool with a start_index of (\d+)")


class Reference(Side):
    async def fetch(self, client: Client, url: str, max_chars: int, start: int = 0) -> tuple[str, int | None]:
        result = await client.call_tool("fetch", {"url": url, "max_length": max_chars, "start_index": start})
        text = "".join(getattr(c, "text", "") for c in result.content)
        if result.is_error:
            raise RuntimeError(f"{self.name}: {text[:300]}")
        found = _NEXT.search(text)
        text = text.split(":\n", 1)[1] if text.startswith(("Contents of ", "Content type")) else text
        return _NEXT.split(text)[0], int(found.group(1)) if found else None


async def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    await fn()
    return (time.perf_counter() - started) * 1000


async def spawn_times(side: Side, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        async with Client(side.params, read_timeout_seconds=120):
            out.append((time.perf_counter() - started) * 1000)
    return out


async def measure_side(
    side: Side, site: Site, pages: list[peer_fetch.CorpusPage], samples: int, starts: int
) -> dict[str, Any]:
    r: dict[str, Any] = {}
    await spawn_times(side, 1)  # first start: migrations (ours), bytecode caches warmed
    r["spawn"] = await spawn_times(side, starts)
    async with Client(side.params, read_timeout_seconds=300) as client:
        await side.fetch(client, site.url("/warm.html"), 1000)
        tag = side.name.split()[0]
        fresh = [site.url(f"/article.html?{tag}={i}") for i in range(samples)]
        r["first"] = [await timed(functools.partial(side.fetch, client, u, 20_000)) for u in fresh]
        url = site.url("/article.html")
        before = site.count("/article.html")
        await side.fetch(client, url, 20_000)
        r["repeat"] = [await timed(lambda: side.fetch(client, url, 20_000)) for _ in range(samples)]
        r["repeat_requests"] = site.count("/article.html") - before - 1

        long_url = site.url(f"/long.html?{tag}")
        before_long, before_robots = site.count("/long.html"), site.count("/robots.txt")
        started = time.perf_counter()
        calls, start, chars = 0, 0, 0
        next_start: int | None = 0
        while next_start is not None:
            text, next_start = await side.fetch(client, long_url, PIECE, start)
            calls += 1
            chars += len(text)
            start = next_start or 0
        r["paging"] = {
            "ms": (time.perf_counter() - started) * 1000,
            "calls": calls,
            "chars": chars,
            "requests": site.count("/long.html") - before_long,
            "robots": site.count("/robots.txt") - before_robots,
        }

        scores = []
        for p in pages:
            try:
                text, _ = await side.fetch(client, site.url(f"/corpus/{p.name}.html"), 99_999)
            except Exception as exc:
                print(f"{side.name}: {p.name}: {str(exc)[:120]}", file=sys.stderr)
                text = ""
            scores.append((p.name, *overlap(p.expected, text)))
        r["quality"] = scores
        r["rss"] = children_peak_rss_mb(side.marker)
    return r


async def crawl(client: Client, site: Site, prefix: str, pages: int) -> dict[str, Any]:
    """Crawl the ``pages``-page site under ``prefix`` without politeness delay; rate from the job's own times."""
    paths = [f"{prefix}{i}.html" for i in range(pages)]
    before = sum(site.count(p) for p in paths)
    started = time.perf_counter()
    args = {"url": site.url(paths[0]), "max_pages": pages, "max_depth": 10, "delay_s": 0}
    job = (await call_ok(client, "crawl_site", args))["job"]
    while job["status"] == "running":
        await asyncio.sleep(0.2)
        job = (await call_ok(client, "manage_crawl", {"action": "status", "job_id": job["id"]}))["crawl"]["job"]
    waited = time.perf_counter() - started
    view = (await call_ok(client, "manage_crawl", {"action": "status", "job_id": job["id"]}))["crawl"]
    job = view["job"]
    # The job's own start and end times, so the polling interval is not counted.
    elapsed = (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["created_at"])).total_seconds()
    return {
        "s": elapsed if elapsed > 0 else waited,
        "fetched": int(view["pages"]["fetched"]),
        "requests": sum(site.count(p) for p in paths) - before,
        "status": job["status"],
    }


async def crawl_and_shots(ours: Side, site: Site, crawl_pages: int, shots: int) -> dict[str, Any]:
    r: dict[str, Any] = {"crawl": {}}
    for width, prefix in ((1, "/site-a/"), (4, "/site-b/")):
        env = {**(ours.params.env or {}), "WEB_ACCESS_CRAWL_CONCURRENCY": str(width)}
        params = ours.params.model_copy(update={"env": env})
        async with Client(params, read_timeout_seconds=300) as client:
            r["crawl"][width] = await crawl(client, site, prefix, crawl_pages)
    async with Client(ours.params, read_timeout_seconds=300) as client:
        if shots:
            url = site.url("/article.html")
            r["shot_cold"] = await timed(lambda: call_ok(client, "screenshot_page", {"url": url}))
            r["shots"] = [await timed(lambda: call_ok(client, "screenshot_page", {"url": url})) for _ in range(shots)]
            small = site.url("/warm.html")
            r["shots_small"] = [
                await timed(lambda: call_ok(client, "screenshot_page", {"url": small})) for _ in range(shots)
            ]
            r["shots_full"] = [
                await timed(lambda: call_ok(client, "screenshot_page", {"url": url, "full_page": True}))
                for _ in range(max(1, shots // 2))
            ]
        r["rss"] = children_peak_rss_mb(ours.marker)
    return r


def build_site(pages: list[peer_fetch.CorpusPage], crawl_pages: int) -> Site:
    html = "text/html; charset=utf-8"
    routes: dict[str, tuple[bytes, str]] = {
        "/robots.txt": (b"User-agent: *\nAllow: /\n", "text/plain"),
        "/warm.html": (article_page(5_000, 1), html),
        "/article.html": (article_page(100_000, SEED), html),
        "/long.html": (long_page(200_000, SEED + 1), html),
    }
    for p in pages:
        routes[f"/corpus/{p.name}.html"] = (p.html, "text/html")
    for prefix in ("/site-a/", "/site-b/"):
        for i in range(crawl_pages):
            routes[f"{prefix}{i}.html"] = (site_page(i, crawl_pages, prefix), html)
    return Site(routes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--crawl-pages", type=int, default=200)
    parser.add_argument("--shots", type=int, default=5, help="screenshots timed (0: none)")
    parser.add_argument("--no-peer", action="store_true", help="measure ours only")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    tmp = Path(tempfile.mkdtemp(prefix="mcp-bench-web-"))
    pg, cluster = start_cluster(tmp)
    try:
        url = create_database(cluster, "bench_web")
        asyncio.run(run(url, redis_url, tmp, args))
    finally:
        pg.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


async def run(db_url: str, redis_url: str, tmp: Path, args: argparse.Namespace) -> None:
    pages = peer_fetch.corpus()
    site = build_site(pages, args.crawl_pages)
    prefix = run_prefix("benchweb")
    env = server_env(
        db_url, redis_url, prefix, tmp / "data",
        WEB_ACCESS_ALLOW_HOSTS='["127.0.0.1/32"]', WEB_ACCESS_CRAWL_WAIT_S="0", WEB_ACCESS_BROWSER_PATH="/usr/bin/chromium",
    )  # fmt: skip
    ours = Ours("ours", StdioServerParameters(command=sys.executable, args=["-m", "servers", "serve", "web_access"], env=env, cwd=str(ROOT)), "web_access")  # fmt: skip
    sides: list[Side] = [ours]
    if not args.no_peer:
        python = peer_fetch.peer_python()
        peer_env = {k: v for k, v in os.environ.items() if not k.startswith(("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"))}
        sides.append(
            Reference(
                f"mcp-server-fetch {peer_fetch.PEER_VERSION}",
                StdioServerParameters(
                    command=str(python), args=["-m", "mcp_server_fetch", "--allow-private-ips"], env=peer_env
                ),
                "mcp_server_fetch",
            )
        )
    try:
        bare = await bare_round_trip_ms()
        results = {s.name: await measure_side(s, site, pages, args.samples, args.starts) for s in sides}
        extra = await crawl_and_shots(ours, site, args.crawl_pages, args.shots)
    finally:
        site.close()
        await drop_prefix(redis_url, prefix)
    report(results, extra, len(pages), args, bare)


def report(
    results: dict[str, dict[str, Any]], extra: dict[str, Any], n_pages: int, args: argparse.Namespace, bare: list[float]
) -> None:
    names = list(results)
    blanks = [""] * (len(names) - 1)
    rows: list[list[object]] = [
        ["machine: bare MCP tool round trip", f"p50 {median(bare):.2f} ms, p95 {pct(bare, 95):.2f} ms", *blanks]
    ]

    def row(label: str, fn: Callable[[dict[str, Any]], str]) -> None:
        rows.append([label, *(fn(results[n]) for n in names)])

    row("spawn to initialize", lambda r: f"p50 {median(r['spawn']):.0f} ms")
    row(
        f"first fetch, 100 KB article ({args.samples} URLs)",
        lambda r: f"p50 {median(r['first']):.1f} / p95 {pct(r['first'], 95):.1f} ms",
    )
    row(
        f"repeated fetch, same URL (x{args.samples})",
        lambda r: f"p50 {median(r['repeat']):.1f} / p95 {pct(r['repeat'], 95):.1f} ms; {r['repeat_requests']} requests",
    )
    row(
        "page through 200k chars in 5k pieces",
        lambda r: (
            f"{r['paging']['calls']} calls, {r['paging']['requests']} page + {r['paging']['robots']} robots.txt "
            f"requests, {r['paging']['ms']:.0f} ms"
        ),
    )
    row(
        f"extraction, {n_pages} newspaper4k test pages: recall",
        lambda r: (
            f"mean {sum(q[1] for q in r['quality']) / len(r['quality']):.3f}, "
            f"median {median([q[1] for q in r['quality']]):.3f}, min {min(q[1] for q in r['quality']):.3f}"
        ),
    )
    row(
        "extraction: precision (answer words that are main text)",
        lambda r: f"mean {sum(q[2] for q in r['quality']) / len(r['quality']):.3f}",
    )
    row("peak RSS of the server process", lambda r: f"{r['rss']:.0f} MB")
    for width, crawl in extra["crawl"].items():
        rate = crawl["fetched"] / max(crawl["s"], 1e-9)
        rows.append(
            [
                f"crawl {args.crawl_pages} local pages, delay 0, {width} at once",
                f"{rate:.1f} pages/s ({crawl['fetched']} fetched, {crawl['requests']} requests, "
                f"{crawl['s']:.2f} s, {crawl['status']})",
                *blanks,
            ]
        )
    if "shots" in extra:
        rows.append(
            [
                "screenshot 1280x800 of the article (cold: browser start)",
                f"cold {extra['shot_cold']:.0f} ms, warm p50 {median(extra['shots']):.0f} ms",
                *blanks,
            ]
        )
        rows.append(["screenshot 1280x800 of a 5 KB page", f"p50 {median(extra['shots_small']):.0f} ms", *blanks])
        rows.append(
            ["screenshot, full article page (cut at 16,000 px)", f"p50 {median(extra['shots_full']):.0f} ms", *blanks]
        )
    rows.append(["peak RSS with crawl and screenshots (server only)", f"{extra['rss']:.0f} MB", *blanks])
    print_table(rows, ["measure", *names])
    if os.environ.get("BENCH_VERBOSE"):
        for n in names:
            for name, rec, prec in results[n]["quality"]:
                print(f"{n}\t{name}\trecall {rec:.3f}\tprecision {prec:.3f}")


if __name__ == "__main__":
    main()
