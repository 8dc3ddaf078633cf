"""Jobs kit: long work (ingests, crawls, analyses, test runs) as persisted, cancellable, resumable jobs.

Each server that runs jobs has a ``jobs`` table in its own schema with the columns of
:data:`JOBS_DDL` (a migration line `-- @include jobs` creates it). :class:`Jobs` creates, runs and manages
rows of that table:

- ``start`` records a job; one live (running) job per ``(kind, key)``, so two processes asked to do
  the same work meet at a unique index instead of doing it twice.
- ``run`` drives a work function to an end state (done, failed, cancelled). While it runs, the work
  reports progress through :class:`JobContext`: counts, a resume checkpoint (``state``), item errors
  (kept, never dropped silently: the first :data:`MAX_ERRORS` in full, the rest counted). A heartbeat
  writes them every few seconds and reads back ``cancel_requested``, so a cancel from any process
  stops the work at its next ``step``.
- A process that dies leaves its job ``running`` with an old heartbeat; ``recover`` (run at start-up
  and before managing jobs) marks such jobs ``interrupted``, and ``claim_resume`` hands one to a
  caller, which runs it again from its saved ``state``.
- ``spawn`` runs a job in the background of this process; ``wait`` follows one (in this process or
  another) until it ends or a timeout, reporting progress to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, Field

from common.db import Database
from common.errors import Conflict, InvalidInput, NotFound
from common.logging import get_logger
from common.migrate import kit_sql

log = get_logger(__name__)

#: The table every job-running server creates in its schema (its migration says ``-- @include jobs``).
JOBS_DDL = kit_sql("jobs")

#: Item errors kept in full per job; later ones are only counted (errors_total).
MAX_ERRORS = 200
#: Longest text kept for one error reason or job message.
MAX_TEXT = 500
FINAL = ("done", "failed", "cancelled")
RESUMABLE = ("interrupted", "failed", "cancelled")

Progress = Callable[[float, float | None, str], Awaitable[None]]
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class JobCancelled(Exception):
    """Raised inside a job's work by :meth:`JobContext.step` once a cancel was requested."""


class JobView(BaseModel):
    """A job as tools return it."""

    id: str
    kind: str
    key: str
    status: str = Field(description="running, done, failed, cancelled or interrupted.")
    done: int
    total: int | None
    counts: dict[str, Any]
    errors: list[dict[str, str]] = Field(description="Item errors (the first ones; see errors_total).")
    errors_total: int
    message: str | None
    attempts: int
    heartbeat_at: datetime
    created_at: datetime
    finished_at: datetime | None


@dataclass
class Job:
    """One row of a server's jobs table."""

    id: str
    kind: str
    key: str
    params: dict[str, Any]
    status: str
    cancel_requested: bool
    done: int
    total: int | None
    counts: dict[str, Any]
    errors: list[dict[str, str]]
    errors_total: int
    state: dict[str, Any]
    message: str | None
    attempts: int
    owner: str | None
    heartbeat_at: datetime
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record | dict[str, Any]) -> Job:
        values = dict(row)
        for name in ("params", "counts", "errors", "state"):
            if isinstance(values[name], str):
                values[name] = json.loads(values[name])
        values["id"] = str(values["id"])
        return cls(**values)

    def view(self, max_errors: int = 20) -> JobView:
        """The job as a tool answer, with at most ``max_errors`` item errors."""
        return JobView(
            id=self.id,
            kind=self.kind,
            key=self.key,
            status=self.status,
            done=self.done,
            total=self.total,
            counts=self.counts,
            errors=self.errors[:max_errors],
            errors_total=self.errors_total,
            message=self.message,
            attempts=self.attempts,
            heartbeat_at=self.heartbeat_at,
            created_at=self.created_at,
            finished_at=self.finished_at,
        )


def check_job_id(job_id: str) -> str:
    """``job_id`` if it looks like a job id; InvalidInput otherwise (before it reaches SQL)."""
    if not isinstance(job_id, str) or not _UUID.match(job_id):
        raise InvalidInput("job_id is not a job id (a UUID from start or list).")
    return job_id.lower()


def _short(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


@dataclass
class JobContext:
    """What a job's work function sees: its job, its resume state and the means to report."""

    job: Job
    jobs: Jobs
    progress: Progress | None = None
    state: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)
    errors_total: int = 0
    done: int = 0
    total: int | None = None
    message: str | None = None
    cancel_requested: bool = False
    _last_progress: float = 0.0
    _dirty: bool = False

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the count ``name``."""
        self.counts[name] = int(self.counts.get(name, 0)) + n
        self._dirty = True

    def error(self, item: str, reason: str) -> None:
        """Record that ``item`` failed or was skipped, and why (kept in the job, never dropped silently)."""
        self.errors_total += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"item": _short(item), "reason": _short(reason)})
        self._dirty = True

    async def step(
        self,
        *,
        done: int | None = None,
        total: int | None = None,
        message: str | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        """Report progress (and optionally a new resume checkpoint); raises JobCancelled after a cancel."""
        if done is not None:
            self.done = done
        if total is not None:
            self.total = total
        if message is not None:
            self.message = _short(message)
        if state is not None:
            self.state = state
        self._dirty = True
        if self.cancel_requested:
            raise JobCancelled
        now = time.monotonic()
        if self.progress is not None and (now - self._last_progress >= 0.25 or self.done == self.total):
            self._last_progress = now
            try:
                await self.progress(
                    float(self.done), None if self.total is None else float(self.total), self.message or ""
                )
            except Exception as exc:  # a client that stopped listening must not fail the job
                log.debug("job_progress_failed", error=str(exc)[:200])
        if self.jobs.beat_due(self):
            await self.jobs.heartbeat(self)
            if self.cancel_requested:
                raise JobCancelled


Work = Callable[[JobContext], Awaitable[str | None]]


class Jobs:
    """Jobs of one server's schema; see the module docstring."""

    def __init__(self, db: Database, schema: str, *, heartbeat_s: float = 2.0, stale_after_s: float = 30.0) -> None:
        if not _SCHEMA.match(schema):
            raise ValueError(f"bad schema name {schema!r}")
        if stale_after_s <= heartbeat_s * 2:
            raise ValueError("stale_after_s must be well above heartbeat_s")
        self.db = db
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._tasks: dict[str, asyncio.Task[Job]] = {}
        self._beats: dict[str, float] = {}
        t = f"{schema}.jobs"
        cols = (
            "id, kind, key, params, status, cancel_requested, done, total, counts, errors, errors_total, state, "
            "message, attempts, owner, heartbeat_at, created_at, finished_at"
        )
        # The schema is a validated constant of the server, never caller input.
        self._sql = {
            "start": f"INSERT INTO {t} (kind, key, params, total, owner) VALUES ($1, $2, $3::jsonb, $4, $5) RETURNING {cols}",
            "live": f"SELECT id::text FROM {t} WHERE kind = $1 AND key = $2 AND status = 'running'",
            "get": f"SELECT {cols} FROM {t} WHERE id = $1::uuid",
            "list": f"""SELECT {cols}, count(*) OVER () AS total_rows FROM {t}
                WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR status = $2)
                ORDER BY created_at DESC, id LIMIT $3 OFFSET $4""",
            "beat": f"""UPDATE {t} SET heartbeat_at = now(), done = $2, total = $3, counts = $4::jsonb,
                errors = $5::jsonb, errors_total = $6, state = $7::jsonb, message = $8
                WHERE id = $1::uuid AND status = 'running' AND owner = $9 RETURNING cancel_requested""",
            "finish": f"""UPDATE {t} SET status = $2, done = $3, total = $4, counts = $5::jsonb, errors = $6::jsonb,
                errors_total = $7, state = $8::jsonb, message = $9, finished_at = now(), heartbeat_at = now()
                WHERE id = $1::uuid AND status = 'running' AND owner = $10 RETURNING {cols}""",
            "cancel": f"""UPDATE {t} SET cancel_requested = true WHERE id = $1::uuid AND status = 'running'
                RETURNING heartbeat_at < now() - make_interval(secs => $2) AS stale""",
            "cancel_stale": f"""UPDATE {t} SET status = 'cancelled', finished_at = now(),
                message = 'Cancelled; the process running it had stopped.' WHERE id = $1::uuid AND status = 'running'""",
            "recover": f"""UPDATE {t} SET status = 'interrupted',
                message = 'The process running it stopped; resume it to continue where it left off.'
                WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => $1) RETURNING id::text""",
            "resume": f"""UPDATE {t} SET status = 'running', cancel_requested = false, attempts = attempts + 1,
                owner = $2, heartbeat_at = now(), finished_at = NULL, message = NULL
                WHERE id = $1::uuid AND status = ANY($3::text[]) RETURNING {cols}""",
        }

    # ------------------------------------------------------------------------------- rows

    async def start(self, kind: str, key: str, params: dict[str, Any], *, total: int | None = None) -> Job:
        """Record a new running job; Conflict (naming the live job) if one already runs for ``(kind, key)``."""
        try:
            row = await self.db.fetchrow(self._sql["start"], kind, key, json.dumps(params), total, self.owner)
        except asyncpg.UniqueViolationError:
            live = await self.db.fetchval(self._sql["live"], kind, key)
            raise Conflict(
                f"Job {live} is already running this {kind}; follow it with its status, or cancel it first."
            ) from None
        assert row is not None
        return Job.from_row(row)

    async def live(self, kind: str, key: str) -> str | None:
        """The id of the job running ``(kind, key)``, if any."""
        value: str | None = await self.db.fetchval(self._sql["live"], kind, key)
        return value

    async def get(self, job_id: str) -> Job:
        """The job ``job_id``; NotFound if there is none."""
        row = await self.db.fetchrow(self._sql["get"], check_job_id(job_id))
        if row is None:
            raise NotFound(f"No job {job_id}; list the jobs to see recent ones.")
        return Job.from_row(row)

    async def find(
        self, *, kind: str | None = None, status: str | None = None, limit: int = 20, offset: int = 0
    ) -> tuple[list[Job], int]:
        """Jobs, newest first, with the total matching."""
        rows = await self.db.fetch(self._sql["list"], kind, status, limit, offset)
        total = int(rows[0]["total_rows"]) if rows else 0
        return [Job.from_row(_without(r, "total_rows")) for r in rows], total

    async def recover(self) -> list[str]:
        """Mark running jobs whose process stopped heart-beating as interrupted; their ids."""
        ids = [r["id"] for r in await self.db.fetch(self._sql["recover"], self.stale_after_s)]
        if ids:
            log.warning("jobs_interrupted", jobs=ids)
        return ids

    async def cancel(self, job_id: str) -> Job:
        """Ask a running job to stop (it stops at its next step, in whichever process runs it)."""
        job = await self.get(job_id)
        if job.status != "running":
            raise Conflict(f"Job {job.id} is already {job.status}; nothing to cancel.")
        stale = await self.db.fetchval(self._sql["cancel"], job.id, self.stale_after_s)
        if stale:  # nobody is running it any more: end it here
            await self.db.execute(self._sql["cancel_stale"], job.id)
        return await self.get(job.id)

    async def claim_resume(self, job_id: str) -> Job:
        """Take an interrupted, failed or cancelled job to run it again; Conflict otherwise."""
        await self.recover()
        job = await self.get(job_id)
        if job.status not in RESUMABLE:
            raise Conflict(f"Job {job.id} is {job.status}; only interrupted, failed or cancelled jobs resume.")
        try:
            row = await self.db.fetchrow(self._sql["resume"], job.id, self.owner, list(RESUMABLE))
        except asyncpg.UniqueViolationError:
            raise Conflict(f"Another {job.kind} job runs on the same target now; wait for it to end.") from None
        if row is None:
            raise Conflict(f"Job {job.id} was resumed by another call just now.")
        return Job.from_row(row)

    # ------------------------------------------------------------------------------- running

    def beat_due(self, ctx: JobContext) -> bool:
        return time.monotonic() - self._beats.get(ctx.job.id, 0.0) >= self.heartbeat_s

    async def heartbeat(self, ctx: JobContext) -> None:
        """Write the job's progress now and read back whether it was cancelled."""
        self._beats[ctx.job.id] = time.monotonic()
        ctx._dirty = False
        cancelled = await self.db.fetchval(
            self._sql["beat"],
            ctx.job.id,
            ctx.done,
            ctx.total,
            json.dumps(ctx.counts),
            json.dumps(ctx.errors),
            ctx.errors_total,
            json.dumps(ctx.state),
            ctx.message,
            self.owner,
        )
        if cancelled:
            ctx.cancel_requested = True

    async def _beat_loop(self, ctx: JobContext) -> None:
        # Heartbeats continue while the work is busy between steps (a long file, a slow page).
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self.heartbeat(ctx)
            except Exception as exc:  # the next beat retries; a missed one only delays a cancel
                log.warning("job_heartbeat_failed", job=ctx.job.id, error=str(exc)[:200])

    async def run(self, job: Job, work: Work, progress: Progress | None = None) -> Job:
        """Run ``work`` for ``job`` (which this process started or claimed) to an end state; the final row."""
        ctx = JobContext(
            job=job,
            jobs=self,
            progress=progress,
            state=dict(job.state),
            counts=dict(job.counts),
            errors=list(job.errors),
            errors_total=job.errors_total,
            done=job.done,
            total=job.total,
        )
        beats = asyncio.create_task(self._beat_loop(ctx), name=f"job-beat-{job.id}")
        status, message = "done", None
        try:
            message = await work(ctx)
        except JobCancelled:
            status, message = "cancelled", "Cancelled on request; resume it to continue."
        except asyncio.CancelledError:
            # The process is stopping: leave the job running so recover() marks it interrupted, but
            # save the last checkpoint first.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.heartbeat(ctx))
            raise
        except Exception as exc:
            log.error("job_failed", job=job.id, kind=job.kind, exc_info=exc)
            status, message = "failed", f"Failed: {_short(str(exc) or type(exc).__name__)}"
        finally:
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats
            self._beats.pop(job.id, None)
        row = await self.db.fetchrow(
            self._sql["finish"],
            job.id,
            status,
            ctx.done,
            ctx.total,
            json.dumps(ctx.counts),
            json.dumps(ctx.errors),
            ctx.errors_total,
            json.dumps(ctx.state),
            _short(message) if message else None,
            self.owner,
        )
        return Job.from_row(row) if row is not None else await self.get(job.id)

    def spawn(self, job: Job, work: Work) -> None:
        """Run ``job`` in the background of this process (see :meth:`wait` and :meth:`close`)."""
        task = asyncio.get_running_loop().create_task(self.run(job, work), name=f"job-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda t: self._tasks.pop(job.id, None))

    async def wait(self, job_id: str, *, timeout_s: float, progress: Progress | None = None) -> Job:
        """Follow a job until it ends or ``timeout_s`` passes; its row then (possibly still running)."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = await self.get(job_id)
            if job.status != "running":
                return job
            if progress is not None:
                with contextlib.suppress(Exception):
                    await progress(float(job.done), None if job.total is None else float(job.total), job.message or "")
            left = deadline - time.monotonic()
            if left <= 0:
                return job
            task = self._tasks.get(job.id)
            if task is not None:
                await asyncio.wait({task}, timeout=min(left, 0.5))
            else:
                await asyncio.sleep(min(left, 0.5))

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop the jobs running in this process; each keeps its checkpoint and is resumable."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)


def _without(row: asyncpg.Record, name: str) -> dict[str, Any]:
    values = dict(row)
    values.pop(name, None)
    return values
