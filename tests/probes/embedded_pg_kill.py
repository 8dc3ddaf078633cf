"""Probe: the embedded PostgreSQL killed twice (SIGKILL) under writes from 4 server-like processes.

Too slow for the suite (about half a minute). From the repository root:

    .venv/bin/python -m tests.probes.embedded_pg_kill [--writes 200] [--sessions 4] [--concurrency 5]

Each session is its own process that joins the instance with ``ensure_embedded`` and writes through
a ``Database`` pool whose ``on_connection_lost`` is ``connection_lost_handler`` (as a server does).
Each session starts its writes evenly over ``--span`` seconds, each on its own task, so they pile
up in flight while PostgreSQL is down; they are idempotent inserts that take ~50 ms. Prints how long each restart took, then per session: writes that succeeded, writes that
failed (and with what), latency p50/max, and the rows actually stored.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg

from common import embedded_pg

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import asyncio, json, sys, time
from pathlib import Path
from common.logging import configure_logging
from common import embedded_pg
from common.db import Database, DbConfig

configure_logging("WARNING", "json")
data_dir, session, writes = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
concurrency, interval = int(sys.argv[4]), float(sys.argv[5])

async def main() -> None:
    url = embedded_pg.ensure_embedded(data_dir)
    db = await Database.open(DbConfig(url=url, schema="public", pool_max=concurrency,
                                      on_connection_lost=embedded_pg.connection_lost_handler(data_dir)))
    print("ready", flush=True)
    sys.stdin.readline()
    results = []

    async def write(n: int) -> None:
        await asyncio.sleep(n * interval)
        started = time.time()
        try:
            await db.execute(
                "INSERT INTO public.probe (session, n) SELECT $1, $2 FROM pg_sleep(0.05) "
                "ON CONFLICT DO NOTHING", session, n)
            results.append((started, time.time(), "ok"))
        except Exception as exc:
            results.append((started, time.time(), f"{type(exc).__name__}: {str(exc)[:40]}"))

    await asyncio.gather(*(write(n) for n in range(writes)))
    await db.close()
    print(json.dumps(results), flush=True)

asyncio.run(main())
"""


def _postmaster_pid(data_dir: Path) -> int | None:
    return embedded_pg.status(data_dir).pid


def _restarted(data_dir: Path, old_pid: int) -> bool:
    return (_postmaster_pid(data_dir) or old_pid) != old_pid


def _wait_for(predicate: Callable[[], bool], timeout_s: float) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError("timed out")
        time.sleep(0.01)
    return time.monotonic() - started


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")


async def _prepare(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE SCHEMA IF NOT EXISTS extensions; CREATE EXTENSION IF NOT EXISTS vector SCHEMA extensions;"
            "CREATE TABLE IF NOT EXISTS public.probe (session int, n int, PRIMARY KEY (session, n))"
        )
    finally:
        await conn.close()


async def _stored(url: str) -> dict[int, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT session, count(*) AS c FROM public.probe GROUP BY session")
        return {int(r["session"]): int(r["c"]) for r in rows}
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--writes", type=int, default=200, help="writes in total, split across sessions")
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=5, help="pool size per session")
    parser.add_argument("--span", type=float, default=10.0, help="seconds over which each session starts its writes")
    args = parser.parse_args()
    per_session = args.writes // args.sessions

    base = Path(tempfile.mkdtemp(prefix="mcp-epg-probe-"))
    data_dir = base / "d"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    procs: list[subprocess.Popen[str]] = []
    try:
        url = embedded_pg.ensure_embedded(data_dir, detached=True)
        asyncio.run(_prepare(url))
        for s in range(args.sessions):
            cmd = [
                sys.executable,
                "-c",
                WORKER,
                str(data_dir),
                str(s),
                str(per_session),
                str(args.concurrency),
                str(args.span / per_session),
            ]
            procs.append(
                subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            )
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        go = time.time()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()

        kills: list[tuple[float, float]] = []
        for _ in range(2):
            time.sleep(1.5)
            pid = _postmaster_pid(data_dir)
            assert pid is not None, "PostgreSQL is not running"
            killed_at = time.time()
            os.kill(pid, signal.SIGKILL)
            took = _wait_for(functools.partial(_restarted, data_dir, pid), 30)
            kills.append((killed_at - go, took))

        outputs = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
        stored = asyncio.run(_stored(url))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        embedded_pg.stop(data_dir)
        shutil.rmtree(base, ignore_errors=True)

    _say(
        f"{args.sessions} sessions x {per_session} writes started over {args.span:.0f}s (pool of "
        f"{args.concurrency}, 50 ms each); PostgreSQL SIGKILLed twice"
    )
    _say()
    _say("kill  at (s)  back after (s)")
    for i, (at, took) in enumerate(kills, 1):
        _say(f"{i:>4}  {at:>6.2f}  {took:>14.2f}")
    _say()
    _say("session  ok   failed  p50 ms  max ms  rows stored  errors")
    for s, results in enumerate(outputs):
        ok = [r for r in results if r[2] == "ok"]
        failed = [r for r in results if r[2] != "ok"]
        kinds = sorted({r[2] for r in failed})
        lat = sorted((r[1] - r[0]) * 1000 for r in results)
        _say(
            f"{s:>7}  {len(ok):>3}  {len(failed):>6}  {lat[len(lat) // 2]:>6.0f}  {lat[-1]:>6.0f}  "
            f"{stored.get(s, 0):>11}  {'; '.join(kinds) or '-'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
