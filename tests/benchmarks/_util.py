"""Small helpers shared by the benchmarks: percentiles and the table they print."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> None:
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("-+-".join("-" * w for w in widths))


#: A small work vocabulary for synthetic memories and entities (a worst case for keyword search).
WORDS = [
    "deploy",
    "cache",
    "queue",
    "billing",
    "invoice",
    "search",
    "index",
    "schema",
    "migration",
    "token",
    "session",
    "retry",
    "timeout",
    "budget",
    "release",
    "review",
    "incident",
    "alert",
    "metric",
    "dashboard",
    "replica",
    "backup",
    "restore",
    "latency",
    "throughput",
    "login",
    "payment",
    "report",
    "export",
    "import",
    "sync",
    "webhook",
    "cron",
    "worker",
    "shard",
    "tenant",
    "quota",
    "audit",
    "policy",
    "secret",
    "rotation",
]


def run_prefix(name: str) -> str:
    """A Redis prefix of this run only, so no earlier run's cached embeddings make a load look fast."""
    import uuid

    return f"{name}{uuid.uuid4().hex[:8]}"


async def drop_prefix(redis_url: str, prefix: str) -> None:
    """Remove what this run left in Redis."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
    finally:
        await client.aclose()


async def settle(url: str, tables: Sequence[str]) -> None:
    """VACUUM ANALYZE after a bulk load, as autovacuum would within a minute or two.

    Latencies are measured on a maintained store: right after a bulk load, autovacuum's pass over
    the new rows (and their HNSW graph) competes for the same two cores as the calls being timed.
    """
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        for table in tables:
            await conn.execute(f"VACUUM ANALYZE {table}")
    finally:
        await conn.close()


def children_peak_rss_mb(marker: str) -> float:
    """Peak RSS (VmHWM, MB) of this process's running children whose command line contains ``marker``."""
    from pathlib import Path

    import psutil

    peak = 0.0
    for proc in psutil.Process().children(recursive=True):
        try:
            if any(marker in part for part in proc.cmdline()):
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024)
        except (psutil.Error, OSError):
            continue
    return peak


async def machine_baseline(data_dir: Path, texts: Sequence[str]) -> list[list[object]]:
    """What this machine gives before any of our code: a bare MCP round trip and one embedding.

    Printed with every server benchmark, so figures from machines of different speed compare.
    """
    import sys
    import time

    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    from common.embeddings import FastEmbedEmbedder
    from common.settings import BaseServerSettings

    bare = StdioServerParameters(command=sys.executable, args=[str(Path(__file__).with_name("bare_server.py"))])
    async with Client(bare) as client:
        for _ in range(20):
            await client.call_tool("ping", {})
        pings = []
        for _ in range(200):
            started = time.perf_counter()
            await client.call_tool("ping", {})
            pings.append((time.perf_counter() - started) * 1000)
    embedder = FastEmbedEmbedder(BaseServerSettings(_env_file=None, data_dir=data_dir))  # type: ignore[call-arg]
    await embedder.load()
    one = []
    for text in texts:
        started = time.perf_counter()
        embedder._infer_sync([text])
        one.append((time.perf_counter() - started) * 1000)
    return [
        ["machine: bare MCP tool round trip", f"p50 {median(pings):.2f} ms", f"p95 {pct(pings, 95):.2f} ms", "", ""],
        ["machine: one embedding (default model)", f"p50 {median(one):.2f} ms", f"p95 {pct(one, 95):.2f} ms", "", ""],
    ]


def tree_peak_rss_mb(marker: str) -> float:
    """Sum of the peak RSS (VmHWM, MB) of the running children whose command line contains ``marker``
    and of all their descendants (a server and the browser it started), each process counted once."""
    from pathlib import Path

    import psutil

    pids: set[int] = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if any(marker in part for part in proc.cmdline()):
                pids.add(proc.pid)
                pids.update(p.pid for p in proc.children(recursive=True))
        except psutil.Error:
            continue
    total = 0.0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


async def bare_round_trip_ms(calls: int = 200) -> list[float]:
    """Times of a tool call to a bare MCPServer over stdio: what this machine gives before any of our code."""
    import sys
    import time

    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    bare = StdioServerParameters(command=sys.executable, args=[str(Path(__file__).with_name("bare_server.py"))])
    async with Client(bare) as client:
        for _ in range(20):
            await client.call_tool("ping", {})
        out = []
        for _ in range(calls):
            started = time.perf_counter()
            await client.call_tool("ping", {})
            out.append((time.perf_counter() - started) * 1000)
    return out
