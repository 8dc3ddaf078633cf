"""A quality gate: thresholds in, pass or fail out, with one reason per check.

"New" means not in the base run (compare.py). Without a base run every finding counts as new, and the
result says so. A partial run (an analyzer missing, failed or timed out) fails by default: a gate that
passes because a checker did not run is worse than no gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from servers.code_quality.coverage import DEFAULT_REPORTS
from servers.code_quality.metrics import RunMetrics
from servers.code_quality.records import AnalyzerOutcome, Finding


@dataclass(frozen=True)
class GateThresholds:
    """``None`` switches a check off."""

    max_new_high: int | None = 0
    max_new_findings: int | None = None
    max_complexity: int | None = None
    allow_secrets: bool = False
    max_duplication_share: float | None = None
    require_complete: bool = True
    #: Lowest share (0..1) of coverable lines the tests must run; a run without a report fails it.
    min_coverage: float | None = None


@dataclass(frozen=True)
class GateCheck:
    name: str
    passed: bool
    actual: float
    limit: float
    message: str


@dataclass
class GateResult:
    passed: bool
    checks: list[GateCheck] = field(default_factory=list)
    note: str = ""

    @property
    def reasons(self) -> list[str]:
        """Why it failed: one message per failed check."""
        return [c.message for c in self.checks if not c.passed]


def _check(name: str, actual: float, limit: float, what: str) -> GateCheck:
    passed = actual <= limit
    verdict = "within" if passed else "over"
    return GateCheck(name, passed, actual, limit, f"{what}: {actual:g} ({verdict} the limit of {limit:g})")


def _coverage_check(share: float | None, limit: float, error: str) -> GateCheck:
    if share is None:
        why = error or (
            f"no coverage report was found for this run ({', '.join(DEFAULT_REPORTS)} at the root, or "
            "analyze_code coverage=...)"
        )
        return GateCheck("coverage", False, 0, limit, f"coverage unknown: {why}")
    passed = share >= limit
    verdict = "at or above" if passed else "under"
    return GateCheck(
        "coverage",
        passed,
        share,
        limit,
        f"share of lines covered by tests: {share:g} ({verdict} the minimum of {limit:g})",
    )


def evaluate_gate(
    thresholds: GateThresholds,
    *,
    findings: Sequence[Finding],
    metrics: RunMetrics,
    outcomes: Sequence[AnalyzerOutcome],
    new: Sequence[Finding] | None = None,
    coverage_error: str = "",
) -> GateResult:
    """Apply ``thresholds`` to a run; ``new`` is compare()'s new findings, None when there is no base run;
    ``coverage_error`` why the run's coverage report could not be read, if it could not."""
    fresh = list(findings) if new is None else list(new)
    checks: list[GateCheck] = []
    if thresholds.max_new_high is not None:
        high = sum(1 for f in fresh if f.severity == "high")
        checks.append(_check("new_high", high, thresholds.max_new_high, "new high-severity findings"))
    if thresholds.max_new_findings is not None:
        checks.append(_check("new_findings", len(fresh), thresholds.max_new_findings, "new findings"))
    if thresholds.max_complexity is not None:
        checks.append(
            _check("max_complexity", metrics.max_complexity, thresholds.max_complexity, "highest function complexity")
        )
    if not thresholds.allow_secrets:
        secrets = sum(1 for f in findings if f.category == "secret")
        checks.append(_check("secrets", secrets, 0, "possible secrets in the code"))
    if thresholds.max_duplication_share is not None:
        checks.append(
            _check(
                "duplication", metrics.duplication_share, thresholds.max_duplication_share, "share of duplicated lines"
            )
        )
    if thresholds.min_coverage is not None:
        checks.append(_coverage_check(metrics.coverage, thresholds.min_coverage, coverage_error))
    if thresholds.require_complete:
        incomplete = [o for o in outcomes if o.status != "ok" or o.files_failed]
        names = ", ".join(f"{o.analyzer} ({o.status}{', files failed' if o.files_failed else ''})" for o in incomplete)
        checks.append(
            GateCheck(
                "complete",
                not incomplete,
                len(incomplete),
                0,
                f"analyzers that did not cover every file: {names}"
                if incomplete
                else "every analyzer covered every file",
            )
        )
    note = "no earlier run to compare with: every finding counts as new" if new is None else ""
    return GateResult(passed=all(c.passed for c in checks), checks=checks, note=note)
