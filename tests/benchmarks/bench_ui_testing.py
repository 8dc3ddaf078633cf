"""ui_testing benchmark next to Playwright MCP, both over stdio, on pages of a local HTTP server.

Run: ``.venv/bin/python -m tests.benchmarks.bench_ui_testing [--samples 10] [--runs 3] [--no-peer]``.
Starts its own embedded PostgreSQL in a temporary directory and uses Redis at REDIS_URL (default
127.0.0.1:6379). Playwright MCP is the pinned copy in requirements/npm (scripts/setup installs it),
run headless on Debian's /usr/bin/chromium. Measures spawn to initialize, browser cold start (the
first capture of a process), capture p50 of the viewport and the full page, compare p50 at
1280x720 and 1920x3000 (a real pixel difference: one paragraph changed), audit p50, a 10-step check,
the size of every answer (the JSON-RPC result as sent), and the peak RSS of the server with its
browser. Playwright MCP does the same captures (navigate, then take a screenshot). Prints one
table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mcp import Client
from mcp.client.stdio import StdioServerParameters

from common.testing import create_database, server_env, start_cluster
from tests.benchmarks._util import (
    bare_round_trip_ms,
    drop_prefix,
    median,
    pct,
    print_table,
    run_prefix,
    tree_peak_rss_mb,
)

ROOT = Path(__file__).resolve().parents[2]
PEER = ROOT / "requirements" / "npm" / "node_modules" / ".bin" / "playwright-mcp"
CHROMIUM = "/usr/bin/chromium"
KB = 1024


def page(changed: bool = False) -> bytes:
    """A form, a result line and forty cards (a page about 2,500 px tall at 1280 px)."""
    cards = "".join(
        f"<section class='card'><h2>Order {i}</h2><p>{'Shipped' if changed and i == 3 else 'Pending'}: "
        f"{i * 3} items to warehouse {i % 7}, due in {i % 5 + 1} days.</p></section>"
        for i in range(40)
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Orders</title><style>"
        "body{font-family:sans-serif;margin:24px;color:#222}.card{border:1px solid #bbb;padding:8px 12px;"
        "margin:8px 0;border-radius:6px}label{margin-right:8px}</style></head><body>"
        "<header><h1>Orders</h1><nav><a href='/'>Home</a> <a href='/help'>Help</a></nav></header><main>"
        "<form id='f' onsubmit='return false'><label for='name'>Name</label><input id='name'>"
        "<button id='go' type='button'>Save</button></form><p id='out'>nothing yet</p>"
        f"{cards}</main><script>document.getElementById('go').onclick=function(){{"
        "document.getElementById('out').textContent='Saved '+document.getElementById('name').value}</script>"
        "</body></html>"
    ).encode()


class Site:
    def __init__(self) -> None:
        routes = {"/page.html": page(), "/changed.html": page(changed=True)}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                body = routes.get(urlsplit(self.path).path)
                status = 200 if body is not None else 404
                body = body if body is not None else b"not found"
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8" if status == 200 else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Timer:
    """Calls a tool, keeping each answer's time (ms) and sizes by label: the whole JSON-RPC result as sent
    (content blocks and structured content) and the structured content alone (what the tests bound)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.ms: dict[str, list[float]] = {}
        self.sizes: dict[str, list[int]] = {}
        self.structured: dict[str, list[int]] = {}

    async def call(self, label: str, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        result = await self.client.call_tool(tool, args)
        elapsed = (time.perf_counter() - started) * 1000
        text = "".join(getattr(c, "text", "") for c in result.content)
        if result.is_error:
            raise RuntimeError(f"{tool}: {text[:300]}")
        self.ms.setdefault(label, []).append(elapsed)
        self.sizes.setdefault(label, []).append(len(result.model_dump_json(by_alias=True, exclude_none=True)))
        if result.structured_content is not None:
            self.structured.setdefault(label, []).append(len(json.dumps(result.structured_content)))
        return result.structured_content or {}


async def spawn_times(params: StdioServerParameters, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        async with Client(params, read_timeout_seconds=120):
            out.append((time.perf_counter() - started) * 1000)
    return out


def scenario(site: Site) -> dict[str, Any]:
    """Ten steps: open, fill, click, check the result, a key press, waits, console, a capture."""
    return {
        "viewport": {"width": 1280, "height": 720},
        "steps": [
            {"action": "goto", "url": site.url("/page.html")},
            {"action": "assert_visible", "selector": "#name"},
            {"action": "fill", "selector": "#name", "value": "Ada"},
            {"action": "click", "selector": "#go"},
            {"action": "assert_text", "selector": "#out", "text": "Saved Ada"},
            {"action": "press", "selector": "#name", "key": "End"},
            {"action": "wait_for", "selector": "#out"},
            {"action": "assert_text", "selector": "h1", "text": "Orders", "exact": True},
            {"action": "assert_no_console_errors"},
            {"action": "capture", "name": "after save"},
        ],
    }


async def measure_ours(params: StdioServerParameters, site: Site, samples: int, runs: int) -> dict[str, Any]:
    r: dict[str, Any] = {"bare": await bare_round_trip_ms()}
    await spawn_times(params, 1)  # migrations on the first start
    r["spawn"] = await spawn_times(params, runs)
    url, changed = site.url("/page.html"), site.url("/changed.html")
    async with Client(params, read_timeout_seconds=300) as client:
        t = Timer(client)
        await t.call("cold: first capture (starts Chromium)", "capture_page", {"url": url, "viewport": "1280x720"})
        for _ in range(samples):
            await t.call("capture, viewport 1280x720", "capture_page", {"url": url, "viewport": "1280x720"})
        for _ in range(samples):
            await t.call(
                "capture, full page 1280 wide", "capture_page", {"url": url, "viewport": "1280x720", "full_page": True}
            )
        for size in ("1280x720", "1920x3000"):
            key = f"bench-{size}"
            base = await t.call("capture (baseline)", "capture_page", {"url": url, "viewport": size, "page_key": key})
            await t.call("set baseline", "manage_baseline", {"action": "set", "capture_id": base["id"]})
            other = await t.call("capture (changed)", "capture_page", {"url": changed, "viewport": size, "page_key": key})  # fmt: skip
            for _ in range(samples):
                await t.call(f"compare at {size}", "manage_baseline", {"action": "compare", "capture_id": other["id"]})
        for _ in range(samples):
            await t.call("audit (wcag21aa)", "audit_page", {"url": url, "viewport": "1280x720"})
        await t.call("save a 10-step check", "manage_check", {"action": "save", "name": "bench", "scenario": scenario(site)})  # fmt: skip
        for _ in range(runs):
            out = await t.call("run the 10-step check", "run_check", {"name": "bench", "wait_s": 120})
            why = (
                f" at step {out.get('failed_step')}: {str(out.get('error'))[:80]}"
                if out.get("status") != "passed"
                else ""
            )
            r.setdefault("check_status", []).append(f"{out.get('status')}{why}")
        await t.call("list_runs", "list_runs", {})
        await t.call("ui_report", "ui_report", {})
        r["rss"] = tree_peak_rss_mb("ui_testing")
        r["timer"] = t
    return r


async def measure_peer(site: Site, samples: int, runs: int, out_dir: Path) -> dict[str, Any]:
    args = [
        "--headless", "--isolated", "--no-sandbox", "--executable-path", CHROMIUM, "--browser", "chromium",
        "--viewport-size", "1280x720", "--output-dir", str(out_dir),
    ]  # fmt: skip
    params = StdioServerParameters(command=str(PEER), args=args, env=dict(os.environ))
    r: dict[str, Any] = {"spawn": await spawn_times(params, runs)}
    url = site.url("/page.html")
    async with Client(params, read_timeout_seconds=300) as client:
        t = Timer(client)
        started = time.perf_counter()
        await t.call("navigate", "browser_navigate", {"url": url})
        await t.call("screenshot, viewport", "browser_take_screenshot", {"type": "png"})
        r["cold"] = (time.perf_counter() - started) * 1000
        r["capture"], r["full"] = [], []
        for label, extra in (("capture", {}), ("full", {"fullPage": True})):
            for _ in range(samples):
                started = time.perf_counter()
                await t.call("navigate", "browser_navigate", {"url": url})
                await t.call(f"screenshot, {'full page' if extra else 'viewport'}", "browser_take_screenshot", {"type": "png", **extra})  # fmt: skip
                r[label].append((time.perf_counter() - started) * 1000)
        r["rss"] = tree_peak_rss_mb("playwright-mcp")
        r["timer"] = t
    return r


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3, help="spawns and check runs")
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    tmp = Path(tempfile.mkdtemp(prefix="mcp-bench-ui-"))
    pg, cluster = start_cluster(tmp)
    try:
        db_url = create_database(cluster, "bench_ui")
        asyncio.run(run(db_url, redis_url, tmp, args))
    finally:
        pg.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


async def run(db_url: str, redis_url: str, tmp: Path, args: argparse.Namespace) -> None:
    site = Site()
    prefix = run_prefix("benchui")
    env = server_env(
        db_url, redis_url, prefix, tmp / "data",
        UI_TESTING_ALLOW_HOSTS='["127.0.0.1/32"]', UI_TESTING_CHROMIUM_PATH=CHROMIUM,
    )  # fmt: skip
    params = StdioServerParameters(command=sys.executable, args=["-m", "servers", "serve", "ui_testing"], env=env, cwd=str(ROOT))  # fmt: skip
    try:
        ours = await measure_ours(params, site, args.samples, args.runs)
        peer = None
        if not args.no_peer:
            if PEER.exists():
                peer = await measure_peer(site, args.samples, args.runs, tmp / "peer-out")
            else:
                print(f"Playwright MCP not measured: {PEER} is missing (scripts/setup installs it).")
    finally:
        site.close()
        await drop_prefix(redis_url, prefix)
    report(ours, peer)


def _fmt(values: list[float]) -> str:
    return f"p50 {median(values):.0f} ms, p95 {pct(values, 95):.0f} ms" if len(values) > 1 else f"{values[0]:.0f} ms"


def report(ours: dict[str, Any], peer: dict[str, Any] | None) -> None:
    bare = ours["bare"]
    rows: list[list[object]] = [
        ["machine: bare MCP tool round trip", f"p50 {median(bare):.2f} ms, p95 {pct(bare, 95):.2f} ms", "", "", ""],
        ["spawn to initialize", f"p50 {median(ours['spawn']):.0f} ms", "", "", ""],
    ]
    t: Timer = ours["timer"]
    for label, ms in t.ms.items():
        structured = f"{max(t.structured[label]):,} B" if label in t.structured else ""
        rows.append([label, _fmt(ms), f"{max(t.sizes[label]):,} B", structured, f"n={len(ms)}"])
    if "check_status" in ours:
        rows.append(["check runs ended", "; ".join(ours["check_status"]), "", "", ""])
    biggest = max(max(s) for s in t.sizes.values())
    biggest_structured = max(max(s) for s in t.structured.values())
    rows.append(
        [
            "largest answer of any call above",
            "",
            f"{biggest:,} B ({biggest / KB:.2f} KB)",
            f"{biggest_structured:,} B ({biggest_structured / KB:.2f} KB)",
            "",
        ]
    )
    rows.append(["peak RSS, server + its Chromium (sum of each process's peak)", f"{ours['rss']:.0f} MB", "", "", ""])
    if peer is not None:
        p: Timer = peer["timer"]
        rows.append(["peer: spawn to initialize", f"p50 {median(peer['spawn']):.0f} ms", "", "", ""])
        rows.append(["peer: cold: first navigate + screenshot", f"{peer['cold']:.0f} ms", "", "", ""])
        rows.append(["peer: capture, viewport (navigate + screenshot)", _fmt(peer["capture"]), "", "", ""])
        rows.append(["peer: capture, full page (navigate + screenshot)", _fmt(peer["full"]), "", "", ""])
        for label, ms in p.ms.items():
            rows.append([f"peer: {label}", _fmt(ms), f"{max(p.sizes[label]):,} B", "", f"n={len(ms)}"])
        rows.append(["peer: peak RSS, server + its Chromium", f"{peer['rss']:.0f} MB", "", "", ""])
    print_table(rows, ["measure", "time", "answer as sent (max)", "structured content (max)", ""])


if __name__ == "__main__":
    main()
