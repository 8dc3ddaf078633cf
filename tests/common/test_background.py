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


async def test_a_batcher_hands_a_burst_over_in_one_flush_and_drain_flushes_the_rest() -> None:
    bg = Background()
    flushed: list[list[int]] = []

    async def flush(items: list[int]) -> None:
        flushed.append(items)

    batcher = bg.batcher("numbers", flush, delay_s=0.05)
    assert bg.batcher("numbers", flush) is batcher  # one per name
    for i in range(5):  # five calls in quick succession
        batcher.add([i, i])
    assert flushed == []  # nothing waits for the flush
    await asyncio.sleep(0.2)
    assert flushed == [[0, 0, 1, 1, 2, 2, 3, 3, 4, 4]]
    batcher.add([9])
    assert batcher.pending == 1
    assert batcher.backlog == 1
    await bg.drain()  # shutting down: what is pending goes out
    assert flushed[-1] == [9]
    assert batcher.flushes == 2
    assert batcher.pending == 0


async def test_a_failed_flush_is_counted_and_the_next_add_flushes_again() -> None:
    bg = Background()
    calls: list[list[str]] = []

    async def flush(items: list[str]) -> None:
        calls.append(items)
        if items == ["bad"]:
            raise RuntimeError("redis went away")

    batcher = bg.batcher("fragile", flush, delay_s=0.01)
    batcher.add(["bad"])
    await bg.drain()
    assert bg.failed == 1
    batcher.add(["good"])
    await bg.drain()
    assert calls == [["bad"], ["good"]]


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


async def test_drain_flushes_now_after_a_running_flush_and_keep_failed_retries_in_order() -> None:
    bg = Background()
    written: list[int] = []
    fail = [True]
    started = asyncio.Event()
    release = asyncio.Event()

    async def flush(items: list[int]) -> None:
        if items == [0]:  # the first flush is slow, so drain must wait for it
            started.set()
            await release.wait()
        if fail[0] and 1 in items:
            fail[0] = False
            raise RuntimeError("database went away")
        written.extend(items)

    batcher = bg.batcher("history", flush, delay_s=60, keep_failed=True, max_pending=3)
    batcher.add([0])
    first = asyncio.create_task(batcher.drain())
    await asyncio.wait_for(started.wait(), 5)
    batcher.add([1, 2])
    second = asyncio.create_task(batcher.drain())
    await asyncio.sleep(0)
    assert not second.done()  # waits for the flush under way
    release.set()
    # The first drain goes on to the items added meanwhile; their flush fails and they stay queued.
    with pytest.raises(RuntimeError):
        await first
    await second  # then written by the second
    assert written == [0, 1, 2]
    batcher.add([3, 4, 5, 6])  # over max_pending: the oldest goes
    assert batcher.dropped == 1
    assert batcher.pending == 3
    await batcher.drain()
    assert written == [0, 1, 2, 4, 5, 6]
    await bg.drain(timeout_s=0.1)
