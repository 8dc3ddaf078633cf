"""Wiring of the code_quality server: thin tools over :class:`~servers.code_quality.service.CodeQualityService`."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import StringConstraints

from common.errors import InvalidInput
from common.paging import Page
from common.runtime import Deps, ServiceTools, create_server
from common.tool_schema import P
from common.tools import APPEND, READ, READ_EXTERNAL, WRITE, args_of
from servers.code_quality.models import (
    AnalyzeResult,
    CompareResult,
    DependencyReport,
    FindingView,
    GateResult,
    MetricsResult,
    StatusResult,
)
from servers.code_quality.service import CodeQualityService, run_uri
from servers.code_quality.settings import Settings

NAME = "code_quality"
TITLE = "Code quality"

Path_ = Annotated[str | None, P("Analysed folder.", max_length=4096)]
RunId = Annotated[str | None, P("Run id (default: latest).", max_length=36)]
Query = Annotated[str | None, P("Search all runs by meaning and keywords.", max_length=500)]
Limit = Annotated[int, P("Page size.", ge=1, le=100)]
Short = Annotated[str, StringConstraints(max_length=200)]
Cursor = Annotated[str | None, P("From next_cursor.", max_length=512)]
Severity = Annotated[Literal["high", "medium", "low", "info"] | None, P("Filter.")]
Status = Annotated[Literal["open", "accepted", "false_positive", "fixed"] | None, P("Filter.")]
Analyzers = Annotated[list[Short] | None, P("ruff lizard vulture bandit detect-secrets radon semgrep.", max_length=7)]


INSTRUCTIONS = "Analyse repositories for lint, security, secrets, dead code and complexity; triage and compare."

TOOLS = ServiceTools(CodeQualityService, lean=True, outline_outputs=True)


def _need(value: str | None, what: str) -> str:
    if not value:
        raise InvalidInput(f"{what} is required for this action.")
    return value


@TOOLS.tool("Analyze code", APPEND)
async def analyze_code(
    action: Annotated[Literal["start", "status", "cancel", "resume", "list", "check"], P("What to do.")],
    ctx: Context,
    path: Path_ = None,
    files: Annotated[dict[str, str] | None, P("check: file name -> code", max_length=20)] = None,
    job_id: Annotated[str | None, P("Job id.", max_length=36)] = None,
    analyzers: Analyzers = None,
    changed_since: Annotated[str | None, P("Git ref: only files changed since.", max_length=200)] = None,
    exclude: Annotated[list[Short], P("Globs to skip.", max_length=50)] = [],  # noqa: B006
    coverage: Annotated[str | None, P("Coverage report (default: found at path).", max_length=4096)] = None,
    wait_s: Annotated[float | None, P("Seconds to wait.", ge=0, le=300)] = None,
) -> AnalyzeResult:
    """Analyse a folder or git repo as an incremental job; follow, cancel, resume or list jobs; or check
    code sent as text (not kept)."""
    svc = await TOOLS.service(ctx)
    progress = ctx.report_progress
    if action == "check":
        return AnalyzeResult(check=await svc.check_code(files or {}, analyzers, path))
    if action == "start":
        return await svc.analyze(
            _need(path, "path"),
            analyzers=analyzers,
            changed_since_ref=changed_since,
            exclude=exclude,
            coverage=coverage,
            wait_s=wait_s,
            progress=progress,
        )
    if action == "list":
        return await svc.list_jobs(status=None, limit=20, cursor=None)
    job = _need(job_id, "job_id")
    if action == "status":
        return await svc.job_status(job)
    if action == "cancel":
        return await svc.cancel(job)
    return await svc.resume(job, wait_s=wait_s, progress=progress)


@TOOLS.tool("List findings", READ)
async def list_findings(
    ctx: Context,
    query: Query = None,
    path: Path_ = None,
    run_id: RunId = None,
    severity: Severity = None,
    category: Annotated[
        Literal["lint", "security", "complexity", "dead_code", "secret", "semgrep"] | None, P("Filter.")
    ] = None,
    status: Status = None,
    file_prefix: Annotated[str | None, P("Relative path prefix.", max_length=1000)] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Page[FindingView]:
    """Findings of a run, most severe first, with triage status; or, with query, a search of all runs."""
    svc = await TOOLS.service(ctx)
    if query:
        return await svc.search(query, path=path, status=status, limit=limit, cursor=cursor)
    return await svc.list_findings(
        path=path,
        run_id=run_id,
        severity=severity,
        category=category,
        status=status,
        file_prefix=file_prefix,
        analyzer=None,
        limit=limit,
        cursor=cursor,
    )


@TOOLS.tool("Set finding status", WRITE)
async def set_finding_status(
    path: Annotated[str, P("Analysed folder.", max_length=4096)],
    fingerprints: Annotated[list[Short], P("Finding fingerprints.", min_length=1, max_length=100)],
    status: Annotated[Literal["open", "accepted", "false_positive"], P("fixed is set by runs.")],
    ctx: Context,
    reason: Annotated[str, P("Why (unless reopening).", max_length=500)] = "",
    actor: Annotated[str, P("Who decided.", max_length=100)] = "user",
) -> StatusResult:
    """Accept, mark false positive or reopen findings; kept across runs."""
    return await (await TOOLS.service(ctx)).set_status(path, fingerprints, status, actor=actor, reason=reason)


@TOOLS.tool("Compare runs", READ)
async def compare_runs(
    ctx: Context,
    path: Path_ = None,
    run_id: RunId = None,
    base: Annotated[str | None, P("Run id, baseline or previous.", max_length=64)] = None,
    kind: Annotated[Literal["new", "fixed", "unchanged", "unknown"], P("Which to list.")] = "new",
    fingerprint: Annotated[str | None, P("Check only: is this finding fixed? (pass/fail)", max_length=64)] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> CompareResult:
    """New, fixed and unchanged findings between a run and an earlier run or baseline; or whether one
    finding is fixed now."""
    svc = await TOOLS.service(ctx)
    if fingerprint:
        return CompareResult(check=await svc.check_finding(_need(path, "path"), fingerprint, run_id))
    return await svc.compare_runs(path=path, head_run=run_id, base=base, kind=kind, limit=limit, cursor=cursor)


@TOOLS.tool("Code metrics", WRITE)
async def code_metrics(
    ctx: Context,
    path: Path_ = None,
    run_id: RunId = None,
    file_prefix: Annotated[str | None, P("Relative path prefix.", max_length=1000)] = None,
    trend: Annotated[str | None, P("Metric to chart over runs, e.g. findings.", max_length=40)] = None,
    hints: Annotated[int, P("Ranked refactoring hints to add.", ge=0, le=50)] = 0,
    sort: Annotated[Literal["complexity", "coverage"], P("File order.")] = "complexity",
    limit: Limit = 20,
    cursor: Cursor = None,
) -> MetricsResult:
    """Run totals, per-file metrics and coverage, a trend chart (PNG path) and ranked refactoring hints."""
    return await (await TOOLS.service(ctx)).metrics(**args_of(locals()))


@TOOLS.tool("Quality gate", WRITE)
async def quality_gate(
    action: Annotated[Literal["evaluate", "set", "baseline"], P("What to do.")],
    path: Annotated[str, P("Analysed folder.", max_length=4096)],
    ctx: Context,
    thresholds: Annotated[
        dict[str, float | bool | None] | None,
        P(
            "max_new_high max_new_findings max_complexity max_duplication_share allow_secrets require_complete "
            "min_coverage"
        ),
    ] = None,
    run_id: RunId = None,
    base: Annotated[str | None, P("Run id, baseline or previous.", max_length=64)] = None,
    name: Annotated[str | None, P("Baseline name.", pattern=r"^[\w.-]{1,64}$")] = None,
) -> GateResult:
    """Pass/fail a run against thresholds with reasons; set thresholds; name a baseline run."""
    return await (await TOOLS.service(ctx)).gate(
        action=action, path=path, thresholds=thresholds, run_id=run_id, base=base, name=name
    )


@TOOLS.tool("Check dependencies", READ_EXTERNAL)
async def check_dependencies(
    path: Annotated[str, P("Folder.", max_length=4096)],
    ctx: Context,
    source: Annotated[str | None, P("OSV export path or query URL.", max_length=2000)] = None,
    limit: Limit = 50,
) -> DependencyReport:
    """Check pinned dependencies against an OSV source; status says if nothing was checked."""
    return await (await TOOLS.service(ctx)).dependencies(path, source, limit)


def build(settings: Settings) -> MCPServer[Deps]:
    """The code_quality server."""
    server = create_server(NAME, settings, title=TITLE, tools=TOOLS, instructions=INSTRUCTIONS)

    @server.resource("code-quality://runs/{run_id}", name="run", mime_type="application/json")
    async def run_resource(run_id: str, ctx: Context) -> str:
        """A run's summary: git state, analyzer outcomes, metrics and skipped files."""
        return (await (await TOOLS.service(ctx)).run_summary(run_id)).model_dump_json()

    @server.resource("code-quality://findings/{finding_id}", name="finding", mime_type="application/json")
    async def finding_resource(finding_id: str, ctx: Context) -> str:
        """One finding by id, with its status."""
        if not finding_id.isdigit() or len(finding_id) > 18:
            raise InvalidInput("a finding id is a number (from list_findings).")
        return (await (await TOOLS.service(ctx)).finding(int(finding_id))).model_dump_json()

    return server


__all__ = ["build", "run_uri"]
