"""Memory server benchmark, everything over stdio exactly as a client sees it.

Run: ``.venv/bin/python -m tests.benchmarks.bench_memory [--sizes 1000,10000] [--with-100k] [--samples 100]
[--peer-qdrant]``.
Starts its own embedded PostgreSQL in a temporary directory and uses Redis at REDIS_URL (default
127.0.0.1:6379). Measures spawn-to-initialize, bulk load rate, store_memory and recall latency
percentiles at each store size, recall@5 on the paraphrase corpus, the server's peak RSS, and
lost writes with four processes writing at once. With ``--peer-qdrant`` it then measures the
official Qdrant MCP server the same way (see tests/benchmarks/peer_qdrant.py; installed separately,
keep the sizes small). Prints one table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from common.testing import call_ok as call
from common.testing import create_database, start_cluster
from tests.benchmarks import peer_qdrant
from tests.benchmarks._util import (
    WORDS,
    children_peak_rss_mb,
    drop_prefix,
    machine_baseline,
    median,
    pct,
    print_table,
    run_prefix,
    settle,
)
from tests.servers.memory_management import corpus

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["-m", "servers", "serve", "memory_management"]
#: Seed of the synthetic texts and queries (the peer, if measured, replays the same sequence).
SEED = 7


def params(env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=ARGS, env=env, cwd=str(ROOT))


def synthetic(i: int, rng: random.Random) -> str:
    words = " ".join(rng.choice(WORDS) for _ in range(12))
    return f"Memory {i}: team {rng.randrange(500)} noted that {words}."


async def timed(client: Client, tool: str, args: dict[str, Any]) -> float:
    started = time.perf_counter()
    await call(client, tool, args)
    return (time.perf_counter() - started) * 1000


async def spawn_times(env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        async with Client(params(env), read_timeout_seconds=120):
            times.append((time.perf_counter() - started) * 1000)
    return times


async def recall_at_5(client: Client) -> float:
    facts, questions = corpus.facts(), corpus.queries()
    ids: dict[str, str] = {}
    for start in range(0, len(facts), 100):
        batch = facts[start : start + 100]
        out = await call(client, "store_memories", {"items": [{"content": f.text} for f in batch], "workspace": "q"})
        ids.update({item["id"]: f.key for item, f in zip(out["items"], batch, strict=True)})
    found = 0
    for q in questions:
        hits = await call(client, "recall", {"query": q.text, "workspace": "q", "limit": 5})
        found += any(ids[h["id"]] == q.target for h in hits["hits"])
    return found / len(questions)


async def lost_writes(env: dict[str, str], url: str, per_process: int) -> tuple[int, int]:
    """Four processes store at once (with the hash embedder, so the database is what is measured)."""
    env = {**env, "EMBEDDING_MODEL": "hash-384"}
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(params(env), read_timeout_seconds=120)) for _ in range(4)]

        async def worker(n: int, client: Client) -> None:
            for i in range(per_process):
                await call(client, "store_memory", {"content": f"concurrent {n}-{i}", "workspace": "concurrency"})
                await call(client, "store_memory", {"content": f"shared {i}", "workspace": "concurrency"})

        await asyncio.gather(*(worker(n, c) for n, c in enumerate(clients)))
    conn = await asyncpg.connect(url)
    try:
        got = await conn.fetchval("SELECT count(*) FROM memory_management.memories WHERE workspace = 'concurrency'")
    finally:
        await conn.close()
    expected = 4 * per_process + per_process
    return expected, int(got)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--with-100k", action="store_true")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument(
        "--peer-qdrant", action="store_true", help="also measure mcp-server-qdrant (installed apart, see docs)"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s] + ([100_000] if args.with_100k else [])
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    tmp = Path(tempfile.mkdtemp(prefix="mcp-bench-memory-"))
    server, cluster = start_cluster(tmp)
    try:
        url = create_database(cluster, "bench_memory")
        asyncio.run(run(url, redis_url, tmp, sizes, args.samples, args.peer_qdrant))
    finally:
        server.cleanup()


async def run(url: str, redis_url: str, tmp: Path, sizes: list[int], samples: int, peer: bool = False) -> None:
    prefix = run_prefix("benchmem")
    try:
        await measure_all(url, redis_url, tmp, sizes, samples, prefix, peer)
    finally:
        await drop_prefix(redis_url, prefix)


async def measure_all(
    url: str, redis_url: str, tmp: Path, sizes: list[int], samples: int, prefix: str, peer: bool = False
) -> None:
    rows: list[list[object]] = []
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEMORY_MANAGEMENT_")},
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "MCP_SUITE_DATA_DIR": str(tmp / "data"),
        "LOG_LEVEL": "WARNING",
        "MEMORY_MANAGEMENT_TOOLS": "all",
    }
    rows.extend(await machine_baseline(tmp / "data", [synthetic(k, random.Random(k)) for k in range(100)]))
    await spawn_times(env, 1)  # migrations happen on the first start; not part of the figure
    starts = await spawn_times(env, 5)
    rows.append(["spawn to initialize", f"p50 {median(starts):.0f} ms", f"max {max(starts):.0f} ms", "", ""])
    rng = random.Random(SEED)
    async with Client(params(env), read_timeout_seconds=600) as client:
        r5 = await recall_at_5(client)
        rows.append(["recall@5, 300 facts / 60 paraphrases", f"{r5:.3f}", "", "", ""])
        loaded = 0
        for size in sizes:
            started = time.perf_counter()
            before = loaded
            while loaded < size:
                n = min(100, size - loaded)
                items = [{"content": synthetic(loaded + k, rng)} for k in range(n)]
                await call(client, "store_memories", {"items": items, "workspace": "bench"})
                loaded += n
            rate = (loaded - before) / max(time.perf_counter() - started, 1e-9)
            await settle(url, ["memory_management.memories"])
            store_ms = [
                await timed(client, "store_memory", {"content": synthetic(10**7 + size + k, rng), "workspace": "bench"})
                for k in range(samples)
            ]
            loaded += samples
            queries = [" ".join(rng.choice(WORDS) for _ in range(4)) for _ in range(samples)]
            recall_ms = [
                await timed(client, "recall", {"query": q, "workspace": "bench", "limit": 10}) for q in queries
            ]
            rows.append(
                [
                    f"store_memory at {size:,}",
                    f"p50 {pct(store_ms, 50):.1f} ms",
                    f"p95 {pct(store_ms, 95):.1f} ms",
                    f"p99 {pct(store_ms, 99):.1f} ms",
                    f"bulk load {rate:.0f}/s",
                ]
            )
            rows.append(
                [
                    f"recall (hybrid) at {size:,}",
                    f"p50 {pct(recall_ms, 50):.1f} ms",
                    f"p95 {pct(recall_ms, 95):.1f} ms",
                    f"p99 {pct(recall_ms, 99):.1f} ms",
                    "",
                ]
            )
        rows.append(["server peak RSS", f"{children_peak_rss_mb('memory_management'):.0f} MB", "", "", ""])
    expected, got = await lost_writes(env, url, 100)
    rows.append(
        [
            "4 processes x 200 concurrent stores",
            f"expected {expected}",
            f"stored {got}",
            f"lost {expected - got}",
            "",
        ]
    )
    if peer:
        # Same texts and queries (same seed and order as above), same model directory as ours.
        peer_rows = await peer_qdrant.measure_peer(sizes, samples, synthetic, tmp / "data", seed=SEED)
        if peer_rows is None:
            print(f"mcp-server-qdrant not measured: {peer_qdrant.unavailable()}")
        else:
            rows.extend(peer_rows)
    print_table(rows, ["measure", "", "", "", ""])


if __name__ == "__main__":
    main()
