"""Structured results of the ui_testing tools: small summaries and paths, never image bytes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from common.paging import Paged
from servers.ui_testing.diff import Box

#: What a run did, and how it ended (the runs table allows just these).
RunKind = Literal["compare", "audit", "check"]
RunStatus = Literal["running", "passed", "failed", "error", "interrupted", "cancelled"]


class CaptureInfo(BaseModel):
    """A stored screenshot."""

    id: int
    page_key: str
    viewport: str = Field(description="WIDTHxHEIGHT@SCALE.")
    path: str
    sha256: str
    width: int = Field(description="Image pixels: CSS pixels times the scale.")
    height: int = Field(description="Image pixels; a full-page capture is as tall as the page (up to a set limit).")
    bytes: int
    http_status: int | None = None
    thumbnail_path: str | None = Field(default=None, description="A small preview PNG, when asked for.")
    compare: CompareInfo | None = None


class CompareInfo(BaseModel):
    """A capture against its baseline."""

    run_id: int
    passed: bool
    capture_id: int
    baseline_capture_id: int
    changed_ratio: float = Field(description="Share of the image's pixels that differ, 0..1.")
    max_ratio: float = Field(description="The largest changed_ratio that passes.")
    size_changed: bool
    size: str = Field(description="Baseline size -> capture size, in image pixels.")
    boxes: list[Box] = Field(description="Largest changed regions (image pixels), at most 5.")
    regions_total: int
    diff_path: str | None = None
    summary: str


class BaselineInfo(BaseModel):
    """A baseline (current or replaced)."""

    id: int
    page_key: str
    viewport: str
    capture_id: int
    path: str
    current: bool
    note: str | None = None
    created_at: datetime
    replaced_at: datetime | None = None


class BaselineResult(Paged):
    """What manage_baseline did or found."""

    action: str
    baselines: list[BaselineInfo]
    compare: CompareInfo | None = None
    message: str


class FindingInfo(BaseModel):
    """One failing element under one axe rule."""

    rule: str
    impact: str | None = None
    selector: str


class ViolationInfo(BaseModel):
    """One failed axe rule."""

    rule: str
    impact: str | None = None
    help: str
    nodes: int
    selectors: list[str]


class AuditInfo(BaseModel):
    """An accessibility audit, worst violations first, and its delta against the page's baseline audit."""

    run_id: int
    audit_id: int
    page_key: str
    passed: bool = Field(description="No new findings against the baseline audit.")
    violations_total: int
    violations: list[ViolationInfo] = Field(description="The worst rules, at most 5.")
    new: list[FindingInfo] = Field(description="Findings not in the baseline (at most 5; see new_total).")
    new_total: int
    fixed: list[FindingInfo] = Field(description="Baseline findings gone now (at most 5; see fixed_total).")
    fixed_total: int
    summary: str


class CheckInfo(BaseModel):
    """A saved check and its recent results."""

    name: str
    steps: int
    trend: str = Field(description="Last results, oldest first: P passed, F failed, E error, I interrupted.")
    last_status: str | None = None
    last_run_id: int | None = None
    updated_at: datetime


class CheckResult(Paged):
    """What manage_check did or found."""

    action: str
    checks: list[CheckInfo]
    scenario: dict[str, Any] | None = Field(default=None, description="The saved steps (action get).")
    message: str


class RunRow(BaseModel):
    """One run in a list."""

    id: int
    kind: RunKind
    status: RunStatus
    page_key: str | None = None
    check: str | None = None
    summary: str
    created_at: datetime


class StepInfo(BaseModel):
    """One step of a check run."""

    i: int
    action: str
    status: str
    ms: int
    error: str | None = None
    ref: str | None = Field(default=None, description="capture:<id> or audit:<id>.")


class RunInfo(RunRow):
    """One run: status, summary and (for checks) the steps and what went wrong on the page."""

    duration_ms: int | None = None
    failed_step: int | None = None
    error: str | None = None
    steps: list[StepInfo] = Field(default_factory=list, description="Check steps (failed and first ones if many).")
    steps_total: int = 0
    console_errors: list[str] = Field(default_factory=list, description="At most 3; see console_errors_total.")
    console_errors_total: int = 0
    failed_requests: list[str] = Field(default_factory=list, description="At most 3.")
    failed_requests_total: int = 0
    vs_last_pass: str | None = Field(default=None, description="Compared with the check's last passing run.")
    details: dict[str, Any] = Field(default_factory=dict, description="Comparison or audit figures.")


class RunList(Paged):
    """A page of runs, or (with run_id) one run."""

    items: list[RunRow]
    run: RunInfo | None = None


class Report(BaseModel):
    """Latest status of every page key and check, and the browser in use."""

    pages: list[str] = Field(description="One line per page key: latest comparison and audit.")
    pages_total: int
    checks: list[str] = Field(description="name: trend (last result last).")
    failing: int = Field(description="Page keys (of all) whose latest comparison or audit did not pass.")
    browser: str = Field(description="Chromium against Playwright's expected version.")
    truncated: bool
    next_cursor: str | None = None


CaptureInfo.model_rebuild()
BaselineResult.model_rebuild()
