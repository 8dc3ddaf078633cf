"""The jobs kit on a real database: start, progress, cancel from elsewhere, interruption and resume."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from common.db import Database, DbConfig
from common.errors import Conflict, InvalidInput, NotFound
from common.jobs import JOBS_DDL, MAX_ERRORS, JobCancelled, JobContext, Jobs
from common.testing import wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "CREATE SCHEMA extensions; CREATE EXTENSION vector SCHEMA extensions; CREATE SCHEMA app;"
            " SET search_path = app;" + JOBS_DDL
        )
    finally:
        await conn.close()
    database = await Database.open(DbConfig(url=database_url, schema="app"))
    try:
        yield database
    finally:
        await database.close()


async def test_a_job_runs_to_done_with_counts_errors_and_progress(db: Database) -> None:
    jobs = Jobs(db, "app", heartbeat_s=0.05, stale_after_s=1)
    reported: list[tuple[float, float | None, str]] = []

    async def progress(done: float, total: float | None, message: str) -> None:
        reported.append((done, total, message))

    async def work(ctx: JobContext) -> str:
        for i in range(5):
            ctx.count("files")
            if i == 3:
                ctx.error(f"f{i}.md", "not UTF-8")
            await ctx.step(done=i + 1, total=5, message=f"f{i}.md", state={"next": i + 1})
        return "5 files"

    job = await jobs.start("ingest", "v1:/docs", {"root": "/docs"})
    final = await jobs.run(job, work, progress)
    assert final.status == "done"
    assert final.message == "5 files"
    assert (final.done, final.total) == (5, 5)
    assert final.counts == {"files": 5}
    assert final.errors == [{"item": "f3.md", "reason": "not UTF-8"}]
    assert final.state == {"next": 5}
    assert final.finished_at is not None
    assert reported[-1] == (5.0, 5.0, "f4.md")
    view = final.view()
    assert view.errors_total == 1


async def test_one_live_job_per_target_and_a_clear_conflict(db: Database) -> None:
    jobs = Jobs(db, "app")
    first = await jobs.start("crawl", "https://a.example", {})
    with pytest.raises(Conflict, match=first.id):
        await jobs.start("crawl", "https://a.example", {})
    other = await jobs.start("crawl", "https://b.example", {})
    assert other.id != first.id
    listed, total = await jobs.find(kind="crawl")
    assert total == 2
    assert {j.id for j in listed} == {first.id, other.id}


async def test_a_cancel_from_another_process_stops_the_work_at_its_next_step(db: Database) -> None:
    runner = Jobs(db, "app", heartbeat_s=0.05, stale_after_s=1)
    other = Jobs(db, "app", heartbeat_s=0.05, stale_after_s=1)
    other.owner = "elsewhere:1"
    started = asyncio.Event()
    steps = 0

    async def work(ctx: JobContext) -> str:
        nonlocal steps
        started.set()
        while True:
            steps += 1
            await ctx.step(done=steps)
            await asyncio.sleep(0.01)  # a unit of work

    job = await runner.start("analysis", "repo", {})
    task = asyncio.create_task(runner.run(job, work))
    await started.wait()
    await other.cancel(job.id)
    final = await asyncio.wait_for(task, timeout=10)
    assert final.status == "cancelled"
    assert final.done == steps
    with pytest.raises(Conflict, match="already cancelled"):
        await other.cancel(job.id)


async def test_a_job_whose_process_died_is_interrupted_and_resumes_from_its_checkpoint(db: Database) -> None:
    dead = Jobs(db, "app", heartbeat_s=0.05, stale_after_s=0.2)
    dead.owner = "gone:1"

    job = await dead.start("ingest", "v1:/docs", {"root": "/docs"})
    ctx = JobContext(job=job, jobs=dead, state={"next": 3}, done=3, total=6)
    await dead.heartbeat(ctx)
    # The process is gone: no more heartbeats. Another process recovers it once it is stale.
    alive = Jobs(db, "app", heartbeat_s=0.05, stale_after_s=0.2)
    interrupted: list[str] = []

    async def recovered() -> bool:
        interrupted.extend(await alive.recover())
        return bool(interrupted)

    await wait_until(recovered, timeout_s=10, what="the stale job to be recovered", every_s=0.05)
    assert interrupted == [job.id]
    assert (await alive.get(job.id)).status == "interrupted"

    resumed = await alive.claim_resume(job.id)
    assert resumed.attempts == 2
    seen: dict[str, Any] = {}

    async def second_half(ctx: JobContext) -> str:
        seen.update(ctx.state)
        for i in range(ctx.state["next"], 6):
            await ctx.step(done=i + 1, state={"next": i + 1})
        return "resumed"

    final = await alive.run(resumed, second_half)
    assert seen == {"next": 3}
    assert (final.status, final.done, final.message) == ("done", 6, "resumed")
    with pytest.raises(Conflict, match="only interrupted, failed or cancelled"):
        await alive.claim_resume(job.id)


async def test_a_failing_job_keeps_a_short_reason_and_item_errors_are_capped(db: Database) -> None:
    jobs = Jobs(db, "app")

    async def work(ctx: JobContext) -> str:
        for i in range(MAX_ERRORS + 50):
            ctx.error(f"item{i}", "x" * 2000)
        raise RuntimeError("disk full " + "y" * 5000)

    final = await jobs.run(await jobs.start("k", "t", {}), work)
    assert final.status == "failed"
    assert final.message is not None
    assert final.message.startswith("Failed: disk full")
    assert len(final.message) <= 500
    assert len(final.errors) == MAX_ERRORS
    assert final.errors_total == MAX_ERRORS + 50
    assert len(final.errors[0]["reason"]) <= 500


async def test_spawned_jobs_can_be_followed_and_stop_when_the_process_closes(db: Database) -> None:
    jobs = Jobs(db, "app", heartbeat_s=0.05, stale_after_s=1)
    gate = asyncio.Event()

    async def work(ctx: JobContext) -> str:
        await ctx.step(done=1, total=2)
        await gate.wait()
        await ctx.step(done=2)
        return "ok"

    job = await jobs.start("crawl", "site", {})
    jobs.spawn(job, work)
    running = await jobs.wait(job.id, timeout_s=0.2)
    assert running.status == "running"
    gate.set()
    done = await jobs.wait(job.id, timeout_s=10)
    assert done.status == "done"

    gate.clear()
    second = await jobs.start("crawl", "site", {})
    jobs.spawn(second, work)
    await wait_until(lambda: second.id in jobs._tasks, what="the job task")
    await jobs.close()
    # Closing leaves it running-but-silent: recover() marks it interrupted once stale.
    assert (await jobs.get(second.id)).status == "running"


async def test_bad_job_ids_are_refused_before_sql(db: Database) -> None:
    jobs = Jobs(db, "app")
    with pytest.raises(InvalidInput, match="job_id"):
        await jobs.get("1; DROP TABLE app.jobs")
    with pytest.raises(NotFound):
        await jobs.get("00000000-0000-0000-0000-000000000000")


def test_job_cancelled_is_an_ordinary_exception() -> None:
    assert issubclass(JobCancelled, Exception)
