"""Foundation benchmark: cold start, embeddings, pgvector vs exact search, Redis cache.

Run: ``.venv/bin/python -m tests.benchmarks.bench_foundation [--vectors 100000] [--queries 200]``.
It starts its own embedded PostgreSQL in a temporary directory and uses Redis at REDIS_URL
(default 127.0.0.1:6379). Prints one table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import psutil
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from common.cache import Cache
from common.db import Database, DbConfig
from common.embeddings import FastEmbedEmbedder
from common.redis_conn import RedisConnection
from common.settings import BaseServerSettings
from common.testing import create_database, start_cluster
from common.vectors import VectorRecord
from common.vectors.pg import PgVectorIndex
from tests.benchmarks._util import median, pct, print_table

ROOT = Path(__file__).resolve().parents[2]


async def cold_start(env: dict[str, str], runs: int) -> dict[str, Any]:
    """Spawn to ``initialize`` answered, for the notes server and a bare MCPServer."""
    out: dict[str, Any] = {}
    for label, args in (
        ("notes server", ["-m", "servers", "serve", "notes"]),
        ("bare MCPServer", [str(ROOT / "tests/benchmarks/bare_server.py")]),
    ):
        times: list[float] = []
        rss: list[float] = []
        for _ in range(runs):
            params = StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(ROOT))
            started = time.perf_counter()
            async with Client(params, read_timeout_seconds=60) as client:
                times.append(time.perf_counter() - started)
                await client.list_tools()
                for proc in psutil.Process().children(recursive=True):
                    if args[-1] in proc.cmdline():
                        rss.append(proc.memory_info().rss / 2**20)
        out[label] = (times, rss)
    return out


async def embeddings(settings: BaseServerSettings) -> dict[str, float]:
    embedder = FastEmbedEmbedder(settings)
    started = time.perf_counter()
    await embedder.embed_one("warm up")
    load_s = time.perf_counter() - started
    singles = []
    for i in range(50):
        t = time.perf_counter()
        await embedder.embed_one(f"single text number {i} about databases and memory")
        singles.append(time.perf_counter() - t)
    texts = [f"batch text {i}: the quick brown fox jumps over lazy dog {i % 17}" for i in range(256)]
    t = time.perf_counter()
    await embedder.embed(texts)
    batch_s = time.perf_counter() - t
    return {"load_s": load_s, "single_p50_ms": median(singles) * 1000, "batch_per_s": 256 / batch_s}


def embedding_like(n: int, dim: int, rng: np.random.Generator, basis: np.ndarray) -> np.ndarray:
    """Unit vectors with a low intrinsic dimension, like sentence embeddings (not uniform noise,
    on which every point is nearly equidistant and no index or exact order means anything)."""
    latent = rng.normal(size=(n, basis.shape[0])).astype(np.float32)
    data = latent @ basis + 0.05 * rng.normal(size=(n, dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    return np.asarray(data, dtype=np.float32)


async def _exact(conn: Any, query: np.ndarray) -> list[Any]:
    """The same top-10 by a full scan: the HNSW index switched off for this transaction."""
    await conn.execute("SET LOCAL enable_indexscan = off")
    return list(await conn.fetch("SELECT id FROM bench.vectors__bench ORDER BY embedding <=> $1 LIMIT 10", query))


async def vectors(url: str, n: int, queries: int) -> dict[str, float]:
    conn = await asyncpg.connect(url)
    await conn.execute(
        "CREATE SCHEMA IF NOT EXISTS extensions; CREATE EXTENSION IF NOT EXISTS vector SCHEMA extensions;"
        "CREATE SCHEMA IF NOT EXISTS bench"
    )
    await conn.close()
    db = await Database.open(DbConfig(url=url, schema="bench", pool_max=4, statement_timeout_ms=0))
    index = PgVectorIndex(db, "bench")
    rng = np.random.default_rng(7)
    basis = rng.normal(size=(48, 384)).astype(np.float32) / np.sqrt(48)
    data = embedding_like(n, 384, rng, basis)
    await index.ensure_collection("bench", dim=384, model="random")
    started = time.perf_counter()
    for lo in range(0, n, 500):
        batch = [VectorRecord(id=str(i), vector=data[i], payload={"g": i % 10}) for i in range(lo, min(n, lo + 500))]
        await index.upsert("bench", batch)
    insert_s = time.perf_counter() - started
    qs = embedding_like(queries, 384, np.random.default_rng(11), basis)
    exact = np.argsort(-(qs @ data.T), axis=1)[:, :10]
    lat: list[float] = []
    exact_lat: list[float] = []
    recall = 0.0
    for qi in range(queries):
        t = time.perf_counter()
        hits = await index.search("bench", qs[qi], limit=10)
        lat.append(time.perf_counter() - t)
        recall += len({int(h.id) for h in hits} & set(exact[qi].tolist())) / 10
        if qi < 20:
            t = time.perf_counter()
            await db.run_in_transaction(functools.partial(_exact, query=qs[qi]))
            exact_lat.append(time.perf_counter() - t)
    await db.close()
    return {
        "insert_per_s": n / insert_s,
        "recall10": recall / queries,
        "p50_ms": pct(lat, 50) * 1000,
        "p99_ms": pct(lat, 99) * 1000,
        "exact_sql_p50_ms": pct(exact_lat, 50) * 1000,
    }


async def cache(redis_url: str) -> dict[str, float]:
    conn = await RedisConnection.connect(redis_url, name="bench")
    c = Cache(conn, prefix=f"bench{uuid.uuid4().hex[:6]}", server="bench", default_ttl_s=60)
    gets: list[float] = []
    sets: list[float] = []
    for i in range(2000):
        t = time.perf_counter()
        await c.set(f"k:{i}", {"i": i, "text": "x" * 100})
        sets.append(time.perf_counter() - t)
        t = time.perf_counter()
        await c.get(f"k:{i}")
        gets.append(time.perf_counter() - t)
    await c.delete_pattern("k:*")
    await conn.close()
    return {"get_p50_ms": pct(gets, 50) * 1000, "set_p50_ms": pct(sets, 50) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    tmp = Path(tempfile.mkdtemp(prefix="mcp-bench-"))
    server, cluster = start_cluster(tmp)
    try:
        url = create_database(cluster, "bench")
        asyncio.run(run(args, url, redis_url, tmp))
    finally:
        server.cleanup()


async def run(args: argparse.Namespace, url: str, redis_url: str, tmp: Path) -> None:
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url, "MCP_SUITE_DATA_DIR": str(tmp / "data")}
    env["LOG_LEVEL"] = "WARNING"
    rows: list[list[object]] = []
    starts = await cold_start(env, args.starts)
    for label, (times, rss) in starts.items():
        rows.append(
            [
                f"cold start: {label}",
                f"p50 {median(times) * 1000:.0f} ms",
                f"max {max(times) * 1000:.0f} ms",
                f"RSS {median(rss):.0f} MB" if rss else "",
            ]
        )
    settings = BaseServerSettings(_env_file=None, data_dir=tmp / "data")  # type: ignore[call-arg]
    emb = await embeddings(settings)
    rows.append(["embedding: model load (first call)", f"{emb['load_s'] * 1000:.0f} ms", "", ""])
    rows.append(["embedding: single text", f"p50 {emb['single_p50_ms']:.1f} ms", "", ""])
    rows.append(["embedding: batch of 256", f"{emb['batch_per_s']:.0f} texts/s", "", ""])
    vec = await vectors(url, args.vectors, args.queries)
    rows.append([f"pgvector HNSW {args.vectors}x384: insert", f"{vec['insert_per_s']:.0f} vectors/s", "", ""])
    rows.append(
        [
            f"pgvector HNSW {args.vectors}x384: search top-10",
            f"p50 {vec['p50_ms']:.2f} ms",
            f"p99 {vec['p99_ms']:.2f} ms",
            f"recall@10 {vec['recall10']:.3f} vs exact",
        ]
    )
    rows.append([f"exact scan {args.vectors}x384 (SQL, no index)", f"p50 {vec['exact_sql_p50_ms']:.1f} ms", "", ""])
    ch = await cache(redis_url)
    rows.append(["redis cache", f"get p50 {ch['get_p50_ms']:.3f} ms", f"set p50 {ch['set_p50_ms']:.3f} ms", ""])
    print_table(rows, ["measure", "value", "", ""])


if __name__ == "__main__":
    main()
