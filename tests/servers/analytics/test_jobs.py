"""Long work runs as jobs of the shared kit: progress, persisted status, cancel, and resume after a
process was killed (over stdio, as Claude runs the server)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from mcp import Client

from common.errors import Conflict, InvalidInput
from common.testing import (
    call_ok,
    fetch_rows,
    heartbeats_older_than,
    kill_when,
    rpc_conversation,
    server_env,
    wait_until,
)
from servers.analytics.server import build
from servers.analytics.service import AnalyticsService
from servers.analytics.settings import Settings

pytestmark = pytest.mark.anyio

# Sleeps (bounded by the fetch timeout) while the gate table has a row, so a test can hold a job running.
GATED = (
    "SELECT n FROM generate_series(1, 5) AS n "
    "WHERE NOT EXISTS (SELECT 1 FROM analytics_test_gate) OR (SELECT true FROM pg_sleep(25))"
)


@pytest.fixture
def settings(service_settings: Callable[..., Settings]) -> Settings:
    return service_settings(heartbeat_s=0.1, job_stale_s=0.5)


@pytest.fixture
async def gate(database_url: str) -> AsyncIterator[Callable[[], Any]]:
    conn = await asyncpg.connect(database_url)
    await conn.execute("CREATE TABLE IF NOT EXISTS analytics_test_gate (x int)")
    await conn.execute("INSERT INTO analytics_test_gate VALUES (1)")

    async def open_gate() -> None:
        await conn.execute("DELETE FROM analytics_test_gate")

    try:
        yield open_gate
    finally:
        # A killed server's backend sleeps on behind the gate until PostgreSQL notices; end it so the
        # table can be dropped now.
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND query LIKE '%analytics_test_gate%'"
        )
        await conn.execute("DROP TABLE analytics_test_gate")
        await conn.close()


async def test_a_profile_runs_as_a_job_that_reports_progress_and_is_listed(
    svc: AnalyticsService, data_dir: Path
) -> None:
    await svc.register("dia", path=str(data_dir / "diabetes.csv"))
    seen: list[tuple[float, float | None, str]] = []

    async def progress(done: float, total: float | None, message: str) -> None:
        seen.append((done, total, message))

    prof = await svc.profile("dia", progress=progress)
    assert prof.job is None
    assert prof.rows == 442
    assert len(prof.columns) == 13
    jobs = (await svc.list_jobs(limit=10, cursor=None)).items
    assert [(j.kind, j.key, j.status) for j in jobs] == [("profile", "dia", "done"), ("register", "dia", "done")]
    assert jobs[0].total == 14
    assert jobs[0].done == 13
    assert seen


async def test_with_no_wait_the_job_is_returned_and_followed_to_its_result(
    svc: AnalyticsService, data_dir: Path
) -> None:
    svc.settings = svc.settings.model_copy(update={"wait_s": 0})
    reg = await svc.register("dia", path=str(data_dir / "diabetes.parquet"))
    assert reg.dataset is None
    assert reg.job is not None
    job_id = reg.job.id

    async def ended() -> bool:
        return (await svc.job_status(job_id)).status != "running"

    await wait_until(ended, timeout_s=30, what="the registration job to end")
    assert (await svc.job_status(job_id)).status == "done"
    assert (await svc.dataset("dia")).row_count == 442
    with pytest.raises(Conflict, match="done"):
        await svc.cancel_job(job_id)
    with pytest.raises(InvalidInput, match="job_id"):
        await svc.job_status("not-a-job")


async def test_a_failure_in_the_job_raises_the_callers_error_and_leaves_nothing(
    svc: AnalyticsService, data_dir: Path
) -> None:
    (data_dir / "ragged.csv").write_text("a,b\n" + "1,2\n" * 30 + "1,2,3,4\n")
    with pytest.raises(InvalidInput, match="not well-formed CSV"):
        await svc.register("ragged", path=str(data_dir / "ragged.csv"))
    assert (await svc.list_datasets(limit=10, cursor=None)).total == 0
    jobs = (await svc.list_jobs(limit=10, cursor=None)).items
    assert [(j.kind, j.status) for j in jobs] == [("register", "failed")]
    assert jobs[0].message


async def test_a_running_database_registration_is_cancelled_and_leaves_nothing(
    svc: AnalyticsService, gate: Callable[[], Any]
) -> None:
    svc.settings = svc.settings.model_copy(update={"wait_s": 0})
    reg = await svc.register("held", connection="main", sql=GATED)
    assert reg.job is not None
    job_id = reg.job.id
    assert (await svc.cancel_job(job_id)).status in ("running", "cancelled")

    async def cancelled() -> bool:
        return (await svc.job_status(job_id)).status == "cancelled"

    await wait_until(cancelled, timeout_s=20, what="the job to stop on cancel")
    assert list(svc.extracts_dir.iterdir()) == []
    assert (await svc.list_datasets(limit=10, cursor=None)).total == 0
    # Resumed with the gate open, the same job registers the dataset.
    await gate()
    svc.settings = svc.settings.model_copy(update={"wait_s": 30})
    resumed = await svc.resume_job(job_id)
    assert resumed.status == "done"
    assert resumed.attempts == 2
    assert (await svc.dataset("held")).row_count == 5


async def test_a_registration_killed_with_its_process_is_interrupted_and_resumed_by_the_next_one(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
    data_dir: Path,
    settings: Settings,
    gate: Callable[[], Any],
) -> None:
    env = server_env(
        database_url,
        redis_url,
        redis_prefix,
        tmp_path / "state",
        server_prefix="ANALYTICS_",
        EMBEDDING_MODEL="hash-384",
        ANALYTICS_ALLOWED_ROOTS=json.dumps([str(data_dir)]),
        ANALYTICS_CONNECTIONS=json.dumps({"main": database_url}),
        ANALYTICS_HEARTBEAT_S="0.1",
        ANALYTICS_WAIT_S="60",
    )
    conversation = rpc_conversation(("register_dataset", {"name": "held", "connection": "main", "sql": GATED}))

    async def under_way() -> bool:  # the job's query sleeps behind the gate
        rows = await fetch_rows(database_url, "SELECT message FROM analytics.jobs")
        return bool(rows and rows[0]["message"])

    await kill_when("analytics", env, conversation, tmp_path, under_way)
    job = (await fetch_rows(database_url, "SELECT id::text, status FROM analytics.jobs"))[0]
    assert job["status"] == "running", "a killed process cannot have finished its job"
    assert (await fetch_rows(database_url, "SELECT count(*) AS n FROM analytics.datasets"))[0]["n"] == 0
    await gate()

    await wait_until(
        lambda: heartbeats_older_than(database_url, "analytics.jobs", 0.6),
        timeout_s=10,
        what="the dead job's heartbeat to age past job_stale_s",
    )
    async with Client(build(settings)) as client:
        status = await call_ok(client, "manage_datasets", {"action": "job", "job_id": job["id"]})
        assert status["job"]["status"] == "interrupted"
        listed = await call_ok(client, "manage_datasets", {"action": "job"})
        assert [j["id"] for j in listed["jobs"]] == [job["id"]]
        resumed = await call_ok(client, "manage_datasets", {"action": "resume", "job_id": job["id"]})
        assert resumed["job"]["status"] == "done"
        datasets = await call_ok(client, "manage_datasets", {})
        assert [(d["name"], d["row_count"]) for d in datasets["items"]] == [("held", 5)]
    extracts = list((settings.data_folder() / "extracts").iterdir())
    assert len(extracts) == 1
