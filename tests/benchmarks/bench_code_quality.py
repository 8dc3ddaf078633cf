"""code_quality benchmark: the server over stdio on a real repository, next to the analyzers run directly.

Run: ``.venv/bin/python -m tests.benchmarks.bench_code_quality [--workers 2] [--max-files N] [--skip-concurrency]
[--analyzers ruff,lizard]``.

The repository is the Django 5.1.4 source distribution (2,788 Python files, nobody here wrote it),
downloaded once from PyPI by its pinned URL and checked against its SHA-256 into
``$XDG_CACHE_HOME/mcp-suite-bench`` (default ``~/.cache/mcp-suite-bench``) and unpacked fresh into a
temporary folder each run. ``--max-files`` keeps only the first N Python files (sorted by path) for a
quicker look. The benchmark starts its own embedded PostgreSQL and uses Redis at REDIS_URL; the
embedder is ``hash-384`` so that embedding the findings after a run does not compete with the next one.

Measured, in one session: the first call on a fresh server (it connects and migrates before answering;
each timed run below starts after such a call), the default run (ruff and lizard; ``--analyzers`` names
others, e.g. adds vulture) through ``analyze_code`` over stdio,
a re-run with nothing changed, a re-run after changing 10 files, the server's peak RSS and the largest
analyzer process; then each analyzer run directly on the same files with the same options (one
invocation each, as a user would type it), so the suite's overhead shows; and four server processes
analysing the same tree at once from an empty cache, whose run must hold the same findings as the
single-process run (none lost, none duplicated). Prints one table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from common.testing import call_ok as call
from common.testing import create_database, start_cluster
from servers.code_quality.analyzers import DEFAULT_SET, build_analyzers
from servers.code_quality.files import list_files
from tests.benchmarks._util import children_peak_rss_mb, drop_prefix, print_table, run_prefix

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["-m", "servers", "serve", "code_quality"]
SDIST_URL = (
    "https://files.pythonhosted.org/packages/d3/e8/536555596dbb79f6e77418aeb40bdc1758c26725aba31919ba449e6d5e6a/"
    "Django-5.1.4.tar.gz"
)
SDIST_SHA256 = "de450c09e91879fa5a307f696e57c851955c910a438a35e6b4c895e86bedc82a"
CHANGED = 10


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mcp-suite-bench"


def fetch_sdist() -> Path:
    """The pinned sdist, downloaded once and verified."""
    target = cache_dir() / Path(SDIST_URL).name
    if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == SDIST_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    data = httpx.get(SDIST_URL, timeout=300, follow_redirects=True).raise_for_status().content
    if hashlib.sha256(data).hexdigest() != SDIST_SHA256:
        raise SystemExit("the downloaded sdist does not have the pinned SHA-256")
    target.write_bytes(data)
    return target


def unpack(sdist: Path, into: Path, max_files: int | None) -> Path:
    with tarfile.open(sdist) as tar:
        tar.extractall(into, filter="data")
    root = next(p for p in into.iterdir() if p.is_dir())
    if max_files:
        python = sorted(p for p in root.rglob("*.py") if p.is_file())
        for extra in python[max_files:]:
            extra.unlink()
        # Keep the tree to Python sources of the chosen size (the whole-tree figures use everything).
        for other in [p for p in root.rglob("*") if p.is_file() and p.suffix != ".py"]:
            other.unlink()
    return root


def params(env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=ARGS, env=env, cwd=str(ROOT))


async def analyse(client: Client, path: Path) -> tuple[float, dict[str, Any]]:
    """One analysis through the tool, waiting for its end; (seconds, run summary)."""
    started = time.perf_counter()
    out = await call(client, "analyze_code", {"action": "start", "path": str(path), "wait_s": 300})
    while out["job"]["status"] in ("queued", "running"):
        out = await call(client, "analyze_code", {"action": "status", "job_id": out["job"]["id"], "wait_s": 300})
    elapsed = time.perf_counter() - started
    if out["job"]["status"] != "done" or not out.get("run"):
        raise SystemExit(f"analysis ended {out['job']['status']}: {out['job'].get('error')}")
    return elapsed, out["run"]


async def warm_up(client: Client) -> float:
    """Seconds of a first, trivial call: a fresh server connects (and migrates) before it answers."""
    started = time.perf_counter()
    await call(client, "analyze_code", {"action": "list"})
    return time.perf_counter() - started


def outcome_text(run: dict[str, Any]) -> str:
    return ", ".join(
        f"{o['analyzer']} {o['status']} {o['files_analyzed']} new/{o['files_cached']} cached" for o in run["analyzers"]
    )


async def run_findings(url: str, run_id: str) -> Counter[tuple[str, str, str, int, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT analyzer, rule_id, path, line, fingerprint FROM code_quality.findings WHERE run_id = $1::uuid",
            run_id,
        )
    finally:
        await conn.close()
    return Counter((r["analyzer"], r["rule_id"], r["path"], r["line"], r["fingerprint"]) for r in rows)


async def clear_cache(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE code_quality.result_cache")
    finally:
        await conn.close()


def change_files(root: Path, count: int) -> None:
    """Append a new function with an unused local to ``count`` Python files spread over the tree."""
    python = sorted(p for p in root.rglob("*.py") if p.stat().st_size > 200)
    step = max(1, len(python) // count)
    for n, path in enumerate(python[::step][:count]):
        with path.open("a") as fh:
            fh.write(f"\n\ndef _bench_changed_{n}(value):\n    unused = value * 2\n    return value\n")


#: Starts a tool from a small process and reports the tool's own peak RSS (a child forked from this
#: benchmark would count this process's memory as its own).
LAUNCH = (
    "import os, sys\n"
    "pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "sys.stderr.write(f'\\nmaxrss_kb={usage.ru_maxrss}\\n')\n"
)


def raw_run(argv: list[str], cwd: Path) -> tuple[float, float, bytes]:
    """(seconds, peak RSS MB, stdout) of one direct invocation."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-S", "-c", LAUNCH, *argv], cwd=cwd, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    tail = done.stderr.decode(errors="replace").rsplit("maxrss_kb=", 1)[-1]
    return elapsed, int(tail.strip() or 0) / 1024, done.stdout


def raw_tools(root: Path, names: list[str]) -> list[tuple[str, float, float, int]]:
    """Each analyzer once over the files it applies to, with the options the suite gives it."""
    listing = list_files(root)
    out = []
    for analyzer in build_analyzers(names, {"ruff": {"project_root": root}}):
        assert analyzer.executable is not None, analyzer.name
        paths = [f.path for f in listing.files if analyzer.applies_to(f)]
        argv = analyzer.command(analyzer.executable, paths)
        seconds, rss, stdout = raw_run(argv, root)
        if analyzer.name == "ruff":
            count = len(json.loads(stdout))
        elif analyzer.name == "vulture":
            count = sum(1 for line in stdout.decode(errors="replace").splitlines() if line.strip())
        else:
            count = -1
        out.append((analyzer.name, seconds, rss, count))
    return out


async def concurrent_run(env: dict[str, str], path: Path, processes: int) -> tuple[float, list[str]]:
    """``processes`` servers start an analysis of ``path`` at once; (seconds, run ids they got)."""
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(Client(params(env), read_timeout_seconds=900)) for _ in range(processes)
        ]
        started = time.perf_counter()
        results = await asyncio.gather(*(analyse(c, path) for c in clients))
        return time.perf_counter() - started, [run["id"] for _, run in results]


async def measure(
    url: str, redis_url: str, tmp: Path, root: Path, workers: int, concurrency: bool, analyzers: list[str]
) -> None:
    prefix = run_prefix("benchcq")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CODE_QUALITY_")},
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "MCP_SUITE_DATA_DIR": str(tmp / "data"),
        "EMBEDDING_MODEL": "hash-384",
        "LOG_LEVEL": "WARNING",
        "CODE_QUALITY_ALLOWED_ROOTS": json.dumps([str(tmp)]),
        "CODE_QUALITY_WORKERS": str(workers),
        "CODE_QUALITY_ANALYZERS": json.dumps(analyzers),
        "CODE_QUALITY_WAIT_S": "300",
        "CODE_QUALITY_ANALYZER_TIMEOUT_S": "1800",
    }
    listing = list_files(root)
    python = sum(1 for f in listing.files if f.path.endswith(".py"))
    rows: list[list[object]] = [
        ["repository", f"{root.name}: {len(listing.files)} files listed", f"{python} Python", f"workers {workers}"],
    ]
    try:
        async with Client(params(env), read_timeout_seconds=900) as client:
            first_s = await warm_up(client)
            rows.append(
                ["fresh server's first call (connect, migrate)", f"{first_s:.1f} s", "not in the runs below", ""]
            )
            full_s, full = await analyse(client, root)
            rows.append(["full run (stdio)", f"{full_s:.1f} s", outcome_text(full), ""])
            same_s, same = await analyse(client, root)
            rows.append(["re-run, nothing changed", f"{same_s:.1f} s", outcome_text(same), ""])
            server_rss = children_peak_rss_mb("code_quality")
        reference = await run_findings(url, full["id"])
        repeat = await run_findings(url, same["id"])
        rows.append(
            [
                "findings, full run",
                f"{sum(reference.values())}",
                f"unchanged re-run differs by {sum((reference - repeat).values()) + sum((repeat - reference).values())}",
                "",
            ]
        )
        if concurrency:
            await clear_cache(url)
            conc_s, run_ids = await concurrent_run(env, root, 4)
            distinct = sorted(set(run_ids))
            lost = dup = 0
            for run_id in distinct:
                got = await run_findings(url, run_id)
                lost += sum((reference - got).values())
                dup += sum((got - reference).values())
            rows.append(
                [
                    "4 processes at once, empty cache",
                    f"{conc_s:.1f} s",
                    f"{len(distinct)} run(s) made; vs full run: lost {lost}, extra/duplicated {dup}",
                    "",
                ]
            )
        change_files(root, CHANGED)
        async with Client(params(env), read_timeout_seconds=900) as client:
            await warm_up(client)
            ten_s, ten = await analyse(client, root)
            rows.append([f"re-run, {CHANGED} files changed", f"{ten_s:.1f} s", outcome_text(ten), ""])
            server_rss = max(server_rss, children_peak_rss_mb("code_quality"))
        changed = await run_findings(url, ten["id"])
        new_in_changed = sum((changed - reference).values())
        rows.append(["findings after the change", f"{sum(changed.values())}", f"new {new_in_changed}", ""])
        rows.append(["peak RSS: server", f"{server_rss:.0f} MB", "(analyzer processes: see below)", ""])
    finally:
        await drop_prefix(redis_url, prefix)
    # The same files as the last run, whose findings they are compared with.
    raw = raw_tools(root, analyzers)
    total = sum(seconds for _, seconds, _, _ in raw)
    suite_counts = Counter(analyzer for analyzer, *_ in changed.elements())
    for name, seconds, rss, count in raw:
        found = f"{count} findings (suite: {suite_counts.get(name, 0)})" if count >= 0 else "metrics only"
        rows.append([f"{name} directly, one invocation", f"{seconds:.1f} s", found, f"peak RSS {rss:.0f} MB"])
    goal = 1.2 * total / workers
    rows.append(
        [
            "goal: full run <= 1.2 x sum / cores",
            f"sum {total:.1f} s -> goal {goal:.1f} s",
            f"full run {full_s:.1f} s: {'met' if full_s <= goal else 'not met'}",
            "",
        ]
    )
    print_table(rows, ["measure", "time", "detail", ""])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="CODE_QUALITY_WORKERS (cores used)")
    parser.add_argument("--max-files", type=int, default=0, help="keep only the first N Python files (0: all)")
    parser.add_argument("--skip-concurrency", action="store_true", help="leave out the four-process run")
    parser.add_argument("--analyzers", default=",".join(DEFAULT_SET), help="comma-separated analyzers of the runs")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    sdist = fetch_sdist()
    tmp = Path(tempfile.mkdtemp(prefix="mcp-bench-cq-"))
    server, cluster = start_cluster(tmp / "pg")
    try:
        root = unpack(sdist, tmp / "src", args.max_files or None)
        url = create_database(cluster, "bench_code_quality")
        names = [n for n in args.analyzers.split(",") if n]
        asyncio.run(measure(url, redis_url, tmp, root, args.workers, not args.skip_concurrency, names))
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
