"""Documentation benchmark: ingest throughput next to raw fastembed on the same chunks, search latency at
scale, peak RSS while ingesting.

Run: ``.venv/bin/python -m tests.benchmarks.bench_documentation [--files 200] [--chunks 50000] [--queries 200]``.
It starts its own embedded PostgreSQL in a temporary directory, uses Redis at REDIS_URL (default
127.0.0.1:6379) and ingests the reST sources of Debian's python3.11-doc (the smallest ``--files`` pages).
Search latency is measured after padding the index to ``--chunks`` rows with jittered copies of the real
chunk vectors (embedding 50,000 real passages would take hours on 2 cores). Prints one table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import psutil
from mcp import Client
from pydantic import SecretStr

from common.embeddings import FastEmbedEmbedder
from common.testing import create_database, start_cluster
from servers.documentation.chunking import parse
from servers.documentation.ingest import embed_text, model_label
from servers.documentation.server import build
from servers.documentation.service import RANK_WEIGHTS
from servers.documentation.settings import Settings
from tests.benchmarks._util import median, pct, print_table

PY_DOCS = Path("/usr/share/doc/python3.11/html/_sources")
QUERIES = [
    "read a password without echo",
    "convert colors between RGB and HSV",
    "parse a TOML file",
    "keyed hash for message authentication",
    "schedule events at given times",
    "unicode character properties",
    "compare two directories",
    "secure random tokens",
    "print a traceback on a segfault",
    "rational numbers with numerator and denominator",
]


class PeakRss:
    """Samples this process's RSS every 50 ms in a thread; ``peak`` is the largest seen."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._proc = psutil.Process()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()


def copy_docs(target: Path, n: int) -> list[Path]:
    files = sorted(PY_DOCS.rglob("*.txt"), key=lambda p: (p.stat().st_size, str(p)))[:n]
    out = []
    for src in files:
        dest = target / src.relative_to(PY_DOCS)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        out.append(dest)
    return out


#: The chunk columns the padding fills (COPY is the fast path for tens of thousands of rows).
CHUNK_COLUMNS = [
    "document_id",
    "version_id",
    "ordinal",
    "heading_path",
    "heading",
    "anchor",
    "start_offset",
    "end_offset",
    "content",
    "embedding",
    "embedding_model",
]


async def _copy_chunks(conn: Any, batch: list[tuple[Any, ...]]) -> None:
    await conn.copy_records_to_table("chunks", schema_name="documentation", records=batch, columns=CHUNK_COLUMNS)


async def pad_index(admin_url: str, total: int) -> int:
    """Copy the real chunks (with jittered, re-normalised vectors) into another version until ``total`` rows."""
    conn = await asyncpg.connect(admin_url)
    try:
        from pgvector.asyncpg import register_vector

        await conn.execute("SET search_path = documentation, extensions")
        await register_vector(conn, schema="extensions")
        rows = await conn.fetch("SELECT content, heading_path, heading, anchor, embedding, embedding_model FROM chunks")
        have = await conn.fetchval("SELECT count(*) FROM chunks")
        need = total - have
        if need <= 0 or not rows:
            return int(have)
        pid = await conn.fetchval("SELECT id FROM projects LIMIT 1")
        vid = await conn.fetchval("INSERT INTO versions (project_id, version) VALUES ($1, 'padding') RETURNING id", pid)
        rng = np.random.default_rng(7)
        per_doc = 20
        batch: list[tuple[Any, ...]] = []
        doc_id = None
        for i in range(need):
            if i % per_doc == 0:
                doc_id = await conn.fetchval(
                    "INSERT INTO documents (version_id, path, title, kind, source, content, content_hash, embedding_model)"
                    " VALUES ($1, $2, 'pad', 'text', 'text', '', '', $3) RETURNING id",
                    vid,
                    f"pad/{i // per_doc}.txt",
                    rows[0]["embedding_model"],
                )
            src = rows[i % len(rows)]
            vec = np.asarray(src["embedding"].to_numpy(), dtype=np.float32) + rng.normal(0, 0.03, 384).astype(
                np.float32
            )
            vec /= np.linalg.norm(vec)
            batch.append(
                (
                    doc_id,
                    vid,
                    i % per_doc,
                    src["heading_path"],
                    src["heading"],
                    src["anchor"],
                    0,
                    0,
                    src["content"],
                    vec,
                    src["embedding_model"],
                )
            )
            if len(batch) >= 2000:
                await _copy_chunks(conn, batch)
                batch.clear()
        if batch:
            await _copy_chunks(conn, batch)
        await conn.execute("ANALYZE chunks")
        return int(await conn.fetchval("SELECT count(*) FROM chunks"))
    finally:
        await conn.close()


async def sql_search_latency(url: str, settings: Settings, n: int) -> tuple[list[float], str]:
    """The hybrid SQL alone, with query vectors embedded beforehand, through the server's own store code."""
    from common.db import Database, DbConfig
    from common.keywords import KeywordPlanner
    from servers.documentation import store

    embedder = FastEmbedEmbedder(settings)
    queries = [QUERIES[i % len(QUERIES)] for i in range(n)]
    vectors = await embedder.embed(list(dict.fromkeys(queries)))
    by_text = dict(zip(dict.fromkeys(queries), vectors, strict=True))
    db = await Database.open(DbConfig(url=url, schema="documentation"))
    try:
        versions = await store.scope(db, "py", None)
        model = model_label(settings.embedding_model)  # what the chunks are stored under
        planner = KeywordPlanner("chunks", scan_cap=settings.keyword_scan_cap)
        lat = []
        for q in queries:
            t = time.perf_counter()
            plan = await db.run(lambda conn, q=q: planner.plan(conn, q))  # type: ignore[misc]
            await store.search(
                db, by_text[q], model, versions, plan, settings.search_candidates, 5, 0, settings.keyword_scan_cap
            )
            lat.append((time.perf_counter() - t) * 1000)
        first = await db.run(lambda conn: planner.plan(conn, queries[0]))
        explained = await db.fetch(
            "EXPLAIN (ANALYZE, BUFFERS) " + store.SEARCH,
            by_text[queries[0]],
            model,
            versions,
            first.match if first else "",
            settings.search_candidates,
            5,
            0,
            settings.keyword_scan_cap,
            first.rank if first else None,
            *RANK_WEIGHTS,
            True,
        )
        return lat, f"keyword plan: {first}\n" + "\n".join(r[0] for r in explained)
    finally:
        await db.close()


async def run(args: argparse.Namespace) -> None:
    if not await asyncio.to_thread(PY_DOCS.is_dir):
        raise SystemExit(f"{PY_DOCS} is missing: apt-get install python3.11-doc")
    tmp = Path(tempfile.mkdtemp(prefix="bench-documentation-"))
    server, cluster = start_cluster(tmp / "pg")
    try:
        url = await asyncio.to_thread(create_database, cluster)
        root = tmp / "docs"
        files = copy_docs(root, args.files)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=SecretStr(url),
            redis_url=SecretStr(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")),
            redis_prefix=f"bench{uuid.uuid4().hex[:8]}",
            data_dir=tmp / "data",
            log_level="WARNING",
            allowed_roots=[root],
        )
        rows: list[tuple[str, str]] = []
        async with Client(build(settings)) as client:
            await client.call_tool("manage_project", {"action": "create", "project": "py", "version": "3.11"})
            await client.call_tool("search_docs", {"query": "warm up the model"})  # load the model outside the timing
            started = time.perf_counter()
            with PeakRss() as rss:
                result = await client.call_tool(
                    "ingest_folder", {"action": "start", "project": "py", "version": "3.11", "path": str(root)}
                )
            ingest_s = time.perf_counter() - started
            job = result.structured_content["jobs"][0]
            chunks = job["counts"]["chunks"]

            # Raw fastembed on exactly the texts the pipeline embedded, in the same process and run.
            texts = []
            for f in files:
                text = await asyncio.to_thread(f.read_text)
                p = parse("rst", text, str(f.relative_to(root)), settings.chunk_chars)
                texts += [embed_text(p.title, c.heading_path, c.text, settings.embed_chars, c.keys) for c in p.chunks]
            raw = FastEmbedEmbedder(settings)
            await raw.embed(["warm up"])
            started = time.perf_counter()
            await raw.embed(texts)
            raw_s = time.perf_counter() - started
            rows += [
                ("files", f"{len(files)}"),
                ("chunks", f"{chunks} (re-parsed: {len(texts)})"),
                ("ingest wall time", f"{ingest_s:.1f} s"),
                ("ingest files/s", f"{len(files) / ingest_s:.1f}"),
                ("ingest chunks/s", f"{chunks / ingest_s:.1f}"),
                ("raw fastembed chunks/s (same texts)", f"{len(texts) / raw_s:.1f}"),
                ("pipeline overhead vs raw embedding", f"{(ingest_s - raw_s) / raw_s * 100:+.0f}%"),
                ("peak RSS during ingest", f"{rss.peak / 1e6:.0f} MB"),
            ]

            total = await pad_index(url, args.chunks)
            lat: list[float] = []
            for i in range(args.queries):
                q = QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" {i}")
                t = time.perf_counter()
                res = await client.call_tool("search_docs", {"query": q, "project": "py", "limit": 5})
                lat.append((time.perf_counter() - t) * 1000)
                assert not res.is_error, res.content
            sql_lat, explain = await sql_search_latency(url, settings, args.queries)
            if args.explain:
                print(explain)
            rows += [
                ("indexed chunks for search", f"{total}"),
                ("search SQL p50 (hybrid query only)", f"{median(sql_lat):.1f} ms"),
                ("search SQL p99", f"{pct(sql_lat, 99):.1f} ms"),
                ("search_docs p50 (tool call, incl. query embedding)", f"{median(lat):.1f} ms"),
                ("search_docs p99", f"{pct(lat, 99):.1f} ms"),
            ]
        rows.append(("load average (1 min) at end", f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"))
        print_table(rows, ["measure", "value"])
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=200, help="Python doc pages to ingest (smallest first)")
    parser.add_argument("--chunks", type=int, default=50_000, help="pad the index to this many chunks for search")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--explain", action="store_true", help="print the query plan of one hybrid search")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
