"""analytics benchmark: the server over stdio next to DuckDB in Python and, if it installs, mcp-server-motherduck.

Run: ``.venv/bin/python -m tests.benchmarks.bench_analytics [--rows 10000000] [--csv-rows 1000000]
[--samples 10] [--no-peer]``.

Generates (seeded, with DuckDB) a Parquet file of ``--rows`` sales rows and a CSV of ``--csv-rows``,
plus a 10,000-point hourly series, in a temporary folder; starts its own embedded PostgreSQL and uses
Redis at REDIS_URL. Through the server over stdio it measures register and first profile of each file,
the p50 of a group-by aggregate and of a filtered scan on each file, the p50 of a chart render (a new
size each time, so nothing is served from the chart store), a forecast on the 10,000 points and the
server's peak RSS. The same SQL runs in the same session, the three taking turns on every sample,
through our server, DuckDB in this process (the floor: one connection, a view per file, the server's
thread count) and the peer
``mcp-server-motherduck`` over stdio (an in-memory database with the same views), which the benchmark
installs from PyPI into its own virtual environment under ``$XDG_CACHE_HOME/mcp-suite-bench``
(default ``~/.cache``), never into this project's environment. Prints one table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from common.testing import call_ok as call
from common.testing import create_database, start_cluster
from tests.benchmarks._util import children_peak_rss_mb, drop_prefix, median, print_table, run_prefix

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["-m", "servers", "serve", "analytics"]
THREADS = 2
PEER = "mcp-server-motherduck"

# Each sample names one result column differently ({n}): the same work, but a text no cache of the
# server has seen, as a user's new question would be (a repeated text or a next page is cheaper).
GROUP_BY = (
    "SELECT region, count(*) AS n, sum(amount) AS total_{n}, avg(qty) AS mean_qty FROM {t} "
    "GROUP BY region ORDER BY region"
)
FILTERED = "SELECT id, ts, amount AS amount_{n} FROM {t} WHERE product = 'p17' AND amount > 990 ORDER BY id"


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mcp-suite-bench"


def generate(folder: Path, rows: int, csv_rows: int) -> dict[str, Path]:
    """The data files, written by DuckDB from a seeded pseudo-random function of the row number."""
    files = {"sales": folder / "sales.parquet", "sales_csv": folder / "sales.csv", "series": folder / "series.csv"}
    body = (
        "SELECT i AS id, TIMESTAMP '2024-01-01' + to_seconds(i * 3) AS ts, "
        "'r' || (hash(i, 1) % 8) AS region, 'p' || (hash(i, 2) % 200) AS product, "
        "round((hash(i, 3) % 100000) / 100.0, 2) AS amount, (hash(i, 4) % 20)::INTEGER + 1 AS qty "
        "FROM range({n}) t(i)"
    )
    con = duckdb.connect()
    try:
        con.execute(f"COPY ({body.format(n=rows)}) TO '{files['sales']}' (FORMAT parquet)")
        con.execute(f"COPY ({body.format(n=csv_rows)}) TO '{files['sales_csv']}' (FORMAT csv, HEADER)")
        con.execute(
            f"COPY (SELECT TIMESTAMP '2023-01-01' + to_hours(i) AS hour, "
            "round(100 + i * 0.01 + 10 * sin(2 * pi() * (i % 24) / 24) + (hash(i, 5) % 1000) / 200.0, 3) AS load "
            f"FROM range(10000) t(i)) TO '{files['series']}' (FORMAT csv, HEADER)"
        )
    finally:
        con.close()
    return files


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await fn()
    return (time.perf_counter() - started) * 1000


class Floor:
    """The same SQL through DuckDB in this process: one connection, a view per file, fetched whole."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.con = duckdb.connect()
        self.con.execute(f"SET threads = {THREADS}")
        self.con.execute(f"CREATE VIEW sales AS SELECT * FROM read_parquet('{files['sales']}')")
        self.con.execute(f"CREATE VIEW sales_csv AS SELECT * FROM read_csv('{files['sales_csv']}')")

    async def run(self, sql: str) -> None:
        self.con.execute(sql).fetchall()


def peer_python() -> Path | None:
    """The peer's interpreter in its own venv, installed on first use; None when it does not install."""
    venv = cache_dir() / "peer-motherduck"
    python = venv / "bin" / "python"
    if (venv / "bin" / PEER).exists():
        return python
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        return None
    made = subprocess.run([uv, "venv", "-q", "--python", "3.11", str(venv)], check=False)
    if made.returncode == 0:
        made = subprocess.run([uv, "pip", "install", "-q", "--python", str(python), PEER], check=False)
    return python if made.returncode == 0 and (venv / "bin" / PEER).exists() else None


def peer_version(python: Path) -> str:
    code = "import importlib.metadata as m; print(m.version('mcp-server-motherduck'))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False).stdout.strip()


@asynccontextmanager
async def peer_session(files: dict[str, Path]) -> AsyncIterator[tuple[Callable[[str], Awaitable[None]], str] | str]:
    """mcp-server-motherduck over stdio with the same views: (run one SQL, name and version), or why not."""
    python = await asyncio.to_thread(peer_python)
    if python is None:
        yield f"{PEER} did not install from PyPI"
        return
    version = await asyncio.to_thread(peer_version, python)
    home = Path(tempfile.mkdtemp(prefix="mcp-bench-md-home-"))
    params = StdioServerParameters(
        command=str(python.parent / PEER),
        args=["--db-path", ":memory:", "--read-write", "--home-dir", str(home), "--max-rows", "100000"],
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(home)},
    )
    try:
        async with Client(params, read_timeout_seconds=600) as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            tool = next((t for t in ("execute_query", "query") if t in tools), None)
            if tool is None:
                yield f"{PEER} {version}: no query tool among {tools}"
                return
            arg = "sql" if tool == "execute_query" else "query"

            async def run(sql: str) -> None:
                result = await client.call_tool(tool, {arg: sql})
                if result.is_error:
                    raise RuntimeError(str(result.content)[:300])

            await run(f"SET threads = {THREADS}")
            await run(f"CREATE VIEW sales AS SELECT * FROM read_parquet('{files['sales']}')")
            await run(f"CREATE VIEW sales_csv AS SELECT * FROM read_csv('{files['sales_csv']}')")
            yield run, f"{PEER} {version}"
    finally:
        shutil.rmtree(home, ignore_errors=True)


async def measure(url: str, redis_url: str, tmp: Path, files: dict[str, Path], samples: int, peer: bool) -> None:
    prefix = run_prefix("benchan")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ANALYTICS_")},
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "MCP_SUITE_DATA_DIR": str(tmp / "data"),
        "EMBEDDING_MODEL": "hash-384",
        "LOG_LEVEL": "WARNING",
        "ANALYTICS_ALLOWED_ROOTS": json.dumps([str(files["sales"].parent)]),
        "ANALYTICS_THREADS": str(THREADS),
        "ANALYTICS_QUERY_TIMEOUT_S": "600",
    }
    sqls = {
        f"{q} on {t}": sql.replace("{t}", t)
        for t in ("sales", "sales_csv")
        for q, sql in (("group-by", GROUP_BY), ("filtered scan", FILTERED))
    }
    rows: list[list[object]] = []
    peer_note = "peer not measured (--no-peer)"
    try:
        params = StdioServerParameters(command=sys.executable, args=ARGS, env=env, cwd=str(ROOT))
        async with Client(params, read_timeout_seconds=900) as client:
            for name in ("sales", "sales_csv", "series"):
                reg = await timed(partial(call, client, "register_dataset", {"name": name, "path": str(files[name])}))
                prof = await timed(partial(call, client, "profile_dataset", {"name": name}))
                size = files[name].stat().st_size / 1e6
                rows.append(
                    [
                        f"register + profile {name} ({size:.0f} MB)",
                        f"{reg / 1000:.2f} s + {prof / 1000:.2f} s",
                        "",
                        "",
                        "",
                    ]
                )
            charts = []
            for n in range(samples):
                args = {
                    "source": "sales",
                    "kind": "bar",
                    "x": "region",
                    "y": "amount",
                    "aggregate": "sum",
                    "width": 600 + n,
                }
                charts.append(await timed(partial(call, client, "create_chart", args)))
            rows.append(["chart render (bar, sum by region of sales)", f"p50 {median(charts):.0f} ms", "", "", ""])
            forecast = []
            for _ in range(3):
                args = {"source": "series", "task": "forecast", "time_column": "hour", "target": "load", "horizon": 24}
                forecast.append(await timed(partial(call, client, "predict", args)))
            rows.append(
                ["forecast, 10,000 hourly points, horizon 24", f"p50 {median(forecast) / 1000:.2f} s", "", "", ""]
            )
            rss = children_peak_rss_mb("analytics")
            # The three systems take turns on every sample, so a busy moment of the machine hits all alike.
            systems: dict[str, Callable[[str], Awaitable[Any]]] = {
                "suite": lambda sql: call(client, "query_data", {"sql": sql}),
                "floor": Floor(files).run,
            }
            async with AsyncExitStack() as stack:
                if peer:
                    try:
                        got = await stack.enter_async_context(peer_session(files))
                    except Exception as exc:  # the peer's failure is reported in the table, not a reason to lose ours
                        got = f"{PEER} failed: {type(exc).__name__}: {str(exc)[:200]}"
                    if isinstance(got, str):
                        peer_note = got
                    else:
                        systems["peer"], peer_note = got
                times: dict[str, dict[str, list[float]]] = {name: {key: [] for key in sqls} for name in systems}
                for key, sql in sqls.items():
                    for run in systems.values():
                        await run(sql.format(n="warm"))  # warm: the first call of each is not counted
                    for n in range(samples):
                        names = list(systems)
                        for name in names[n % len(names) :] + names[: n % len(names)]:
                            times[name][key].append(await timed(partial(systems[name], sql.format(n=n))))
                peer_rss = children_peak_rss_mb(PEER) if "peer" in systems else 0.0
    finally:
        await drop_prefix(redis_url, prefix)
    ours, floor, theirs = times["suite"], times["floor"], times.get("peer", {})
    met = True
    for key in sqls:
        suite, raw = median(ours[key]), median(floor[key])
        goal = raw * 1.15 + 2
        met = met and suite <= goal
        peer_p50 = f"{median(theirs[key]):.1f} ms" if key in theirs else "-"
        rows.append(
            [
                f"{key} p50",
                f"suite {suite:.1f} ms",
                f"DuckDB {raw:.1f} ms",
                f"peer {peer_p50}",
                f"goal <= {goal:.1f} ms: {'met' if suite <= goal else 'not met'}",
            ]
        )
    rows.append(["peak RSS", f"suite server {rss:.0f} MB", "", f"peer {peer_rss:.0f} MB" if peer_rss else "", ""])
    rows.append(["peer", peer_note, "", "", ""])
    print_table(rows, ["measure", "", "", "", ""])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the Parquet file")
    parser.add_argument("--csv-rows", type=int, default=1_000_000, help="rows of the CSV file")
    parser.add_argument("--samples", type=int, default=10, help="timed calls per query and chart")
    parser.add_argument("--no-peer", action="store_true", help=f"leave out {PEER}")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    tmp = Path(tempfile.mkdtemp(prefix="mcp-bench-analytics-"))
    server, cluster = start_cluster(tmp / "pg")
    try:
        (tmp / "files").mkdir()
        started = time.perf_counter()
        files = generate(tmp / "files", args.rows, args.csv_rows)
        print(f"generated the data in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        url = create_database(cluster, "bench_analytics")
        asyncio.run(measure(url, redis_url, tmp, files, args.samples, not args.no_peer))
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
