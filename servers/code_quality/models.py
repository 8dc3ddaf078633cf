"""Structured results of the code_quality tools (they give clients an output schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from common.jobs import JobView
from common.paging import Page
from servers.code_quality.records import FunctionMetrics


class OutcomeView(BaseModel):
    analyzer: str
    status: str = Field(description="ok, missing, failed or timeout.")
    reason: str
    version: str | None
    files_analyzed: int
    files_cached: int
    files_failed: int
    failed_examples: list[str]


class SkipView(BaseModel):
    path: str
    reason: str
    detail: str = ""


class RunSummary(BaseModel):
    id: str
    root: str
    seq: int
    created_at: datetime
    git_commit: str | None
    branch: str | None
    dirty: bool | None
    changed_since: str | None
    partial: bool = Field(description="True when an analyzer was missing, failed, timed out or left files out.")
    analyzers: list[OutcomeView]
    metrics: dict[str, Any]
    skipped: list[SkipView]
    skipped_total: int
    coverage: dict[str, Any] | None = Field(
        default=None, description="The coverage report read (format, age, unmatched and stale files), if any."
    )


class CheckedFinding(BaseModel):
    fingerprint: str
    analyzer: str
    rule_id: str
    severity: str
    category: str
    path: str
    line: int
    end_line: int | None
    column: int | None
    message: str
    symbol: str | None


class CheckResult(BaseModel):
    findings: list[CheckedFinding] = Field(description="Most severe first.")
    findings_total: int
    functions: list[FunctionMetrics] = Field(description="The most complex functions, most complex first.")
    analyzers: list[OutcomeView]
    skipped: list[SkipView]


class AnalyzeResult(BaseModel):
    job: JobView | None = None
    run: RunSummary | None = None
    joined: bool = Field(default=False, description="True when another call's running analysis was followed.")
    jobs: Page[JobView] | None = None
    check: CheckResult | None = Field(default=None, description="What action=check found.")


class FindingView(CheckedFinding):
    id: int
    run_id: str
    context: str | None
    status: str = Field(description="open, accepted, false_positive or fixed.")
    status_by: str | None = None
    status_reason: str | None = None
    score: float | None = Field(default=None, description="Search rank score (searches only).")


class StatusResult(BaseModel):
    status: str
    updated: list[str]
    unknown: list[str] = Field(description="Fingerprints no run of this project reported; left untouched.")


class FixCheckResult(BaseModel):
    fingerprint: str
    status: str = Field(description="fixed, still_present, unknown or not_in_base.")
    passed: bool
    reason: str
    base_run: str | None
    head_run: str


class CompareResult(BaseModel):
    base_run: str | None = None
    head_run: str | None = None
    counts: dict[str, int] = {}
    findings: Page[FindingView] | None = None
    check: FixCheckResult | None = Field(default=None, description="The answer when a fingerprint was given.")


class FileMetricView(BaseModel):
    path: str
    lines: int
    code_lines: int
    functions: int
    max_complexity: int
    mean_complexity: float
    maintainability: float | None
    covered_lines: int | None = None
    coverable_lines: int | None = None
    coverage: float | None = None
    uncovered: str | None = Field(default=None, description="Uncovered line numbers, e.g. 3-5,9 (clipped).")


class TrendPoint(BaseModel):
    seq: int
    label: str
    value: float


class Trend(BaseModel):
    metric: str
    points: list[TrendPoint]
    chart_path: str | None


class SuggestionView(BaseModel):
    kind: str
    path: str
    line: int
    end_line: int | None
    symbol: str | None
    metric: str
    value: float
    threshold: float
    score: float
    reason: str
    fingerprints: list[str]


class MetricsResult(BaseModel):
    run_id: str
    metrics: dict[str, Any]
    coverage: dict[str, Any] | None = None
    files: Page[FileMetricView]
    trend: Trend | None = None
    hints: list[SuggestionView] = []


class GateCheckView(BaseModel):
    name: str
    passed: bool
    actual: float
    limit: float
    message: str


class GateResult(BaseModel):
    action: str
    thresholds: dict[str, Any]
    run_id: str | None = None
    base_run: str | None = None
    passed: bool | None = None
    reasons: list[str] = []
    checks: list[GateCheckView] = []
    note: str = ""


class HintsResult(BaseModel):
    run_id: str
    suggestions: list[SuggestionView]


class VulnerabilityView(BaseModel):
    id: str
    package: str
    version: str
    ecosystem: str
    file: str
    line: int
    summary: str
    severity: str
    aliases: list[str]
    fixed_versions: list[str]


class UncheckedView(BaseModel):
    name: str
    file: str
    line: int
    reason: str


class DependencyReport(BaseModel):
    status: str = Field(description="ok, unreachable, no_source or no_dependencies; only ok means checked.")
    source: str
    reason: str
    checked: int
    vulnerabilities: list[VulnerabilityView]
    unchecked: list[UncheckedView]
    truncated: bool
