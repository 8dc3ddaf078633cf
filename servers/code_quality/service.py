"""The code_quality service: analyse repositories as jobs and answer questions about the runs.

A run is written once, when its analysis ends, in one transaction with its findings, file metrics and
the status changes it implies (findings gone from an analysed file become ``fixed``, ones that return
are reopened, a triage follows a finding whose fingerprint changed because the code near it moved).
One live analysis per folder (the jobs kit's unique key): a second caller follows the running job.
The findings' search vectors are made in the background once the run is recorded and its job done.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from common.errors import Conflict, InvalidInput, NotFound
from common.jobs import Job, JobContext, Jobs, Progress, check_job_id
from common.logging import get_logger
from common.paging import Page, decode_cursor, fingerprint, page_of, slice_page
from common.retrieval import any_word_tsquery, rrf
from common.rows import model_of
from common.runtime import Deps
from common.safefiles import Roots
from common.workers import Periodic
from servers.code_quality import snippets, store
from servers.code_quality.advisories import OsvApi, OsvExport, check_advisories, dependency_files
from servers.code_quality.analyzers import build_analyzers
from servers.code_quality.analyzers.base import Analyzer
from servers.code_quality.analyzers.ruff import project_config_text
from servers.code_quality.compare import check_fixed, compare
from servers.code_quality.coverage import CoverageData, check_report, load_for_run
from servers.code_quality.duplication import DuplicateBlock, DuplicationReport
from servers.code_quality.files import changed_since, list_files
from servers.code_quality.gate import GateThresholds, evaluate_gate
from servers.code_quality.metrics import RunMetrics
from servers.code_quality.models import (
    AnalyzeResult,
    CheckedFinding,
    CheckResult,
    CompareResult,
    DependencyReport,
    FileMetricView,
    FindingView,
    FixCheckResult,
    GateCheckView,
    GateResult,
    MetricsResult,
    OutcomeView,
    RunSummary,
    SkipView,
    StatusResult,
    SuggestionView,
    Trend,
    TrendPoint,
)
from servers.code_quality.pipeline import TreeReport, analyze_tree
from servers.code_quality.records import SEVERITIES, AnalyzerOutcome, FileMetrics, Finding, FunctionMetrics, clip
from servers.code_quality.rows import PgResultCache, finding_from_row, finding_view, run_gaps, search_text, summary_of
from servers.code_quality.runner import AnalysisResult, run_analysis
from servers.code_quality.settings import Settings
from servers.code_quality.suggest import suggest_refactorings

if TYPE_CHECKING:
    from common.embeddings import Embedder

log = get_logger(__name__)

KIND = "analyze"
SCHEMA = "code_quality"
MAX_SKIPPED_RESOURCE = 5_000
EMBED_BATCH = 64
#: How often the background embedder looks for texts a failed pass or a stopped process left unembedded.
EMBED_RETRY_S = 600.0
SEARCH_DEPTH = 100
MAX_TREND_RUNS = 200
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
TREND_METRICS = (
    "findings",
    "max_complexity",
    "mean_complexity",
    "mean_maintainability",
    "duplication_share",
    "lines",
    "code_lines",
    "files",
    "functions",
    "new_findings",
    "fixed_findings",
    "coverage",
)
SETTABLE = ("open", "accepted", "false_positive")
#: Characters of a file's uncovered line ranges shown by code_metrics.
MAX_UNCOVERED_SHOWN = 200
#: Findings and functions a check of code given as text returns, and its limit per analyzer invocation.
MAX_CHECK_FINDINGS = 100
MAX_CHECK_FUNCTIONS = 20
CHECK_TIMEOUT_S = 60.0
#: Allocations between two collections of the youngest generation while the service is open.
GC_THRESHOLD = 50_000


def run_uri(run_id: str) -> str:
    return f"code-quality://runs/{run_id}"


def _check_run_id(run_id: str) -> str:
    if not _UUID.match(run_id):
        raise InvalidInput("run_id is not a run id (a UUID from analyze_code or a run summary).")
    return run_id.lower()


def _file_view(row: Mapping[str, Any]) -> FileMetricView:
    covered, coverable, uncovered = row["covered_lines"], row["coverable_lines"], row["uncovered"]
    return model_of(
        FileMetricView,
        row,
        coverage=round(covered / coverable, 4) if coverable else None,
        uncovered=None if uncovered is None else clip(uncovered, MAX_UNCOVERED_SHOWN),
    )


class CodeQualityService:
    """Analyse, triage, compare, measure and gate (see the module docstring)."""

    def __init__(self, deps: Deps, settings: Settings) -> None:
        self.deps = deps
        self.settings = settings
        self.roots = Roots(settings.allowed_roots, "CODE_QUALITY_ALLOWED_ROOTS")
        self.jobs = Jobs(deps.db, SCHEMA, heartbeat_s=settings.heartbeat_s, stale_after_s=settings.job_stale_s)
        self.cache = PgResultCache(deps)
        #: Projects whose finding texts a run added and the embedder has not yet embedded.
        self._to_embed: set[int] = set()
        self._embedding = asyncio.Lock()
        # Each check runs its own analyzer processes: more checks at once than cores would only queue on them.
        self._checks = asyncio.Semaphore(settings.workers or os.cpu_count() or 1)
        #: Woken by each saved run; its first pass and the periodic ones also embed what a stopped process left.
        self.embedder = Periodic("code-quality-embed", self.embed_pending, interval_s=EMBED_RETRY_S, run_first=True)

    @classmethod
    @asynccontextmanager
    async def open(cls, deps: Deps, settings: Settings) -> AsyncIterator[CodeQualityService]:
        """The running service; analyses still running at exit keep their checkpoint and can be resumed."""
        svc = cls(deps, settings)
        await svc.jobs.recover()
        # A run holds hundreds of thousands of records until it is saved: at the default threshold (700
        # allocations) the collector walks them again and again while they are made.
        threshold = gc.get_threshold()
        gc.set_threshold(max(threshold[0], GC_THRESHOLD), *threshold[1:])
        try:
            async with (
                Periodic("code-quality-cache-prune", svc.prune_cache, interval_s=3_600, run_first=True),
                svc.embedder,
            ):
                yield svc
        finally:
            gc.set_threshold(*threshold)
            await svc.jobs.close()

    async def prune_cache(self) -> int:
        """Drop cached analyzer results older than the setting; a dropped one only costs a re-analysis."""
        return await store.prune_cache(self.deps.db, self.settings.cache_max_age_days)

    # ------------------------------------------------------------------------------ analysis jobs

    def _analyzers(
        self, names: Sequence[str], root: Path | None = None, timeout_s: float | None = None
    ) -> list[Analyzer]:
        timeout = {"timeout_s": timeout_s or self.settings.analyzer_timeout_s}
        options: dict[str, dict[str, Any]] = {n: dict(timeout) for n in names}
        if "semgrep" in options:
            options["semgrep"]["executable"] = self.settings.semgrep_executable
        if "ruff" in options:
            options["ruff"].update(project_root=root, isolated=self.settings.ruff_isolated)
        return build_analyzers(names, options)

    def resolve_root(self, path: str) -> Path:
        """The real folder ``path`` names, inside an allowed root (links resolved and checked)."""
        return self.roots.resolve(path, kind="dir")

    async def analyze(
        self,
        path: str,
        *,
        analyzers: Sequence[str] | None = None,
        changed_since_ref: str | None = None,
        exclude: Sequence[str] = (),
        coverage: str | None = None,
        wait_s: float | None = None,
        progress: Progress | None = None,
    ) -> AnalyzeResult:
        """Start (or join) the analysis of a folder and wait a bounded time for it; ``coverage`` names the
        test coverage report to read (default: the usual report files at the folder's root)."""
        root = self.resolve_root(path)
        names = list(analyzers or self.settings.analyzers)
        self._analyzers(names)  # unknown names are refused before anything is recorded
        if changed_since_ref is not None:
            await asyncio.to_thread(changed_since, root, changed_since_ref)
        report = await asyncio.to_thread(check_report, self.roots, coverage) if coverage else None
        params = {
            "root": str(root),
            "analyzers": names,
            "changed_since": changed_since_ref,
            "exclude": list(exclude),
            "coverage": str(report) if report else None,
        }
        joined = False
        try:
            job = await self.jobs.start(KIND, str(root), params)
        except Conflict:
            live = await store.live_job(self.deps.db, KIND, str(root))
            if live is None:  # it ended between the two statements
                raise
            job, joined = await self.jobs.get(live), True
        else:
            self.jobs.spawn(job, self._work)
        return await self._follow(job.id, wait_s, progress, joined)

    async def _follow(
        self, job_id: str, wait_s: float | None, progress: Progress | None, joined: bool
    ) -> AnalyzeResult:
        timeout = self.settings.wait_s if wait_s is None else wait_s
        job = await self.jobs.wait(job_id, timeout_s=timeout, progress=progress)
        return await self._result(job, joined)

    async def _result(self, job: Job, joined: bool = False) -> AnalyzeResult:
        run = None
        run_id = job.state.get("run_id")
        if run_id:
            row = await store.get_run(self.deps.db, run_id)
            run = summary_of(row) if row else None
        return AnalyzeResult(job=job.view(), run=run, joined=joined)

    async def job_status(self, job_id: str) -> AnalyzeResult:
        await self.jobs.recover()
        return await self._result(await self.jobs.get(check_job_id(job_id)))

    async def cancel(self, job_id: str) -> AnalyzeResult:
        return await self._result(await self.jobs.cancel(check_job_id(job_id)))

    async def resume(
        self, job_id: str, *, wait_s: float | None = None, progress: Progress | None = None
    ) -> AnalyzeResult:
        job = await self.jobs.claim_resume(check_job_id(job_id))
        if job.kind != KIND:
            raise InvalidInput("that job is not an analysis.")
        self.jobs.spawn(job, self._work)
        return await self._follow(job.id, wait_s, progress, False)

    async def list_jobs(self, *, status: str | None, limit: int, cursor: str | None) -> AnalyzeResult:
        await self.jobs.recover()
        fp = fingerprint("jobs", status)
        offset = decode_cursor(cursor, fp).offset
        jobs, total = await self.jobs.find(kind=KIND, status=status, limit=limit, offset=offset)
        return AnalyzeResult(jobs=page_of([j.view(5) for j in jobs], total=total, offset=offset, limit=limit, fp=fp))

    async def _work(self, ctx: JobContext) -> str:
        params = ctx.job.params
        existing = await store.run_for_job(self.deps.db, ctx.job.id)
        if existing is not None:  # the run was saved before the process stopped
            ctx.state = {"run_id": existing}
            return f"Run {existing} was already recorded."
        root = Path(params["root"])

        async def step(done: int, total: int, message: str) -> None:
            await ctx.step(done=done, total=total, message=message)

        analysis = asyncio.ensure_future(
            analyze_tree(
                root,
                self._analyzers(params["analyzers"], root),
                cache=self.cache,
                progress=step,
                exclude=params.get("exclude") or (),
                max_bytes=self.settings.max_file_bytes,
                max_files=self.settings.max_files,
                changed_since_ref=params.get("changed_since"),
                workers=self.settings.workers or None,
                stamps_file=self.settings.stamps_file(root),
            )
        )
        try:
            # A cancel is read by the heartbeat; this stops analyzers that report no progress meanwhile.
            while not analysis.done():
                await asyncio.wait({analysis}, timeout=0.5)
                if ctx.cancel_requested and not analysis.done():
                    analysis.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await analysis
                    await ctx.step()
        finally:
            if not analysis.done():  # this process is stopping: no analyzer may outlive the job
                analysis.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await analysis
        report = analysis.result()
        named = params.get("coverage")
        coverage = await asyncio.to_thread(
            load_for_run, self.roots, root, Path(named) if named else None, report.listing.files
        )
        if coverage[1] and coverage[1].get("error"):
            ctx.error("coverage", coverage[1]["error"])
        for skipped in report.listing.skipped:
            ctx.error(skipped.path, f"skipped: {skipped.reason}{' (' + skipped.detail + ')' if skipped.detail else ''}")
        for outcome in report.result.outcomes:
            if outcome.status != "ok":
                ctx.error(outcome.analyzer, f"{outcome.status}: {outcome.reason}")
        run_id, project_id = await self._save(ctx.job.id, root, params, report, coverage)
        ctx.state = {"run_id": run_id}
        ctx.count("findings", len(report.result.findings))
        ctx.count("files", len(report.listing.files))
        ctx.count("skipped", len(report.listing.skipped))
        # The run is complete without vectors (search falls back to keywords), so the job need not wait.
        self._to_embed.add(project_id)
        self.embedder.wake()
        partial = " (partial: see the analyzers' outcomes)" if report.result.partial else ""
        return f"Run {run_id}: {len(report.result.findings)} findings in {len(report.listing.files)} files{partial}."

    async def _save(
        self,
        job_id: str,
        root: Path,
        params: Mapping[str, Any],
        report: TreeReport,
        coverage: tuple[CoverageData | None, dict[str, Any] | None] = (None, None),
    ) -> tuple[str, int]:
        """Record the run; (its id, its project's id)."""
        result = report.result
        findings = result.findings
        gaps = sorted(report.gaps())
        metrics = report.metrics.to_dict()
        tests, coverage_info = coverage
        files_covered = tests.files if tests else {}
        if tests is not None:
            metrics.update(
                coverage=tests.share, covered_lines=tests.covered_lines, coverable_lines=tests.coverable_lines
            )
        duplication = asdict(report.duplication)

        async def write(conn: asyncpg.Connection) -> tuple[str, int]:
            project_id = await store.upsert_project(conn, str(root))
            await store.lock_project(conn, project_id)
            done = await store.run_for_job(conn, job_id)
            if done is not None:
                return done, project_id
            seq = await store.next_seq(conn, project_id)
            previous = await store.latest_run(conn, project_id)
            diff = None
            if previous is not None:
                before = [finding_from_row(r) for r in await store.run_findings(conn, previous["id"])]
                diff = compare(before, findings, set(map(tuple, gaps)))  # type: ignore[arg-type]
            metrics["new_findings"] = len(diff.new) if diff else len(findings)
            metrics["fixed_findings"] = len(diff.fixed) if diff else 0
            git = report.git
            run_id = await store.insert_run(
                conn,
                (
                    project_id,
                    job_id,
                    seq,
                    result.partial,
                    git.commit if git else None,
                    git.branch if git else None,
                    git.dirty if git else None,
                    params.get("changed_since"),
                    list(params["analyzers"]),
                    json.dumps([o.to_dict() for o in result.outcomes]),
                    json.dumps(
                        [{"path": s.path, "reason": s.reason, "detail": s.detail} for s in report.listing.skipped]
                    ),
                    json.dumps(gaps),
                    json.dumps(metrics),
                    json.dumps([fn.to_row() for fn in result.functions]),
                    json.dumps(duplication),
                    json.dumps(coverage_info) if coverage_info else None,
                ),
            )
            await store.insert_findings(
                conn,
                run_id,
                [
                    (
                        f.fingerprint,
                        f.analyzer,
                        f.rule_id,
                        f.severity,
                        f.category,
                        f.path,
                        f.line,
                        f.end_line,
                        f.column,
                        f.message,
                        f.context,
                        f.symbol,
                        f.signature,
                        f.anchor,
                    )
                    for f in findings
                ],
            )
            await store.insert_metrics(
                conn,
                run_id,
                [
                    (
                        m.path,
                        m.lines,
                        m.code_lines,
                        m.functions,
                        m.max_complexity,
                        m.mean_complexity,
                        m.maintainability,
                        *(
                            (c.covered_lines, c.coverable_lines, c.covered, c.uncovered)
                            if (c := files_covered.get(m.path))
                            else (None, None, None, None)
                        ),
                    )
                    for m in result.file_metrics.values()
                ],
            )
            if diff is not None:
                await store.carry_status(conn, project_id, diff.moved)
                await store.mark_fixed(conn, project_id, [f.fingerprint for f in diff.fixed], f"gone in run {seq}")
            await store.reopen(conn, project_id, [f.fingerprint for f in findings], f"reported again in run {seq}")
            await store.add_texts(conn, project_id, {f.fingerprint: search_text(f) for f in findings})
            return run_id, project_id

        run_id, project_id = await self.deps.db.run_in_transaction(write)
        await self.deps.subscriptions.resource_updated(run_uri(run_id))
        return run_id, project_id

    async def embed_pending(self) -> None:
        """Embed the finding texts of the projects recent runs added to, and every text not yet embedded
        (one pass of :attr:`embedder`); returns once all of them are embedded, or raises and keeps the
        project queued."""
        async with self._embedding:
            embedder = self.deps.embedder
            self._to_embed |= await store.unembedded_projects(self.deps.db)
            while self._to_embed:
                project_id = min(self._to_embed)
                while batch := await store.unembedded(self.deps.db, project_id, EMBED_BATCH):
                    vectors = await embedder.embed([text for _, text in batch])
                    await store.fill_embeddings(
                        self.deps.db, project_id, [fp for fp, _ in batch], vectors, embedder.model_name
                    )
                self._to_embed.discard(project_id)

    async def reembed_step(self, embedder: Embedder, limit: int) -> int:
        """One step of a switch of the store's model (``mcp-suite reembed``): re-embed at most ``limit``
        finding texts not yet embedded by ``embedder``'s model; how many it picked (0: none left)."""
        rows = await store.other_model_texts(self.deps.db, embedder.model_name, limit)
        if rows:
            vectors = await embedder.embed([r["text"] for r in rows])
            updates = [(r["project_id"], r["fingerprint"], v) for r, v in zip(rows, vectors, strict=True)]
            await store.set_embedding_rows(self.deps.db, updates, embedder.model_name)
        return len(rows)

    # ------------------------------------------------------------------------------ runs and projects

    async def _project(self, path: str) -> dict[str, Any]:
        root = self.resolve_root(path)
        project = await store.project_by_root(self.deps.db, str(root))
        if project is None:
            raise NotFound(f"{path[:80]!r} has not been analysed yet; run analyze_code on it first.")
        return project

    async def run(self, path: str | None, run_id: str | None) -> dict[str, Any]:
        """The run ``run_id``, or the latest run of the folder ``path``."""
        if run_id:
            row = await store.get_run(self.deps.db, _check_run_id(run_id))
            if row is None:
                raise NotFound(f"No run {run_id[:40]}; analyze_code with action=list shows recent jobs and their runs.")
            return row
        if not path:
            raise InvalidInput("give the analysed folder (path) or a run_id.")
        project = await self._project(path)
        row = await store.latest_run(self.deps.db, project["id"])
        if row is None:
            raise NotFound(f"{path[:80]!r} has no finished run yet; wait for analyze_code to finish.")
        return row

    async def run_summary(self, run_id: str) -> RunSummary:
        """A run's summary with every skipped file (up to MAX_SKIPPED_RESOURCE) and why."""
        return summary_of(await self.run(None, run_id), MAX_SKIPPED_RESOURCE)

    async def _base_run(self, head: Mapping[str, Any], base: str | None) -> dict[str, Any] | None:
        """``base``: a run id, a baseline name, or None/'previous' for the run before ``head``."""
        db = self.deps.db
        if base in (None, "", "previous"):
            return await store.run_before(db, head["project_id"], head["seq"])
        assert base is not None
        if _UUID.match(base):
            row = await store.get_run(db, base.lower())
            if row is None or row["project_id"] != head["project_id"]:
                raise NotFound(f"No run {base} of this folder.")
            return row
        run_id = await store.get_baseline(db, head["project_id"], base)
        if run_id is None:
            raise NotFound(f"No baseline named {base[:64]!r}; name one with quality_gate action=baseline.")
        return await store.get_run(db, run_id)

    async def _findings(self, run: Mapping[str, Any]) -> list[Finding]:
        return [finding_from_row(r) for r in await store.run_findings(self.deps.db, run["id"])]

    async def _analysis(self, run: Mapping[str, Any]) -> tuple[AnalysisResult, DuplicationReport]:
        functions, dup = await store.run_detail(self.deps.db, run["id"])
        metrics = await store.file_metrics_of(self.deps.db, run["id"])
        outcomes = [AnalyzerOutcome(**o) for o in run["outcomes"]]
        result = AnalysisResult(
            findings=await self._findings(run),
            file_metrics={m["path"]: FileMetrics(**m) for m in metrics},
            # Runs recorded before functions were stored as rows hold them as dicts.
            functions=[
                FunctionMetrics.from_dict(f) if isinstance(f, dict) else FunctionMetrics.from_row(f) for f in functions
            ],
            outcomes=outcomes,
        )
        blocks = [
            DuplicateBlock(b["path"], b["line"], b["end_line"], b["lines"], tuple((o[0], o[1]) for o in b["others"]))
            for b in dup.get("blocks", [])
        ]
        report = DuplicationReport(
            min_lines=dup.get("min_lines", 6),
            blocks=blocks,
            duplicated_lines=dup.get("duplicated_lines", 0),
            total_lines=dup.get("total_lines", 0),
            files_considered=dup.get("files_considered", 0),
            truncated=dup.get("truncated", False),
        )
        return result, report

    # ------------------------------------------------------------------------------ findings

    async def list_findings(
        self,
        *,
        path: str | None,
        run_id: str | None,
        severity: str | None,
        category: str | None,
        status: str | None,
        file_prefix: str | None,
        analyzer: str | None,
        limit: int,
        cursor: str | None,
    ) -> Page[FindingView]:
        run = await self.run(path, run_id)
        filters = [severity, category, status, file_prefix, analyzer]
        fp = fingerprint("findings", run["id"], filters)
        offset = decode_cursor(cursor, fp).offset
        rows, total = await store.list_findings(self.deps.db, run["id"], run["project_id"], filters, limit, offset)
        return page_of([finding_view(r) for r in rows], total=total, offset=offset, limit=limit, fp=fp)

    async def finding(self, finding_id: int) -> FindingView:
        row = await store.finding_by_id(self.deps.db, finding_id)
        if row is None:
            raise NotFound(f"No finding {finding_id}; list_findings shows the findings of a run.")
        return finding_view(row)

    async def set_status(
        self, path: str, fingerprints: Sequence[str], status: str, *, actor: str, reason: str
    ) -> StatusResult:
        """Triage findings of a project by fingerprint; kept across runs."""
        if status not in SETTABLE:
            raise InvalidInput(f"status must be one of {', '.join(SETTABLE)}; 'fixed' is set by the runs themselves.")
        if status != "open" and not reason.strip():
            raise InvalidInput(f"say why the finding is {status} (reason).")
        project = await self._project(path)
        wanted = list(dict.fromkeys(fingerprints))

        async def write(conn: asyncpg.Connection) -> list[str]:
            known = await store.known_fingerprints(conn, project["id"], wanted)
            chosen = [fp for fp in wanted if fp in known]
            if chosen:
                await store.set_status(conn, project["id"], chosen, status, actor, reason)
            return chosen

        updated = await self.deps.db.run_in_transaction(write)
        return StatusResult(status=status, updated=updated, unknown=[fp for fp in wanted if fp not in updated])

    # ------------------------------------------------------------------------------ compare

    async def compare_runs(
        self,
        *,
        path: str | None,
        head_run: str | None,
        base: str | None,
        kind: str,
        limit: int,
        cursor: str | None,
    ) -> CompareResult:
        head = await self.run(path, head_run)
        base_run = await self._base_run(head, base)
        if base_run is None:
            raise NotFound("there is no earlier run to compare with; analyse the folder again after a change.")
        diff = compare(await self._findings(base_run), await self._findings(head), run_gaps(head))
        groups = {"new": diff.new, "fixed": diff.fixed, "unchanged": diff.unchanged, "unknown": diff.unknown}
        chosen = groups[kind]
        # Fixed findings live in the base run; the others in the head run.
        source = base_run if kind in ("fixed", "unknown") else head
        rows = {r["fingerprint"]: r for r in await store.run_findings(self.deps.db, source["id"])}
        states = await store.statuses(self.deps.db, head["project_id"], [f.fingerprint for f in chosen])
        views = [finding_view({**rows[f.fingerprint], **states.get(f.fingerprint, {})}) for f in chosen]
        fp = fingerprint("compare", head["id"], base_run["id"], kind)
        return CompareResult(
            base_run=base_run["id"],
            head_run=head["id"],
            counts={name: len(items) for name, items in groups.items()},
            findings=slice_page(views, cursor=cursor, limit=limit, fp=fp),
        )

    async def check_finding(self, path: str, fingerprint_: str, run_id: str | None = None) -> FixCheckResult:
        """Is the finding fixed in the latest run (or ``run_id``)? Passes only when proven."""
        project = await self._project(path)
        head = await self.run(None, run_id) if run_id else await self.run(path, None)
        base = await store.last_run_with(self.deps.db, project["id"], fingerprint_)
        if base is None:
            return FixCheckResult(
                fingerprint=fingerprint_,
                status="not_in_base",
                passed=False,
                reason="no run of this folder reported a finding with this fingerprint",
                base_run=None,
                head_run=head["id"],
            )
        check = check_fixed(fingerprint_, await self._findings(base), await self._findings(head), run_gaps(head))
        return FixCheckResult(
            fingerprint=fingerprint_,
            status=check.status,
            passed=check.passed,
            reason=check.reason,
            base_run=base["id"],
            head_run=head["id"],
        )

    # ------------------------------------------------------------------------------ metrics, gate, hints

    async def metrics(
        self,
        *,
        path: str | None,
        run_id: str | None,
        file_prefix: str | None,
        trend: str | None,
        limit: int,
        cursor: str | None,
        hints: int = 0,
        sort: str = "complexity",
    ) -> MetricsResult:
        run = await self.run(path, run_id)
        if sort not in store.LIST_FILE_METRICS:
            raise InvalidInput(f"sort must be one of {', '.join(store.LIST_FILE_METRICS)}.")
        fp = fingerprint("metrics", run["id"], file_prefix, sort)
        offset = decode_cursor(cursor, fp).offset
        rows, total = await store.list_file_metrics(self.deps.db, run["id"], file_prefix, limit, offset, sort)
        files = page_of(
            [_file_view(r) for r in rows],
            total=total,
            offset=offset,
            limit=limit,
            fp=fp,
        )
        out = MetricsResult(run_id=run["id"], metrics=run["metrics"], coverage=run.get("coverage"), files=files)
        if trend is not None:
            out.trend = await self._trend(run, trend)
        if hints:
            out.hints = await self.hints(run, hints)
        return out

    async def _trend(self, run: Mapping[str, Any], metric: str) -> Trend:
        if metric not in TREND_METRICS:
            raise InvalidInput(f"trend must be one of {', '.join(TREND_METRICS)}.")
        series = await store.run_series(self.deps.db, run["project_id"], MAX_TREND_RUNS)
        points = [
            TrendPoint(
                seq=s["seq"],
                label=(s["git_commit"] or "")[:8] or s["created_at"].strftime("%m-%d %H:%M"),
                value=float(s["metrics"][metric]),
            )
            for s in series
            if s["metrics"].get(metric) is not None
        ]
        chart = None
        if points:
            chart = await asyncio.to_thread(self._chart, run["project_id"], metric, points)
        return Trend(metric=metric, points=points[-30:], chart_path=chart)

    def _chart(self, project_id: int, metric: str, points: Sequence[TrendPoint]) -> str:
        from servers.code_quality.charts import trend_png

        data = trend_png([(p.label, p.value) for p in points], title=f"{metric} per run")
        digest = hashlib.sha256(data).hexdigest()[:12]
        folder = self.settings.chart_folder()
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"project{project_id}-{metric}-{digest}.png"
        if not target.exists():
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
        return str(target)

    async def gate(
        self,
        *,
        action: str,
        path: str,
        thresholds: Mapping[str, Any] | None,
        run_id: str | None,
        base: str | None,
        name: str | None,
    ) -> GateResult:
        project = await self._project(path)
        current = GateThresholds(**project["gate"])
        if action == "set":
            if not thresholds:
                raise InvalidInput("give the thresholds to set.")
            for key, value in thresholds.items():
                flag = key in ("allow_secrets", "require_complete")
                if flag != isinstance(value, bool) or (not flag and value is not None and value < 0):
                    raise InvalidInput(
                        f"threshold {key[:40]} must be {'true or false' if flag else 'a number >= 0 or null'}."
                    )
                if key == "min_coverage" and value is not None and value > 1:
                    raise InvalidInput("min_coverage is a share from 0 to 1 (0.8 for 80%), or null to turn it off.")
            merged = {**asdict(current), **dict(thresholds)}
            try:
                current = GateThresholds(**merged)
            except TypeError as exc:
                raise InvalidInput(f"unknown threshold: {str(exc)[:120]}") from None
            await store.set_gate(self.deps.db, project["id"], asdict(current))
            return GateResult(action="set", thresholds=asdict(current))
        head = await self.run(None, run_id) if run_id else await self.run(path, None)
        if head["project_id"] != project["id"]:
            raise InvalidInput("that run belongs to another folder.")
        if action == "baseline":
            if not name or not _NAME.match(name):
                raise InvalidInput("give the baseline a name: letters, digits, '.', '_' or '-', up to 64.")
            await store.set_baseline(self.deps.db, project["id"], name, head["id"])
            return GateResult(
                action="baseline", thresholds=asdict(current), run_id=head["id"], note=f"baseline {name!r}"
            )
        base_run = await self._base_run(head, base)
        result, _dup = await self._analysis(head)
        new = None
        if base_run is not None:
            new = compare(await self._findings(base_run), result.findings, run_gaps(head)).new
        metric_fields = {k: v for k, v in head["metrics"].items() if k not in ("new_findings", "fixed_findings")}
        gate = evaluate_gate(
            current,
            findings=result.findings,
            metrics=RunMetrics(**metric_fields),
            outcomes=result.outcomes,
            new=new,
            coverage_error=(head.get("coverage") or {}).get("error", ""),
        )
        return GateResult(
            action="evaluate",
            thresholds=asdict(current),
            run_id=head["id"],
            base_run=base_run["id"] if base_run else None,
            passed=gate.passed,
            reasons=gate.reasons,
            checks=[GateCheckView(**asdict(c)) for c in gate.checks],
            note=gate.note,
        )

    async def hints(self, run: Mapping[str, Any], limit: int) -> list[SuggestionView]:
        """The ``limit`` most worthwhile refactorings of ``run``, linked to its findings."""
        result, dup = await self._analysis(run)
        coverage = await store.file_coverage_of(self.deps.db, run["id"])
        return suggest_refactorings(result, dup, limit=limit, coverage=coverage)

    # ------------------------------------------------------------------------------ code given as text

    async def check_code(
        self, files: Mapping[str, str], analyzers: Sequence[str] | None = None, path: str | None = None
    ) -> CheckResult:
        """Analyse code handed over as text (name -> content) in a private temporary folder; nothing is
        recorded but the per-file result cache, so checking the same code again is quick. With ``path``
        (an analysed folder), ruff follows that folder's own configuration, as its runs do."""
        encoded = snippets.encode_files(files)
        names = list(analyzers or self.settings.analyzers)
        self._analyzers(names)  # unknown names are refused before anything is written
        config = None
        if path is not None:
            project = self.resolve_root(path)
            wanted = "ruff" in names and not self.settings.ruff_isolated
            config = await asyncio.to_thread(project_config_text, project) if wanted else None
            if config is not None and config[0] in encoded:
                raise InvalidInput(f"{config[0]} is the folder's ruff configuration; send the code under other names.")
        async with self._checks:
            return await self._check(encoded, names, config)

    async def _check(
        self, encoded: Mapping[str, bytes], names: Sequence[str], config: tuple[str, bytes] | None
    ) -> CheckResult:
        root = await asyncio.to_thread(snippets.write_scratch, encoded)
        try:
            listing = await asyncio.to_thread(list_files, root)
            if config is not None:  # after the listing: the configuration is read by ruff, not analysed
                await asyncio.to_thread((root / config[0]).write_bytes, config[1])
            chosen = self._analyzers(names, root, timeout_s=min(self.settings.analyzer_timeout_s, CHECK_TIMEOUT_S))
            if not any(a.applies_to(f) for a in chosen for f in listing.files):
                skipped = "".join(f"; {s.path} was skipped ({s.reason})" for s in listing.skipped[:3])
                raise InvalidInput(
                    f"none of the analyzers ({', '.join(names)}) reads these files: name each file with its "
                    f"language's extension (e.g. app.py, main.js){skipped}."
                )
            result = await run_analysis(
                root, listing.files, chosen, cache=self.cache, workers=self.settings.workers or None
            )
        finally:
            await asyncio.to_thread(snippets.remove_scratch, root)
        order = {s: i for i, s in enumerate(SEVERITIES)}
        findings = sorted(result.findings, key=lambda f: (order[f.severity], f.path, f.line))
        functions = sorted(result.functions, key=lambda fn: (-fn.complexity, fn.path, fn.line))
        return CheckResult(
            findings=[model_of(CheckedFinding, f.to_dict()) for f in findings[:MAX_CHECK_FINDINGS]],
            findings_total=len(findings),
            functions=functions[:MAX_CHECK_FUNCTIONS],
            analyzers=[
                model_of(
                    OutcomeView, o.to_dict(), files_failed=len(o.files_failed), failed_examples=o.files_failed[:10]
                )
                for o in result.outcomes
            ],
            skipped=[SkipView(path=s.path, reason=s.reason, detail=s.detail) for s in listing.skipped],
        )

    # ------------------------------------------------------------------------------ dependencies

    async def dependencies(self, path: str, source: str | None, limit: int) -> DependencyReport:
        root = self.resolve_root(path)
        spec = source or self.settings.advisory_source
        advisory: OsvApi | OsvExport | None = None
        if spec and spec.startswith(("http://", "https://")):
            advisory = OsvApi(spec)
        elif spec:
            advisory = OsvExport(self.roots.resolve(spec))
        listing = await asyncio.to_thread(
            list_files, root, max_bytes=self.settings.max_file_bytes, max_files=self.settings.max_files
        )
        report = await check_advisories(root, dependency_files(listing), advisory)
        data = report.to_dict()
        vulns = data.pop("vulnerabilities")
        return DependencyReport(
            **{k: v for k, v in data.items() if k != "unchecked"},
            vulnerabilities=vulns[:limit],
            unchecked=data["unchecked"][:limit],
            truncated=len(vulns) > limit or len(data["unchecked"]) > limit,
        )

    # ------------------------------------------------------------------------------ search

    async def search(
        self, query: str, *, path: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page[FindingView]:
        """Findings across every run by meaning and keywords, one hit per fingerprint, best first."""
        project_id = (await self._project(path))["id"] if path else None
        d = self.deps
        vector = await d.embedder.embed_one(query)
        by_meaning = await store.search_vector(d.db, vector, project_id, d.embedder.model_name, SEARCH_DEPTH)
        words = any_word_tsquery(query)
        by_words = await store.search_keyword(d.db, words, project_id, SEARCH_DEPTH) if words else []
        scores = rrf([by_meaning, by_words])
        ranked = sorted(scores, key=lambda k: -scores[k])
        found = await store.latest_occurrences(d.db, ranked)
        hits = [
            finding_view({**found[k], "score": round(scores[k], 5)})
            for k in ranked
            if k in found and (status is None or found[k]["status"] == status)
        ]
        fp = fingerprint("search", query, path, status)
        return slice_page(hits, cursor=cursor, limit=limit, fp=fp)
