"""Before/after benchmark: the same server from two source trees, calls interleaved one by one.

Run: ``.venv/bin/python -m tests.benchmarks.bench_ab --before DIR [--after DIR] [--samples 200]
[--starts 10] [--servers memory_management,inference_enhancement,documentation] [--model hash-384]
[--unchecked] [--block 10]``, where ``--before``
holds the older tree (e.g. ``git worktree add /tmp/before 5837f33``) and ``--after`` the newer one
(default: this checkout); both run in this environment. Each tree's server
runs over stdio on its own database of one embedded cluster, with its own Redis prefix, seeded
with the same data; then every sample calls the same tool with the same arguments on both, the order
flipping from sample to sample, so a change in the machine's load weighs on both trees alike. Prints
per measure the p50 of each tree, their ratio, and the share of samples in which the newer tree was
slower (about 50% when the two are alike). ``--model`` gives both trees another embedding model (e.g.
``hash-384``, nearly free) to tell a call's own cost from the background embedding it sets off.
``--unchecked`` sends the timed calls with the SDK's plain ``send_request``, without the client's check
of the answer against the tool's output schema (a Python client's cost that grows with the schema),
to tell the servers' answer time from that check. ``--block N`` makes N calls on one tree before the
other takes its turn (default 1): the work a call leaves running in the background (e.g. embedding a
new entity) then weighs mostly on its own tree's next call rather than half the time on the other
tree's. Asserts nothing.
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

from mcp import Client, types
from mcp.client.stdio import StdioServerParameters

from common.testing import Cluster, call_ok, create_database, start_cluster
from tests.benchmarks._util import WORDS, drop_prefix, pct, print_table, run_prefix, settle
from tests.benchmarks.bench_documentation import copy_docs
from tests.benchmarks.bench_inference import entity_name, graph_parts, new_entity, wait_embedded
from tests.benchmarks.bench_memory import synthetic

ROOT = Path(__file__).resolve().parents[2]
SERVERS = ("memory_management", "inference_enhancement", "documentation")
Row = list[object]
#: Whether timed calls skip the client's output-schema check (``--unchecked``).
UNCHECKED = False
#: Calls made on one tree before the other takes its turn (``--block``).
BLOCK = 1


class Tree:
    """One source tree's server: where it runs from, its database and its environment."""

    def __init__(self, label: str, src: Path, url: str, tmp: Path, server: str) -> None:
        self.label, self.src, self.url, self.prefix = label, src, url, run_prefix(f"ab{label}")
        upper = server.upper()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith((f"{upper}_", "EMBEDDING_", "MEMORY_FILE"))},
            "DATABASE_URL": url,
            "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            "REDIS_PREFIX": self.prefix,
            "MCP_SUITE_DATA_DIR": str(tmp / f"data-{label}"),
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(src),
            f"{upper}_TOOLS": "all",
        }
        self.server = server

    def params(self) -> StdioServerParameters:
        return StdioServerParameters(
            command=sys.executable, args=["-m", "servers", "serve", self.server], env=self.env, cwd=str(self.src)
        )


async def timed_call(client: Client, tool: str, args: dict[str, Any]) -> None:
    """One timed call: as ``call_tool`` makes it, or with ``--unchecked`` without the output-schema check."""
    if not UNCHECKED:
        await call_ok(client, tool, args)
        return
    request = types.CallToolRequest(params=types.CallToolRequestParams(name=tool, arguments=args))
    result = await client.session.send_request(request, types.CallToolResult)
    assert not result.is_error, (tool, result.content)
    assert result.structured_content is not None, tool


async def interleaved(
    pair: tuple[Client, Client], samples: list[tuple[str, dict[str, Any]]]
) -> tuple[list[float], list[float]]:
    """The samples on both clients, ``BLOCK`` at a time on one, the order flipping each block; latencies (ms)
    per client, in sample order."""
    out: tuple[list[float], list[float]] = ([], [])
    for n, start in enumerate(range(0, len(samples), BLOCK)):
        for side in (0, 1) if n % 2 == 0 else (1, 0):
            for tool, args in samples[start : start + BLOCK]:
                started = time.perf_counter()
                await timed_call(pair[side], tool, args)
                out[side].append((time.perf_counter() - started) * 1000)
    return out


def row(name: str, before: list[float], after: list[float]) -> Row:
    b, a = pct(before, 50), pct(after, 50)
    slower = sum(y > x for x, y in zip(before, after, strict=True)) / max(len(before), 1)
    return [name, f"{b:.2f}", f"{a:.2f}", f"{a / b:.2f}", f"{slower:.0%}", len(before)]


async def spawns(trees: tuple[Tree, Tree], runs: int) -> Row:
    out: tuple[list[float], list[float]] = ([], [])
    for n in range(runs + 1):
        for side in (0, 1) if n % 2 == 0 else (1, 0):
            started = time.perf_counter()
            async with Client(trees[side].params(), read_timeout_seconds=120):
                ms = (time.perf_counter() - started) * 1000
            if n:  # the first start of each tree migrates its database
                out[side].append(ms)
    return row(f"{trees[0].server}: spawn to initialize", *out)


async def both(pair: tuple[Client, Client], tool: str, args: dict[str, Any]) -> None:
    for client in pair:
        await call_ok(client, tool, args)


async def memory(pair: tuple[Client, Client], trees: tuple[Tree, Tree], samples: int) -> list[Row]:
    rng = random.Random(7)
    texts = [synthetic(k, rng) for k in range(1_000)]
    for start in range(0, len(texts), 100):
        items = [{"content": t} for t in texts[start : start + 100]]
        await both(pair, "store_memories", {"items": items, "workspace": "ab"})
    for tree in trees:
        await settle(tree.url, ["memory_management.memories"])
    stores = [("store_memory", {"content": synthetic(10**7 + k, rng), "workspace": "ab"}) for k in range(samples)]
    queries = [" ".join(rng.choice(WORDS) for _ in range(4)) for _ in range(samples)]
    recalls = [("recall", {"query": q, "workspace": "ab", "limit": 10}) for q in queries]
    return [
        row("memory: store_memory at 1,000", *await interleaved(pair, stores)),
        row("memory: recall (hybrid) at 1,000", *await interleaved(pair, recalls)),
    ]


async def graph(pair: tuple[Client, Client], trees: tuple[Tree, Tree], samples: int, tmp: Path) -> list[Row]:
    size = 1_000
    entities, relations = graph_parts(size)
    source = tmp / "graph.jsonl"
    source.write_text("\n".join(entities + [ln for pair in relations for ln in pair]), encoding="utf-8")
    await both(pair, "import_memory_jsonl", {"path": str(source)})
    for tree in trees:
        await wait_embedded(tree.url)
        await settle(tree.url, [f"inference_enhancement.{t}" for t in ("entities", "observations", "relations")])
    rng = random.Random(size)

    def name() -> str:
        return entity_name(rng.randrange(size))

    creates = [("create_entities", {"entities": [new_entity("ab", k)]}) for k in range(samples)]
    searches = [
        ("search_nodes", {"query": rng.choice([name(), f"{rng.choice(WORDS)} {rng.choice(WORDS)}", rng.choice(WORDS)])})
        for _ in range(samples)
    ]
    opens = [("open_nodes", {"names": [name() for _ in range(3)]}) for _ in range(samples)]
    neighbours = [("get_neighbors", {"name": name(), "depth": 2}) for _ in range(samples)]
    paths = [("find_path", {"source": name(), "target": name(), "max_depth": 6}) for _ in range(samples)]
    return [
        row("graph: create_entities at 1,000", *await interleaved(pair, creates)),
        row("graph: search_nodes at 1,000", *await interleaved(pair, searches)),
        row("graph: open_nodes at 1,000", *await interleaved(pair, opens)),
        row("graph: neighbours depth 2", *await interleaved(pair, neighbours)),
        row("graph: shortest path", *await interleaved(pair, paths)),
    ]


async def documentation(pair: tuple[Client, Client], samples: int, tmp: Path, files: int) -> list[Row]:
    root = tmp / "docs"
    copied = copy_docs(root, files)
    await both(pair, "manage_project", {"action": "create", "project": "py", "version": "3"})
    await both(pair, "search_docs", {"query": "warm up the model"})
    ingest: tuple[list[float], list[float]] = ([], [])
    for side in (0, 1):
        started = time.perf_counter()
        args = {"action": "start", "project": "py", "version": "3", "path": str(root)}
        await call_ok(pair[side], "ingest_folder", args)
        ingest[side].append(len(copied) / (time.perf_counter() - started))
    rng = random.Random(11)
    words = ["exception", "iterator", "format a string", "sort a list", "open a file", "thread lock", "decimal"]
    searches = [("search_docs", {"query": rng.choice(words), "project": "py", "limit": 5}) for _ in range(samples)]
    return [
        [
            f"documentation: ingest {len(copied)} pages (files/s, once each)",
            *[f"{v[0]:.1f}" for v in ingest],
            "",
            "",
            1,
        ],
        row("documentation: search_docs", *await interleaved(pair, searches)),
    ]


async def measure(
    server: str, cluster: Cluster, before: Path, after: Path, tmp: Path, samples: int, starts: int, model: str | None
) -> list[Row]:
    urls = [await asyncio.to_thread(create_database, cluster, f"ab_{server}_{side}") for side in ("before", "after")]
    folder = tmp / server
    trees = (Tree("before", before, urls[0], folder, server), Tree("after", after, urls[1], folder, server))
    roots = json.dumps([str(folder)])
    for tree in trees:
        tree.env[f"{server.upper()}_FILE_ROOTS"] = roots
        tree.env[f"{server.upper()}_ALLOWED_ROOTS"] = roots
        if model:
            tree.env["EMBEDDING_MODEL"] = model
    folder.mkdir(parents=True)
    try:
        rows = [await spawns(trees, starts)]
        async with AsyncExitStack() as stack:
            pair = (
                await stack.enter_async_context(Client(trees[0].params(), read_timeout_seconds=3_600)),
                await stack.enter_async_context(Client(trees[1].params(), read_timeout_seconds=3_600)),
            )
            if server == "memory_management":
                rows += await memory(pair, trees, samples)
            elif server == "inference_enhancement":
                rows += await graph(pair, trees, samples, folder)
            else:
                rows += await documentation(pair, samples, folder, 100)
        return rows
    finally:
        for tree in trees:
            await drop_prefix(tree.env["REDIS_URL"], tree.prefix)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True, help="the older source tree (a checkout or git worktree)")
    parser.add_argument("--after", default=str(ROOT), help="the newer source tree (default: this one)")
    parser.add_argument("--samples", type=int, default=200, help="calls of each measure on each tree")
    parser.add_argument("--starts", type=int, default=10, help="server starts of each tree")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--model", default=None, help="EMBEDDING_MODEL for both trees (default: the default model)")
    parser.add_argument("--unchecked", action="store_true", help="timed calls skip the client's output-schema check")
    parser.add_argument("--block", type=int, default=1, help="calls on one tree before the other's turn")
    args = parser.parse_args()
    global UNCHECKED, BLOCK
    UNCHECKED, BLOCK = args.unchecked, max(args.block, 1)
    before, after = Path(args.before).resolve(), Path(args.after).resolve()
    for tree in (before, after):
        if not (tree / "servers").is_dir():
            raise SystemExit(f"{tree} is not a source tree of this project")
    names = [s for s in args.servers.split(",") if s]
    unknown = set(names) - set(SERVERS)
    if unknown:
        raise SystemExit(f"unknown servers {sorted(unknown)}; choose from {', '.join(SERVERS)}")
    tmp = Path(tempfile.mkdtemp(prefix="mcp-bench-ab-"))
    server, cluster = start_cluster(tmp / "pg")
    try:
        rows: list[Row] = []
        for name in names:
            rows += asyncio.run(measure(name, cluster, before, after, tmp, args.samples, args.starts, args.model))
        print_table(rows, ["measure (ms unless said)", "before p50", "after p50", "after/before", "after slower", "n"])
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
