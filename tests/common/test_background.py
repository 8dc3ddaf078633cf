"""Work after the answer (common.background) and statistics after bulk writes (common.table_stats)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from common.background import Background
from common.db import Database, DbConfig
from common.table_stats import StatsRefresher

pytestmark = pytest.mark.anyio


async def test_background_work_runs_later_and_is_drained() -> None:
    bg = Background()
    done: list[str] = []

    async def work(tag: str, delay: float) -> None:
        await asyncio.sleep(delay)
        done.append(tag)

    bg.spawn(work("a", 0.01), name="a")
    bg.spawn(work("b", 0.02), name="b")
    assert done == []  # spawning never waits
    assert bg.pending == 2
    await bg.drain()
    assert sorted(done) == ["a", "b"]
    assert bg.pending == 0


async def test_failures_are_counted_and_slow_work_is_cancelled_at_drain() -> None:
    bg = Background()

    async def boom() -> None:
        raise RuntimeError("lost")

    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    bg.spawn(boom(), name="boom")
    bg.spawn(forever(), name="forever")
    await asyncio.wait_for(started.wait(), 5)
    await bg.drain(timeout_s=0.1)
    assert bg.failed == 1
    assert bg.pending == 0


async def test_analyze_runs_after_enough_writes_and_tells_listeners(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    await conn.execute(
        "CREATE SCHEMA IF NOT EXISTS extensions; CREATE EXTENSION IF NOT EXISTS vector SCHEMA extensions;"
        "DROP SCHEMA IF EXISTS st CASCADE; CREATE SCHEMA st; CREATE TABLE st.t (id int)"
    )
    await conn.execute("INSERT INTO st.t SELECT generate_series(1, 5000)")
    db = await Database.open(DbConfig(url=database_url, schema="st"))
    try:
        heard: list[int] = []
        refresher = StatsRefresher(db, ["t"], every=1000)
        refresher.on_refresh(lambda: heard.append(1))
        refresher.wrote(999)
        await refresher.wait()
        assert refresher.runs == 0
        refresher.wrote(1)
        await refresher.wait()
        assert refresher.runs == 1
        assert heard == [1]
        analysed = await conn.fetchval("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 't'")
        assert analysed is True
    finally:
        await db.close()
        await conn.close()
