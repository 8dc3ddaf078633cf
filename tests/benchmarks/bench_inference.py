"""Knowledge-graph benchmark: ours and the reference memory server side by side, both over stdio.

Run: ``.venv/bin/python -m tests.benchmarks.bench_inference [--sizes 1000,10000] [--with-100k]
[--samples 50] [--ref-version 0.6] [--fake-embedder] [--concurrent [--rounds 40]] [--ours-src DIR]``.
Starts its own embedded PostgreSQL in a temporary directory, uses Redis at REDIS_URL (default
127.0.0.1:6379), installs the reference server from npm into a temporary folder. At each size the
same synthetic graph (3 observations and 2 relations per entity) is loaded into both: a
memory.jsonl for the reference, ``import_memory_jsonl`` for ours. Then it times create_entities,
search_nodes and open_nodes on both, and the depth-2 neighbourhood and shortest path on ours; finally
four processes write at once to each server and the lost writes are counted. Prints one table;
asserts nothing.

``--concurrent`` measures only search latency while others write: ``search_nodes`` from one client
alone (half before, half after), then from each of four clients (four processes) that each create a
burst of 8 entities and search in turn, so searches overlap other clients' writes and the background
embedding they cause; the same
on the reference (whose processes share one file, as they would). Real model unless
``--fake-embedder``; a 1,000-entity graph, ``--rounds`` (default 40) per client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from common.testing import create_database, start_cluster
from tests.benchmarks._util import WORDS, drop_prefix, machine_baseline, pct, print_table, run_prefix, settle
from tests.servers.inference_enhancement.reference import ReferenceUnavailable, install_reference

ROOT = Path(__file__).resolve().parents[2]
#: A few thousand pseudo-words, so that (as in real graphs) a word matches a small part of the graph.
VOCAB = sorted(
    {
        a + b + c
        for a in ("ka", "lo", "mi", "ne", "tu", "ra", "si", "vo", "pe", "zu", "ha", "do", "fi", "gu")
        for b in ("ber", "lin", "mor", "tas", "ven", "dor", "kel", "pim", "rus", "sal", "tog", "wen", "yal", "zim")
        for c in ("a", "o", "is", "en", "ur", "ix", "um", "et", "al", "on", "ep", "ok", "ut", "id")
    }
)
TYPES = ["person", "project", "service", "team", "document", "decision"]
RELATIONS = ["depends_on", "owned_by", "mentions", "reviews"]


# ------------------------------------------------------------------------------------------- data


def entity_name(i: int) -> str:
    return f"{WORDS[i % len(WORDS)]}-{WORDS[(i * 7) % len(WORDS)]}-{i}"


def graph_parts(size: int, seed: int = 7) -> tuple[list[str], list[list[str]]]:
    """A synthetic graph as memory.jsonl lines: entity lines, and per entity its 2 relation lines.

    Each entity relates only to entities before it, so the first N entities with their relations
    are a complete graph of size N (ours grows by slices; the reference gets each size whole).
    """
    rng = random.Random(seed)
    entities, relations = [], []
    for i in range(size):
        obs = [
            f"{rng.choice(WORDS)} {' '.join(rng.choice(VOCAB) for _ in range(8))} note {k} of {entity_name(i)}"
            for k in range(3)
        ]
        entities.append(
            json.dumps(
                {"type": "entity", "name": entity_name(i), "entityType": TYPES[i % len(TYPES)], "observations": obs},
                separators=(",", ":"),
            )
        )
        relations.append(
            [
                json.dumps(
                    {
                        "type": "relation",
                        "from": entity_name(i),
                        "to": entity_name(rng.randrange(i) if i else 0),
                        "relationType": RELATIONS[k],
                    },
                    separators=(",", ":"),
                )
                for k in range(2)
            ]
        )
    return entities, relations


def new_entity(tag: str, k: int) -> dict[str, Any]:
    return {
        "name": f"new {tag} {k}",
        "entityType": "note",
        "observations": [f"added by the benchmark {tag} {k}", "second fact", "third fact"],
    }


# ------------------------------------------------------------------------------------------- servers


def ours(env: dict[str, str]) -> StdioServerParameters:
    # OURS_SRC (--ours-src) runs the server from another checkout, e.g. main, to compare before/after.
    src = env.get("OURS_SRC") or str(ROOT)
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "servers", "serve", "inference_enhancement"],
        env={**env, "PYTHONPATH": src},
        cwd=src,
    )


def _install(folder: Path, version: str) -> Path:
    try:
        return install_reference(folder, version)
    except ReferenceUnavailable as exc:
        raise SystemExit(f"{exc}; the reference server cannot be measured") from exc


def reference(script: Path, memory: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command="node", args=[str(script)], env={**os.environ, "MEMORY_FILE_PATH": str(memory)}
    )


def place_reference_file(script: Path, memory: Path, text: str) -> None:
    """Write the graph where the reference reads it (0.6.x ignores MEMORY_FILE_PATH and uses dist/memory.json)."""
    memory.write_text(text, encoding="utf-8")
    (script.parent / "memory.json").write_text(text, encoding="utf-8")
    (script.parent / "memory.jsonl").unlink(missing_ok=True)


async def call(client: Client, tool: str, args: dict[str, Any]) -> Any:
    result = await client.call_tool(tool, args)
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {result.content}")
    if result.structured_content is not None:
        return result.structured_content
    text = result.content[0].text  # type: ignore[union-attr]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


async def timed(client: Client, tool: str, args: dict[str, Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = await call(client, tool, args)
    return (time.perf_counter() - started) * 1000, out


def stats(values: list[float]) -> list[str]:
    if not values:
        return ["", "", ""]
    return [f"p50 {pct(values, 50):.1f}", f"p95 {pct(values, 95):.1f}", f"n={len(values)}"]


# ------------------------------------------------------------------------------------------- measures


async def measure(client: Client, size: int, samples: int, tag: str, *, extended: bool) -> dict[str, list[float]]:
    rng = random.Random(size)
    out: dict[str, list[float]] = {"create": [], "search": [], "open": [], "neighbors": [], "path": []}
    for k in range(samples):
        ms, _ = await timed(client, "create_entities", {"entities": [new_entity(f"{tag}{size}", k)]})
        out["create"].append(ms)
    for _ in range(samples):
        i = rng.randrange(size)
        query = rng.choice([entity_name(i), f"{rng.choice(VOCAB)} {rng.choice(VOCAB)}", rng.choice(VOCAB)])
        ms, _ = await timed(client, "search_nodes", {"query": query})
        out["search"].append(ms)
    for _ in range(samples):
        names = [entity_name(rng.randrange(size)) for _ in range(3)]
        ms, _ = await timed(client, "open_nodes", {"names": names})
        out["open"].append(ms)
    if extended:
        for _ in range(samples):
            ms, _ = await timed(client, "get_neighbors", {"name": entity_name(rng.randrange(size)), "depth": 2})
            out["neighbors"].append(ms)
        for _ in range(samples):
            a, b = entity_name(rng.randrange(size)), entity_name(rng.randrange(size))
            ms, _ = await timed(client, "find_path", {"source": a, "target": b, "max_depth": 6})
            out["path"].append(ms)
    return out


async def lost_writes(make: Any, per_process: int, tag: str) -> tuple[int, int]:
    """Four processes each create ``per_process`` entities at once; returns (calls made, calls that failed).

    A failed call is not a lost write (the client was told); the reference fails calls when it reads
    a file another process is half-way through writing.
    """
    failed = 0
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(make(), read_timeout_seconds=300)) for _ in range(4)]

        async def worker(n: int, client: Client) -> None:
            nonlocal failed
            for i in range(per_process):
                try:
                    await call(client, "create_entities", {"entities": [new_entity(f"{tag}-p{n}", i)]})
                except Exception:
                    failed += 1

        await asyncio.gather(*(worker(n, c) for n, c in enumerate(clients)))
    return 4 * per_process, failed


async def searches_alone(client: Client, queries: list[str]) -> list[float]:
    """``search_nodes`` latencies of one client with nothing else running."""
    return [(await timed(client, "search_nodes", {"query": q}))[0] for q in queries]


#: Entities each client creates before each of its searches under --concurrent (a burst of writes).
BURST = 8


async def searches_while_writing(make: Any, queries: list[str], rounds: int, tag: str) -> tuple[list[float], int]:
    """Four processes, each creating ``BURST`` entities then searching, ``rounds`` times, all at once.

    Every search overlaps the other clients' writes and the background embedding of everyone's
    bursts, its own included. Returns the search latencies of all four and the failed calls.
    """
    out: list[float] = []
    failed = 0
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(make(), read_timeout_seconds=300)) for _ in range(4)]
        for c in clients:  # each process loaded and warm before the clock starts
            await call(c, "search_nodes", {"query": "warm up"})

        async def worker(n: int, client: Client) -> None:
            nonlocal failed
            rng = random.Random(n)
            for i in range(rounds):
                try:
                    burst = [new_entity(f"{tag}-c{n}", i * BURST + k) for k in range(BURST)]
                    await call(client, "create_entities", {"entities": burst})
                    ms, _ = await timed(client, "search_nodes", {"query": rng.choice(queries)})
                    out.append(ms)
                except Exception:
                    failed += 1

        await asyncio.gather(*(worker(n, c) for n, c in enumerate(clients)))
    return out, failed


def latency(values: list[float]) -> list[str]:
    if not values:
        return ["", "", "", ""]
    return [f"{pct(values, 50):.1f}", f"{pct(values, 95):.1f}", f"{pct(values, 99):.1f}", f"n={len(values)}"]


async def measure_concurrent(
    url: str, redis_url: str, tmp: Path, rounds: int, version: str, fake: bool, prefix: str
) -> None:
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("INFERENCE_ENHANCEMENT_", "EMBEDDING_", "MEMORY_FILE_PATH"))
        },
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "MCP_SUITE_DATA_DIR": str(tmp / "data"),
        "LOG_LEVEL": "WARNING",
        "INFERENCE_ENHANCEMENT_TOOLS": "all",
        "INFERENCE_ENHANCEMENT_FILE_ROOTS": json.dumps([str(tmp)]),
    }
    if fake:
        env["EMBEDDING_MODEL"] = "hash-384"
    size = 1_000
    script = _install(tmp / "ref", version)
    entities, relations = graph_parts(size)
    text = "\n".join(entities + [ln for pair in relations for ln in pair])
    source = tmp / "graph.jsonl"
    source.write_text(text, encoding="utf-8")
    rng = random.Random(3)
    queries = [
        rng.choice([entity_name(rng.randrange(size)), f"{rng.choice(VOCAB)} {rng.choice(VOCAB)}", rng.choice(VOCAB)])
        for _ in range(rounds * 2)
    ]
    async with Client(ours(env), read_timeout_seconds=3_600) as mine:
        await call(mine, "import_memory_jsonl", {"path": str(source)})
        await wait_embedded(url)
        await settle(url, [f"inference_enhancement.{t}" for t in ("entities", "observations", "relations")])
        await searches_alone(mine, queries[:5])  # warm
        ours_alone = await searches_alone(mine, queries[: len(queries) // 2])
    ours_busy, ours_failed = await searches_while_writing(lambda: ours(env), queries, rounds, "busy")
    async with Client(ours(env), read_timeout_seconds=3_600) as mine:
        await wait_embedded(url)  # the busy phase's vectors are made: alone again
        await searches_alone(mine, queries[:5])
        # Half before the busy phase and half after, so a change in the machine's load weighs on both.
        ours_alone += await searches_alone(mine, queries[len(queries) // 2 :])
    # The same with MEMORY_FILE_PATH set, as for a user who only swapped the command: every process
    # also rewrites the mirror file after its bursts of writes.
    mirror_env = {**env, "MEMORY_FILE_PATH": str(tmp / "mirror.jsonl")}
    async with Client(ours(mirror_env), read_timeout_seconds=3_600) as first:
        await call(first, "search_nodes", {"query": "warm up"})  # imports nothing, writes the mirror once
    mirror_busy, mirror_failed = await searches_while_writing(lambda: ours(mirror_env), queries, rounds, "mirror")
    memory = tmp / "memory.jsonl"
    place_reference_file(script, memory, text)
    async with Client(reference(script, memory), read_timeout_seconds=600) as ref:
        await searches_alone(ref, queries[:5])
        ref_alone = await searches_alone(ref, queries)
    ref_busy, ref_failed = await searches_while_writing(lambda: reference(script, memory), queries, rounds, "busy")
    rows = [
        ["search_nodes, 1 client alone", *latency(ours_alone), *latency(ref_alone)],
        [
            f"search_nodes, 4 clients writing ({ours_failed}/{ref_failed} calls failed)",
            *latency(ours_busy),
            *latency(ref_busy),
        ],
        [
            f"search_nodes, 4 clients writing, mirror on ({mirror_failed} failed)",
            *latency(mirror_busy),
            "",
            "",
            "",
            "",
        ],
        [
            "p99 ratio, 4 clients / 1 client (mirror on)",
            "",
            "",
            f"{pct(ours_busy, 99) / pct(ours_alone, 99):.2f}x ({pct(mirror_busy, 99) / pct(ours_alone, 99):.2f}x)",
            "",
            "",
            "",
            f"{pct(ref_busy, 99) / pct(ref_alone, 99):.2f}x",
            "",
        ],
    ]
    print_table(
        rows,
        ["search latency (ms), 1,000 entities", "ours p50", "p95", "p99", "", f"ref {version} p50", "p95", "p99", ""],
    )


async def wait_embedded(url: str, timeout_s: float = 3_600) -> str:
    """Wait until the background embedder has caught up with an import (measures after it, not during)."""
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            stale = await conn.fetchval(
                "SELECT count(*) FROM inference_enhancement.entities WHERE embedded_version < version"
            )
            if stale == 0:
                return "all vectors made"
            await asyncio.sleep(0.5)
        return f"{stale} still without vectors"
    finally:
        await conn.close()


async def count_ours(url: str, tag: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM inference_enhancement.entities WHERE name LIKE $1", f"new {tag}-p%"
            )
        )
    finally:
        await conn.close()


def count_reference(files: list[Path], tag: str) -> int:
    """Entities the reference kept, read from its file once every writer has exited."""
    for file in files:
        if file.exists() and file.stat().st_size:
            return sum(1 for ln in file.read_text(encoding="utf-8").splitlines() if f'"name":"new {tag}-p' in ln)
    return 0


async def run(
    url: str,
    redis_url: str,
    tmp: Path,
    sizes: list[int],
    samples: int,
    version: str,
    fake: bool,
    concurrent: int | None = None,
) -> None:
    prefix = run_prefix("benchie")
    try:
        if concurrent:
            await measure_concurrent(url, redis_url, tmp, concurrent, version, fake, prefix)
        else:
            await measure_all(url, redis_url, tmp, sizes, samples, version, fake, prefix)
    finally:
        await drop_prefix(redis_url, prefix)


async def measure_all(
    url: str, redis_url: str, tmp: Path, sizes: list[int], samples: int, version: str, fake: bool, prefix: str
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("INFERENCE_ENHANCEMENT_", "EMBEDDING_"))},
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "MCP_SUITE_DATA_DIR": str(tmp / "data"),
        "LOG_LEVEL": "WARNING",
        "INFERENCE_ENHANCEMENT_TOOLS": "all",
        "INFERENCE_ENHANCEMENT_IMPORT_MAX_BYTES": str(2 * 1024**3),
        "INFERENCE_ENHANCEMENT_FILE_ROOTS": json.dumps([str(tmp)]),  # the import reads its files from here
        "DB_STATEMENT_TIMEOUT_MS": "600000",
        "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS": "600000",
    }
    if fake:
        env["EMBEDDING_MODEL"] = "hash-384"
    script = _install(tmp / "ref", version)
    rows: list[list[object]] = [
        [*r[:3], "", "", "", ""]
        for r in await machine_baseline(
            tmp / "data", [" ".join(random.Random(k).choice(WORDS) for _ in range(12)) for k in range(100)]
        )
    ]
    entities, relations = graph_parts(max(sizes))
    loaded = 0
    async with Client(ours(env), read_timeout_seconds=3_600) as mine:
        for size in sizes:
            rel_lines = [ln for pair in relations[:size] for ln in pair]
            delta = tmp / f"delta-{size}.jsonl"
            delta.write_text("\n".join(entities[loaded:size] + [ln for pair in relations[loaded:size] for ln in pair]))
            started = time.perf_counter()
            await call(mine, "import_memory_jsonl", {"path": str(delta)})
            rate = (size - loaded) / (time.perf_counter() - started)
            embedded = await wait_embedded(url)
            embed_rate = (size - loaded) / max(time.perf_counter() - started, 1e-9)
            await settle(url, [f"inference_enhancement.{t}" for t in ("entities", "observations", "relations")])
            loaded = size
            memory = tmp / f"memory-{size}.jsonl"
            place_reference_file(script, memory, "\n".join(entities[:size] + rel_lines))
            ours_ms = await measure(mine, size, samples, "ours", extended=True)
            async with Client(reference(script, memory), read_timeout_seconds=600) as ref:
                ref_ms = await measure(ref, size, max(5, samples // (1 + size // 10_000)), "ref", extended=False)
            for key, label in (("create", "create_entities"), ("search", "search_nodes"), ("open", "open_nodes")):
                rows.append([f"{label} at {size:,}", *stats(ours_ms[key]), *stats(ref_ms[key])])
            rows.append([f"neighbours depth 2 at {size:,}", *stats(ours_ms["neighbors"]), "", "", ""])
            rows.append([f"shortest path (<=6) at {size:,}", *stats(ours_ms["path"]), "", "", ""])
            rows.append(
                [f"import at {size:,}", f"{rate:.0f} entities/s", f"embedded {embed_rate:.0f}/s", embedded, "", "", ""]
            )

    made, failed = await lost_writes(lambda: ours(env), 25, "ours")
    kept = await count_ours(url, "ours")
    row: list[object] = [
        "4 processes x 25 create_entities",
        f"kept {kept}/{made - failed} acknowledged",
        f"lost {made - failed - kept}",
        f"failed {failed}",
    ]
    lost_file = tmp / "lost.jsonl"
    place_reference_file(script, lost_file, "")
    made, failed = await lost_writes(lambda: reference(script, lost_file), 25, "ref")
    files = [script.parent / "memory.json", lost_file] if version.startswith("0.") else [lost_file]
    kept = count_reference(files, "ref")
    rows.append([*row, f"kept {kept}/{made - failed} acknowledged", f"lost {made - failed - kept}", f"failed {failed}"])
    print_table(rows, ["measure (ms)", "ours", "", "", f"reference {version}", "", ""])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--with-100k", action="store_true")
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--ref-version", default="0.6")
    parser.add_argument("--fake-embedder", action="store_true", help="hash embedder: measures the database only")
    parser.add_argument("--concurrent", action="store_true", help="only search latency while 4 clients write")
    parser.add_argument("--rounds", type=int, default=40, help="with --concurrent: create+search rounds per client")
    parser.add_argument("--ours-src", help="run our server from this checkout (e.g. an export of main) instead")
    args = parser.parse_args()
    if args.ours_src:
        os.environ["OURS_SRC"] = str(Path(args.ours_src).resolve())
    sizes = sorted({int(s) for s in args.sizes.split(",") if s} | ({100_000} if args.with_100k else set()))
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    tmp = Path(tempfile.mkdtemp(prefix="mcp-bench-inference-"))
    server, cluster = start_cluster(tmp)
    try:
        url = create_database(cluster, "bench_inference")
        asyncio.run(
            run(
                url,
                redis_url,
                tmp,
                sizes,
                args.samples,
                args.ref_version,
                args.fake_embedder,
                args.rounds if args.concurrent else None,
            )
        )
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
