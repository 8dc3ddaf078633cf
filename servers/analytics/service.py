"""The analytics service: every operation of the analytics server, with no MCP in sight.

The catalogue and everything derived (profiles, saved queries, history, charts, predictions,
patterns) live in schema ``analytics``; the data stays in its files. Every DuckDB, pandas,
scikit-learn and statsmodels call runs in a worker thread so the event loop keeps serving. An
engine is built per call over the datasets the statement names, after checking each file's
fingerprint: a changed file is re-inspected and its stored profile dropped. Its DuckDB
connections come from the service's pool, keyed by the datasets and their fingerprints.

Registering, profiling and predicting run as jobs of the shared kit (``common.jobs``): the call
waits up to ``wait_s`` and then answers with the result, or with the job (followed, cancelled and
resumed through ``manage_datasets``). A failure in this process raises the same error the call
would have raised without the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import re
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
import anyio.to_thread
import asyncpg

from common.errors import Conflict, InvalidInput, NotFound, SuiteError, shown
from common.jobs import Job, JobCancelled, JobContext, Jobs, Progress, check_job_id
from common.logging import get_logger
from common.paging import Page, decode_cursor, encode_cursor, fingerprint, page_of, slice_page
from common.retrieval import any_word_tsquery, check_dimension, rrf
from common.rows import model_of
from common.runtime import Deps
from common.safefiles import Roots
from servers.analytics import store
from servers.analytics.engine import ConnectionPool, Engine, Limits, SqlParser
from servers.analytics.models import (
    ChartOut,
    ColumnOut,
    DatasetInfo,
    HistoryEntry,
    PatternOut,
    PatternsOut,
    PredictionOut,
    PredictionSummary,
    ProfileOut,
    QueryOut,
    Registered,
    SavedQuery,
    SavedQueryResult,
)
from servers.analytics.pgfetch import fetch_to_parquet
from servers.analytics.settings import Settings
from servers.analytics.sources import Dataset, Fingerprints, Format, check_name, make_dataset, quote_ident

if TYPE_CHECKING:
    from common.embeddings import Embedder

log = get_logger(__name__)
T = TypeVar("T")
Report = Callable[[int, int | None, str], None]
JOB_KINDS = ("register", "profile", "predict")
# Failures kept for the caller that follows a job in this process; older ones are dropped.
_MAX_FAILURES = 100

PatternKind = Literal["correlations", "outliers", "trend", "change_points", "segments"]
PATTERN_KINDS: tuple[str, ...] = ("correlations", "outliers", "trend", "change_points", "segments")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CATALOGUE_URI = "analytics://datasets"
# Idle DuckDB connections kept between calls: one per dataset set in use, a few for concurrent calls.
POOL_IDLE = 4
# History rows waiting for their write when PostgreSQL is failing; beyond this the oldest are dropped.
_MAX_PENDING_HISTORY = 10_000


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def profile_uri(name: str) -> str:
    return f"analytics://datasets/{name}/profile"


def _info(row: dict[str, Any]) -> DatasetInfo:
    profiled = row["profile_fingerprint"] == row["fingerprint"]
    return model_of(DatasetInfo, row, columns=[ColumnOut(**c) for c in row["columns"]], profiled=profiled)


def _summary(row: dict[str, Any]) -> PredictionSummary:
    return model_of(PredictionSummary, row, predictions=row["n_predicted"])


def _pattern(row: dict[str, Any], score: float | None = None) -> PatternOut:
    return model_of(PatternOut, row, score=score)


def _check_csv_layout(engine: Engine, ds: Dataset) -> None:
    """Refuse a CSV that DuckDB's sniffer could only read by dropping its first lines, header included.

    The sniffer picks the layout most lines agree on and skips the lines before it, so a file
    whose rows have varying column counts would otherwise register as its last few rows.
    """
    from servers.analytics.sources import sql_string

    row = engine.run_trusted(f"SELECT SkipRows, HasHeader FROM sniff_csv({sql_string(str(ds.path))})").rows
    if row and int(str(row[0][0])) > 0 and not row[0][1]:
        raise InvalidInput(
            f"{ds.path.name[:80]} is not well-formed CSV: its rows do not share one column layout (DuckDB could "
            f"only read it by skipping the first {row[0][0]} lines); fix the quoting or column counts"
        )


class AnalyticsService:
    """Register, profile, query, chart, predict and find patterns (see the module docstring)."""

    def __init__(self, deps: Deps, settings: Settings) -> None:
        self.deps = deps
        self.settings = settings
        self.roots = Roots(settings.allowed_roots, "ANALYTICS_ALLOWED_ROOTS")
        self.folder = settings.data_folder()
        self.charts_dir = self.folder / "charts"
        self.extracts_dir = self.folder / "extracts"
        self.parser = SqlParser()
        self.pool = ConnectionPool(POOL_IDLE)
        self.fingerprints = Fingerprints()
        self.jobs = Jobs(deps.db, "analytics", heartbeat_s=settings.heartbeat_s, stale_after_s=settings.job_stale_s)
        self._failures: dict[str, SuiteError] = {}
        # Query history is written after the answer, in call order; a failed write is retried.
        self._history = deps.background.batcher(
            "analytics-history", self._write_history, keep_failed=True, max_pending=_MAX_PENDING_HISTORY
        )

    @classmethod
    @asynccontextmanager
    async def open(cls, deps: Deps, settings: Settings) -> AsyncIterator[AnalyticsService]:
        """The running service; jobs still running at exit keep their checkpoint and can be resumed."""
        check_dimension(deps.embedder, 384, "analytics")
        svc = cls(deps, settings)
        svc.charts_dir.mkdir(parents=True, exist_ok=True)
        svc.extracts_dir.mkdir(parents=True, exist_ok=True)
        await svc.jobs.recover()
        try:
            yield svc
        finally:
            try:
                await svc._history.drain()
            except Exception as exc:  # closing goes on: the rest must still be released
                log.warning("history_not_written", rows=svc._history.pending, error=str(exc)[:200])
            await svc.jobs.close()
            svc.pool.close()
            svc.parser.close()

    # --- helpers -----------------------------------------------------------------------------------

    def _limits(self, max_rows: int | None = None) -> Limits:
        s = self.settings
        return Limits(
            max_rows=max_rows or s.max_rows, timeout_s=s.query_timeout_s, threads=s.threads, memory_limit=s.memory_limit
        )

    def _record(self, row: store.HistoryRow) -> None:
        """Queue a history row; it is written after the answer, and before any read of the history."""
        self._history.add([row])

    async def _write_history(self, rows: list[store.HistoryRow]) -> None:
        await store.add_history(self.deps.db, rows, self.settings.history_keep)

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn)

    async def _fresh(self, row: dict[str, Any]) -> dict[str, Any]:
        """The catalogue row of a dataset whose file is checked unchanged (re-inspected if it changed)."""
        from servers.analytics.sources import inspect

        path = Path(row["path"])
        try:
            # A known file costs one stat, no worse than make_dataset's; only hashing needs a thread.
            fp = self.fingerprints.cached(path) or await self._in_thread(lambda: self.fingerprints.get(path))
        except OSError:
            raise InvalidInput(
                f"the file of dataset {shown(row['name'])} is gone; register it again or remove it"
            ) from None
        if fp == row["fingerprint"]:
            return row
        ds = make_dataset(row["name"], path, row["format"], row["sheet"])

        def look() -> Any:
            engine = Engine([ds], self._limits(), parser=self.parser)
            try:
                return inspect(engine, ds.name)
            finally:
                engine.close()

        info = await self._in_thread(look)
        log.info("dataset_changed", dataset=row["name"])
        cols = [{"name": c.name, "type": c.type} for c in info.columns]
        new = await store.refresh_dataset(
            self.deps.db, row["name"], row["path"], cols, info.row_count, info.byte_size, info.fingerprint
        )
        await self.deps.subscriptions.resource_updated(profile_uri(row["name"]))
        if new is not None:
            self.deps.background.spawn(self._reprofile(row["name"]), name=f"analytics-reprofile-{row['name']}")
        return new or {**row, "fingerprint": info.fingerprint}

    async def _reprofile(self, name: str) -> None:
        """Profile a dataset whose file changed, after the answer that noticed it."""
        try:
            await self.profile(name)
        except SuiteError as exc:
            log.warning("reprofile_failed", dataset=name, error=str(exc)[:200])

    async def _engine_for(self, sql: str, max_rows: int | None = None) -> Engine:
        """An engine over the registered datasets the statement names (a word equal to their name)."""
        words = {w.lower() for w in _WORD.findall(sql)}
        rows = await store.named_datasets(self.deps.db, sorted(words))
        datasets: list[Dataset] = []
        versions: dict[str, str] = {}
        for row in rows:
            row = await self._fresh(row)
            datasets.append(make_dataset(row["name"], Path(row["path"]), row["format"], row["sheet"]))
            versions[row["name"]] = row["fingerprint"]
        return Engine(datasets, self._limits(max_rows), parser=self.parser, pool=self.pool, versions=versions)

    async def _source_sql(self, source: str) -> str:
        """A dataset name becomes ``SELECT *`` of it; anything else is taken as a SELECT."""
        if re.fullmatch(r"[a-z][a-z0-9_]{0,62}", source) and await store.get_dataset(self.deps.db, source):
            return f"SELECT * FROM {quote_ident(source)}"
        return source

    async def _frame(self, source: str) -> tuple[Any, int]:
        sql = await self._source_sql(source)
        engine = await self._engine_for(sql)
        try:
            return await self._in_thread(lambda: engine.frame(sql, self.settings.model_rows))
        finally:
            engine.close()

    async def _dataset_row(self, name: str) -> dict[str, Any]:
        row = await store.get_dataset(self.deps.db, name)
        if row is None:
            raise NotFound(f"no dataset named {name[:63]!r}; list_datasets shows the registered ones")
        return row

    # --- jobs --------------------------------------------------------------------------------------

    async def _job(
        self, kind: str, key: str, params: dict[str, Any], progress: Progress | None, *, join: bool = False
    ) -> Job:
        """Start a job (or, with ``join``, follow the one already running on ``key``) and wait for it."""
        try:
            job = await self.jobs.start(kind, key, params)
        except Conflict:
            live = await self.jobs.live(kind, key) if join else None
            if live is None:
                raise
            job = await self.jobs.get(live)
        else:
            self.jobs.spawn(job, self._work)
        return await self._follow(job.id, progress)

    async def _follow(self, job_id: str, progress: Progress | None) -> Job:
        """The job after at most ``wait_s``; the error of a job that failed in this process is raised."""
        job = await self.jobs.wait(job_id, timeout_s=self.settings.wait_s, progress=progress)
        failure = self._failures.pop(job.id, None)
        if job.status == "failed" and failure is not None:
            raise failure
        if job.status in ("failed", "cancelled", "interrupted"):
            raise Conflict(f"job {job.id} is {job.status}: {job.message or ''}".strip()[:500])
        return job

    async def _work(self, ctx: JobContext) -> str | None:
        works: dict[str, Callable[[JobContext], Awaitable[str]]] = {
            "register": self._register_work,
            "profile": self._profile_work,
            "predict": self._predict_work,
        }
        try:
            return await works[ctx.job.kind](ctx)
        except SuiteError as exc:
            if len(self._failures) >= _MAX_FAILURES:
                self._failures.pop(next(iter(self._failures)))
            self._failures[ctx.job.id] = exc
            raise

    async def _watch(self, ctx: JobContext, work: Callable[[Report], T]) -> T:
        """Run ``work(report)`` in a worker thread, passing its progress to the job; a cancel stops it at
        its next report (the DuckDB statement under way is bounded by the query timeout)."""
        latest: list[tuple[int, int | None, str] | None] = [None]
        stop = threading.Event()

        def report(done: int, total: int | None, message: str) -> None:
            if stop.is_set():
                raise JobCancelled
            latest[0] = (done, total, message)

        task = asyncio.ensure_future(anyio.to_thread.run_sync(lambda: work(report)))
        try:
            while True:
                finished, _ = await asyncio.wait({task}, timeout=0.25)
                news, latest[0] = latest[0], None
                if news is not None:
                    await ctx.step(done=news[0], total=news[1], message=news[2])
                else:
                    await ctx.step()
                if finished:
                    return task.result()
        except asyncio.CancelledError:
            stop.set()  # the process is stopping: the thread ends at its next report, unawaited
            raise
        except BaseException:
            stop.set()
            if not task.done():  # let the thread stop before the job records its end
                with contextlib.suppress(BaseException):
                    await asyncio.shield(task)
            raise

    async def _watch_async(self, ctx: JobContext, work: Awaitable[T]) -> T:
        """Await ``work`` while stepping the job, so that a cancel stops it."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                finished, _ = await asyncio.wait({task}, timeout=0.25)
                if finished:
                    return task.result()
                await ctx.step()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def job_status(self, job_id: str) -> Job:
        await self.jobs.recover()
        return await self.jobs.get(check_job_id(job_id))

    async def cancel_job(self, job_id: str) -> Job:
        return await self.jobs.cancel(check_job_id(job_id))

    async def resume_job(self, job_id: str, progress: Progress | None = None) -> Job:
        """Run an interrupted, failed or cancelled job again from its parameters; the job after ``wait_s``."""
        job = await self.jobs.claim_resume(check_job_id(job_id))
        self.jobs.spawn(job, self._work)
        job = await self.jobs.wait(job.id, timeout_s=self.settings.wait_s, progress=progress)
        self._failures.pop(job.id, None)
        return job

    async def list_jobs(self, *, limit: int, cursor: str | None) -> Page[Job]:
        await self.jobs.recover()
        fp = fingerprint("jobs")
        offset = decode_cursor(cursor, fp).offset
        jobs, total = await self.jobs.find(limit=limit, offset=offset)
        return page_of(jobs, total=total, offset=offset, limit=limit, fp=fp)

    # --- datasets ----------------------------------------------------------------------------------

    async def register(
        self,
        name: str,
        *,
        path: str | None = None,
        connection: str | None = None,
        sql: str | None = None,
        description: str = "",
        format: Format | None = None,
        sheet: str | None = None,
        replace: bool = False,
        progress: Progress | None = None,
    ) -> Registered:
        """Register a file under the allowed roots, or the result of a read-only PostgreSQL query (a job)."""
        from servers.analytics.pgfetch import check_query

        check_name(name)
        if (path is None) == (connection is None):
            raise InvalidInput("give either path (a file) or connection and sql (a PostgreSQL query), not both")
        params: dict[str, Any] = {"name": name, "description": description, "replace": replace}
        if path is not None:
            ds = make_dataset(name, self.roots.resolve(path, kind="file"), format, sheet)
            params.update(path=str(ds.path), format=ds.format, sheet=ds.sheet)
        else:
            assert connection is not None
            if not sql:
                raise InvalidInput("a PostgreSQL dataset needs sql: one read-only SELECT")
            self._connection_url(connection)
            check_query(sql)
            params.update(connection=connection, sql=sql)
        job = await self._job("register", name, params, progress)
        if job.status == "running":
            return Registered(job=job.view())
        row = await self._dataset_row(name)
        return Registered(
            dataset=_info(row), created=bool(job.state.get("created")), sample=job.state.get("sample", [])
        )

    async def _register_work(self, ctx: JobContext) -> str:
        from servers.analytics.sources import inspect

        p = ctx.job.params
        name = str(p["name"])
        extract: Path | None = None
        if p.get("path"):
            ds = make_dataset(name, Path(p["path"]), p.get("format"), p.get("sheet"))
            kind, source, query = "file", str(ds.path), None
        else:
            await ctx.step(message=f"running the query on {p['connection']}")
            # Named after the job, so a resumed registration overwrites what an interrupted one left.
            extract = self.extracts_dir / f"{name}-{ctx.job.id[:12]}.parquet"
            try:
                await self._watch_async(ctx, self._fetch_postgres(p["connection"], p["sql"], extract))
            except BaseException:
                extract.unlink(missing_ok=True)
                raise
            ds = make_dataset(name, extract, "parquet")
            kind, source, query = "postgres", str(p["connection"]), str(p["sql"])

        def look(report: Report) -> Any:
            engine = Engine([ds], self._limits(), parser=self.parser)
            try:
                report(0, None, "reading the schema and counting rows")
                if ds.format in ("csv", "tsv"):
                    _check_csv_layout(engine, ds)
                return inspect(engine, name)
            finally:
                engine.close()

        try:
            info = await self._watch(ctx, look)
            row = {
                "name": name,
                "description": p.get("description", ""),
                "source_kind": kind,
                "source": source,
                "source_query": query,
                "path": str(ds.path),
                "format": ds.format,
                "sheet": ds.sheet,
                "columns": [{"name": c.name, "type": c.type} for c in info.columns],
                "row_count": info.row_count,
                "byte_size": info.byte_size,
                "fingerprint": info.fingerprint,
            }

            async def write(conn: asyncpg.Connection) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
                old = await store.old_path(conn, name)
                return await store.upsert_dataset(conn, row, bool(p.get("replace"))), old

            saved, old = await self.deps.db.run_in_transaction(write)
        except BaseException:
            if extract is not None:
                extract.unlink(missing_ok=True)
            raise
        if saved is None:
            if extract is not None:
                extract.unlink(missing_ok=True)
            raise Conflict(
                f"a dataset named {shown(name)} exists; pass replace=true to replace it or choose another name"
            )
        if old is not None and old[1] == "postgres" and old[0] != str(ds.path):
            await anyio.Path(old[0]).unlink(missing_ok=True)
        ctx.state = {"created": bool(saved["created"]), "sample": info.sample[:5]}
        await self.deps.subscriptions.resource_updated(CATALOGUE_URI)
        await self.deps.events.publish("dataset.registered", {"name": name})
        return f"registered {name}: {info.row_count} rows"

    def _connection_url(self, connection: str) -> str:
        urls = self.settings.connections
        if connection not in urls:
            known = ", ".join(sorted(urls)[:10]) or "none (set ANALYTICS_CONNECTIONS)"
            raise NotFound(f"no connection named {connection[:40]!r}; configured: {known}")
        return urls[connection].get_secret_value()

    async def _fetch_postgres(self, connection: str, sql: str, target: Path) -> Path:
        """Run one read-only SELECT on a configured connection and keep its rows as Parquet."""
        return await fetch_to_parquet(
            self._connection_url(connection),
            connection,
            sql,
            target,
            max_rows=self.settings.fetch_max_rows,
            timeout_s=self.settings.fetch_timeout_s,
        )

    async def list_datasets(self, *, limit: int, cursor: str | None) -> Page[DatasetInfo]:
        """The catalogue by name, a page at a time."""
        fp = fingerprint("list_datasets")
        offset = decode_cursor(cursor, fp).offset
        rows, total = await store.list_datasets(self.deps.db, limit, offset)
        return page_of([_info(r) for r in rows], total=total, offset=offset, limit=limit, fp=fp)

    async def dataset(self, name: str) -> DatasetInfo:
        """One dataset's catalogue entry, its file checked for changes."""
        return _info(await self._fresh(await self._dataset_row(name)))

    async def remove(self, name: str) -> bool:
        """Forget a dataset (a fetched extract is deleted; a registered file is left alone)."""
        gone = await self.deps.db.run_in_transaction(lambda conn: store.delete_dataset(conn, name))
        if gone is None:
            raise NotFound(f"no dataset named {name[:63]!r}; nothing was removed")
        if gone[1] == "postgres":
            await anyio.Path(gone[0]).unlink(missing_ok=True)
        await self.deps.subscriptions.resource_updated(CATALOGUE_URI)
        return True

    async def profile(
        self,
        name: str,
        *,
        columns: list[str] | None = None,
        refresh: bool = False,
        progress: Progress | None = None,
    ) -> ProfileOut:
        """The stored profile when it matches the file, else a fresh one: of every column as a job (and
        stored), of some ``columns`` right away (not stored)."""
        row = await self._fresh(await self._dataset_row(name))
        if columns:
            known = {c["name"] for c in row["columns"]}
            unknown = [c for c in columns if c not in known]
            if unknown:
                raise InvalidInput(
                    f"unknown columns {[c[:40] for c in unknown[:5]]}; the dataset has {sorted(known)[:30]}"
                )
        if not refresh:
            stored, fp = await store.get_profile(self.deps.db, name)
            if stored is not None and fp == row["fingerprint"]:
                cols = [c for c in stored["columns"] if not columns or c["name"] in columns]
                return ProfileOut(**{**stored, "columns": cols}, cached=True)
        if columns:
            result = await self._in_thread(lambda: self._compute_profile(row, columns, None))
            return ProfileOut(**result, cached=False)
        job = await self._job("profile", name, {"name": name}, progress, join=True)
        if job.status == "running":
            return ProfileOut(dataset=name, job=job.view())
        stored, fp = await store.get_profile(self.deps.db, name)
        if stored is None or fp != job.state.get("fingerprint"):
            raise Conflict(f"the file of {shown(name)} changed while it was profiled; profile it again")
        return ProfileOut(**stored, cached=False)

    def _compute_profile(self, row: dict[str, Any], columns: list[str] | None, report: Report | None) -> dict[str, Any]:
        from servers.analytics.profile import profile as compute

        name = row["name"]
        ds = make_dataset(name, Path(row["path"]), row["format"], row["sheet"])
        engine = Engine([ds], self._limits(), parser=self.parser, pool=self.pool, versions={name: row["fingerprint"]})
        try:
            return dataclasses.asdict(compute(engine, name, columns=columns, report=report))
        finally:
            engine.close()

    async def _profile_work(self, ctx: JobContext) -> str:
        name = str(ctx.job.params["name"])
        row = await self._fresh(await self._dataset_row(name))
        result = await self._watch(ctx, lambda report: self._compute_profile(row, None, report))
        await store.set_profile(self.deps.db, name, result, row["fingerprint"])
        ctx.state = {"fingerprint": row["fingerprint"]}
        await self.deps.subscriptions.resource_updated(profile_uri(name))
        return f"profiled {len(result['columns'])} columns of {result['rows']} rows"

    # --- queries -----------------------------------------------------------------------------------

    async def query(
        self, sql: str | None = None, *, saved: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> QueryOut:
        """One checked SELECT (or a saved query), a page of at most ``max_rows`` rows; recorded in the history."""
        if (sql is None) == (saved is None):
            raise InvalidInput("give either sql or saved (the name of a saved query)")
        if saved is not None:
            found = await store.get_query(self.deps.db, saved)
            if found is None:
                raise NotFound(f"no saved query named {saved[:100]!r}; manage_saved_query action=list shows them")
            sql = found["sql"]
        assert sql is not None
        size = min(limit or self.settings.max_rows, self.settings.max_rows)
        fp = fingerprint("query_data", sql, size)
        offset = decode_cursor(cursor, fp).offset
        started = anyio.current_time()
        try:
            engine = await self._engine_for(sql)
            try:
                result = await self._in_thread(lambda: engine.query(sql, limit=size, offset=offset))
            finally:
                engine.close()
        except SuiteError as exc:
            ms = int((anyio.current_time() - started) * 1000)
            self._record(store.HistoryRow(sql, saved, False, str(exc)[:500], None, ms, _now()))
            raise
        self._record(store.HistoryRow(sql, saved, True, None, result.total_rows, result.elapsed_ms, _now()))
        next_cursor = encode_cursor(fp, offset=result.next_offset) if result.next_offset is not None else None
        return QueryOut(
            columns=[ColumnOut(name=c.name, type=c.type) for c in result.columns],
            rows=result.rows,
            total_rows=result.total_rows,
            truncated=result.truncated,
            next_cursor=next_cursor,
            notes=result.notes,
        )

    async def saved_query(
        self,
        action: Literal["save", "get", "list", "delete"],
        *,
        name: str | None = None,
        sql: str | None = None,
        description: str = "",
        limit: int = 20,
        cursor: str | None = None,
    ) -> SavedQueryResult:
        """Save (checked first), get, list or delete named queries."""
        db = self.deps.db
        if action == "list":
            fp = fingerprint("saved_queries")
            offset = decode_cursor(cursor, fp).offset
            rows, total = await store.list_queries(db, limit, offset)
            page = page_of([SavedQuery(**r) for r in rows], total=total, offset=offset, limit=limit, fp=fp)
            return SavedQueryResult(
                items=page.items, total=page.total, truncated=page.truncated, next_cursor=page.next_cursor
            )
        if not name:
            raise InvalidInput(f"action {action} needs name")
        if action == "save":
            if not sql:
                raise InvalidInput("action save needs sql")
            engine = await self._engine_for(sql)
            try:
                await self._in_thread(lambda: engine.check(sql))
            finally:
                engine.close()
            row = await store.save_query(db, name, sql, description)
            return SavedQueryResult(query=SavedQuery(**row))
        if action == "get":
            found = await store.get_query(db, name)
            if found is None:
                raise NotFound(f"no saved query named {name[:100]!r}")
            return SavedQueryResult(query=SavedQuery(**found))
        if action == "delete":
            if not await store.delete_query(db, name):
                raise NotFound(f"no saved query named {name[:100]!r}; nothing was deleted")
            return SavedQueryResult(deleted=True)
        raise InvalidInput("action must be save, get, list or delete")

    async def history(self, *, limit: int, cursor: str | None) -> Page[HistoryEntry]:
        """Past queries, newest first, with their timings and outcome."""
        fp = fingerprint("query_history")
        offset = decode_cursor(cursor, fp).offset
        await self._history.drain()
        rows, total = await store.list_history(self.deps.db, limit, offset)
        return page_of([HistoryEntry(**r) for r in rows], total=total, offset=offset, limit=limit, fp=fp)

    # --- charts ------------------------------------------------------------------------------------

    async def chart(self, source: str, spec: dict[str, Any]) -> ChartOut:
        """Render ``spec`` (see charts.ChartSpec) over a dataset or SELECT to PNG and SVG; stored by hash."""
        from servers.analytics import charts

        try:
            chart_spec = charts.ChartSpec(**spec)
        except TypeError as exc:
            raise InvalidInput(f"bad chart spec: {str(exc)[:200]}") from None
        sql = await self._source_sql(source)
        engine = await self._engine_for(sql, max_rows=charts.MAX_POINTS)

        def run() -> Any:
            try:
                table = engine.query(sql, limit=charts.MAX_POINTS)
            finally:
                engine.close()
            return charts.render(chart_spec, table, self.charts_dir), table

        chart, _ = await self._in_thread(run)
        label = source[:2000]
        await store.add_chart(
            self.deps.db,
            {
                "id": chart.id,
                "source": label,
                "spec": spec,
                "png_path": chart.png_path,
                "svg_path": chart.svg_path,
                "spec_path": chart.spec_path,
                "description": chart.description,
            },
        )
        return ChartOut(
            png_path=chart.png_path,
            svg_path=chart.svg_path,
            spec=dataclasses.asdict(chart_spec),
            description=chart.description,
            truncated=chart.truncated,
        )

    # --- predictions -------------------------------------------------------------------------------

    async def predict(
        self,
        source: str,
        target: str,
        *,
        task: Literal["forecast", "auto", "regression", "classification"] = "auto",
        time_column: str | None = None,
        horizon: int = 12,
        season_length: int | None = None,
        level: float = 0.95,
        features: list[str] | None = None,
        model: Literal["linear", "forest"] = "linear",
        test_size: float = 0.25,
        seed: int = 0,
        limit: int = 50,
        progress: Progress | None = None,
    ) -> PredictionOut:
        """Forecast a series, or fit and score a model on a held-out split, as a job; the prediction is stored."""
        if task == "forecast" and not time_column:
            raise InvalidInput("a forecast needs time_column (the dates or step numbers)")
        params = {
            "source": source,
            "target": target,
            "task": task,
            "time_column": time_column,
            "horizon": horizon,
            "season_length": season_length,
            "level": level,
            "features": features,
            "model": model,
            "test_size": test_size,
            "seed": seed,
        }
        job = await self._job("predict", uuid.uuid4().hex, params, progress)
        if job.status == "running":
            return PredictionOut(job=job.view())
        return await self.get_prediction(int(job.state["prediction_id"]), limit=limit, cursor=None)

    async def _predict_work(self, ctx: JobContext) -> str:
        from servers.analytics import predict as p

        a = ctx.job.params
        await ctx.step(message="loading the data")
        frame, total = await self._frame(a["source"])

        def run(report: Report) -> Any:
            report(0, None, f"fitting on {len(frame)} rows")
            if a["task"] == "forecast":
                return p.forecast(
                    frame,
                    a["time_column"],
                    a["target"],
                    a["horizon"],
                    season_length=a["season_length"],
                    level=a["level"],
                )
            return p.fit_supervised(
                frame,
                a["target"],
                a["features"],
                task=a["task"],
                model=a["model"],
                test_size=a["test_size"],
                seed=a["seed"],
            )

        result = await self._watch(ctx, run)
        if total > len(frame):
            result.notes.append(f"fitted on the first {len(frame)} of {total} rows (ANALYTICS_MODEL_ROWS)")
        added = await store.add_prediction(self.deps.db, str(a["source"])[:2000], result.to_dict())
        ctx.state = {"prediction_id": int(added["id"])}
        return f"prediction {added['id']} stored"

    async def get_prediction(self, pid: int, *, limit: int, cursor: str | None) -> PredictionOut:
        """A stored prediction and a page of its predicted rows."""
        row = await store.get_prediction(self.deps.db, pid)
        if row is None:
            raise NotFound(f"no prediction {pid}; list_predictions shows the stored ones")
        page = slice_page(row["predicted"], cursor=cursor, limit=limit, fp=fingerprint("prediction", pid))
        return PredictionOut(
            prediction=_summary(row),
            predicted=page.items,
            total=page.total,
            truncated=page.truncated,
            next_cursor=page.next_cursor,
        )

    async def list_predictions(self, *, source: str | None, limit: int, cursor: str | None) -> Page[PredictionSummary]:
        """Stored predictions, newest first."""
        fp = fingerprint("list_predictions", source)
        offset = decode_cursor(cursor, fp).offset
        rows, total = await store.list_predictions(self.deps.db, source, limit, offset)
        return page_of([_summary(r) for r in rows], total=total, offset=offset, limit=limit, fp=fp)

    async def rescore(self, pid: int, actuals: dict[str, Any] | list[Any]) -> PredictionSummary:
        """Score a stored prediction against actual outcomes; the scores are stored with it."""
        from servers.analytics import predict as p

        row = await store.get_prediction(self.deps.db, pid)
        if row is None:
            raise NotFound(f"no prediction {pid}; list_predictions shows the stored ones")
        record = p.Prediction.from_dict(row)
        result = await self._in_thread(lambda: p.rescore(record, actuals))
        await store.set_rescore(self.deps.db, pid, result)
        row = await store.get_prediction(self.deps.db, pid)
        assert row is not None
        return _summary(row)

    # --- patterns ----------------------------------------------------------------------------------

    async def find_patterns(
        self,
        source: str,
        *,
        kinds: Sequence[str] = ("correlations", "outliers"),
        columns: list[str] | None = None,
        time_column: str | None = None,
        value_column: str | None = None,
        period: int | None = None,
        limit: int = 20,
    ) -> PatternsOut:
        """Detect patterns of the given kinds, store them with their evidence and return them."""
        from servers.analytics import patterns as pt
        from servers.analytics.predict import frame_fingerprint

        bad = [k for k in kinds if k not in PATTERN_KINDS]
        if bad or not kinds:
            raise InvalidInput(f"kinds must be among {', '.join(PATTERN_KINDS)}")
        timed = {"trend", "change_points"} & set(kinds)
        if timed and not (time_column and value_column):
            raise InvalidInput(f"{', '.join(sorted(timed))} need time_column and value_column")
        frame, total = await self._frame(source)
        missing = [c for c in [*(columns or []), time_column, value_column] if c and c not in frame.columns]
        if missing:
            raise InvalidInput(
                f"unknown columns {[c[:40] for c in missing[:5]]}; the data has {list(frame.columns)[:30]}"
            )

        def run() -> tuple[list[dict[str, Any]], str]:
            found: list[Any] = []
            for kind in kinds:
                if kind == "correlations":
                    found += pt.correlations(frame, columns)
                elif kind == "outliers":
                    found += pt.outliers(frame, columns)
                elif kind == "trend":
                    assert time_column
                    assert value_column
                    found += pt.trend_and_seasonality(frame, time_column, value_column, period=period)
                elif kind == "change_points":
                    assert time_column
                    assert value_column
                    found += pt.change_points(frame, time_column, value_column)
                elif kind == "segments":
                    found.append(pt.segments(frame, columns))
            return [f.to_dict() for f in found], frame_fingerprint(frame)

        found, fp = await self._in_thread(run)
        notes = [f"searched the first {len(frame)} of {total} rows"] if total > len(frame) else []
        if not found:
            return PatternsOut(items=[], total=0, truncated=False, notes=[*notes, "no pattern found"])
        embedder = self.deps.embedder
        vectors = await embedder.embed([f["description"] for f in found])
        label = source[:2000]

        async def write(conn: asyncpg.Connection) -> list[int]:
            return [
                await store.add_pattern(conn, label, fp, f, v, embedder.model_name)
                for f, v in zip(found, vectors, strict=True)
            ]

        ids = await self.deps.db.run_in_transaction(write)
        rows = await store.patterns_by_id(self.deps.db, ids)
        items = [_pattern(rows[i]) for i in ids if i in rows]
        return PatternsOut(items=items[:limit], total=len(items), truncated=len(items) > limit, notes=notes)

    async def reembed_step(self, embedder: Embedder, limit: int) -> int:
        """One step of a switch of the store's model (``mcp-suite reembed``): re-embed at most ``limit``
        patterns not yet embedded by ``embedder``'s model; how many it picked (0: none left)."""
        rows = await store.other_model_patterns(self.deps.db, embedder.model_name, limit)
        if rows:
            vectors = await embedder.embed([r["description"] for r in rows])
            updates = [(r["id"], v) for r, v in zip(rows, vectors, strict=True)]
            await store.set_pattern_vectors(self.deps.db, updates, embedder.model_name)
        return len(rows)

    async def search_patterns(self, query: str, *, source: str | None = None, limit: int = 10) -> PatternsOut:
        """Stored patterns by meaning and keywords (reciprocal rank fusion), best first."""
        db = self.deps.db
        depth = max(limit * 4, 40)
        vector = await self.deps.embedder.embed_one(query)
        by_vector = await store.patterns_by_vector(db, vector, depth, source, self.deps.embedder.model_name)
        by_words = await store.patterns_by_words(db, any_word_tsquery(query), depth, source)
        fused = sorted(rrf([by_vector, by_words]).items(), key=lambda kv: (-kv[1], kv[0]))
        rows = await store.patterns_by_id(db, [i for i, _ in fused[:limit]])
        items = [_pattern(rows[i], round(s, 5)) for i, s in fused[:limit] if i in rows]
        return PatternsOut(items=items, total=len(fused), truncated=len(fused) > limit)
