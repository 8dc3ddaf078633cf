"""Refactoring suggestions, ranked: what to untangle first and why.

Each suggestion names a location, the metric that motivated it (and its value against the threshold)
and the fingerprints of the findings it would address. Scores are the metric over its threshold, so
kinds compare on one scale; a hot spot (a complex file that also collects findings) is boosted by how
many findings it holds, weighted by severity.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from servers.code_quality.duplication import DuplicationReport
from servers.code_quality.records import Finding
from servers.code_quality.runner import AnalysisResult

SuggestionKind = Literal["complex_function", "long_function", "long_file", "dead_code", "duplicate_block", "hot_spot"]
_MAX_LINKED = 20
# How much one finding of each severity makes a file a hot spot; a pile of low-severity findings alone
# should not outrank one complex file with a real problem.
_WEIGHT = {"high": 3.0, "medium": 1.0, "low": 0.25, "info": 0.0}
_MIN_HOT_WEIGHT = 2.0


@dataclass(frozen=True)
class Suggestion:
    kind: SuggestionKind
    path: str
    line: int
    end_line: int | None
    symbol: str | None
    metric: str
    value: float
    threshold: float
    score: float
    reason: str
    fingerprints: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _inside(findings: Sequence[Finding], start: int, end: int) -> list[str]:
    return [f.fingerprint for f in findings if start <= f.line <= end][:_MAX_LINKED]


def suggest_refactorings(
    result: AnalysisResult,
    duplication: DuplicationReport | None = None,
    *,
    limit: int = 20,
    max_complexity: int = 10,
    max_function_lines: int = 60,
    max_file_lines: int = 500,
) -> list[Suggestion]:
    """The ``limit`` most worthwhile refactorings of a run, best first."""
    by_file: dict[str, list[Finding]] = defaultdict(list)
    for f in result.findings:
        by_file[f.path].append(f)
    out: list[Suggestion] = []
    for fn in result.functions:
        here = by_file.get(fn.path, [])
        if fn.complexity > max_complexity:
            out.append(
                Suggestion(
                    "complex_function",
                    fn.path,
                    fn.line,
                    fn.end_line,
                    fn.name,
                    "cyclomatic_complexity",
                    fn.complexity,
                    max_complexity,
                    round(fn.complexity / max_complexity, 3),
                    f"{fn.name} has {fn.complexity} independent paths; split it into smaller functions",
                    _inside(here, fn.line, fn.end_line),
                )
            )
        if fn.code_lines > max_function_lines:
            out.append(
                Suggestion(
                    "long_function",
                    fn.path,
                    fn.line,
                    fn.end_line,
                    fn.name,
                    "function_code_lines",
                    fn.code_lines,
                    max_function_lines,
                    round(fn.code_lines / max_function_lines, 3),
                    f"{fn.name} is {fn.code_lines} lines of code; extract its steps",
                    _inside(here, fn.line, fn.end_line),
                )
            )
    for metrics in result.file_metrics.values():
        here = by_file.get(metrics.path, [])
        if metrics.lines > max_file_lines:
            out.append(
                Suggestion(
                    "long_file",
                    metrics.path,
                    1,
                    metrics.lines,
                    None,
                    "file_lines",
                    metrics.lines,
                    max_file_lines,
                    round(metrics.lines / max_file_lines, 3),
                    f"{metrics.path} has {metrics.lines} lines; split it by responsibility",
                    [],
                )
            )
        weight = sum(_WEIGHT[f.severity] for f in here)
        if metrics.max_complexity > max_complexity and weight >= _MIN_HOT_WEIGHT:
            boost = math.log2(1 + weight)
            out.append(
                Suggestion(
                    "hot_spot",
                    metrics.path,
                    1,
                    None,
                    None,
                    "complexity_x_weighted_findings",
                    round(metrics.max_complexity * weight, 2),
                    max_complexity,
                    round(metrics.max_complexity / max_complexity * boost, 3),
                    f"complexity up to {metrics.max_complexity} and {len(here)} findings meet in this file; "
                    "refactor it first",
                    [f.fingerprint for f in here][:_MAX_LINKED],
                )
            )
    for path, findings in by_file.items():
        dead = [f for f in findings if f.category == "dead_code"]
        if dead:
            out.append(
                Suggestion(
                    "dead_code",
                    path,
                    min(f.line for f in dead),
                    max(f.end_line or f.line for f in dead),
                    None,
                    "unused_items",
                    len(dead),
                    1,
                    round(min(3.0, 0.5 + 0.25 * len(dead)), 3),
                    f"{len(dead)} unused item(s) ({', '.join(sorted({f.symbol or f.rule_id for f in dead})[:5])}); "
                    "delete them after checking nothing calls them dynamically",
                    [f.fingerprint for f in dead][:_MAX_LINKED],
                )
            )
    if duplication is not None:
        for block in duplication.blocks:
            where = ", ".join(f"{p}:{line}" for p, line in block.others[:3])
            out.append(
                Suggestion(
                    "duplicate_block",
                    block.path,
                    block.line,
                    block.end_line,
                    None,
                    "duplicated_lines",
                    block.lines,
                    duplication.min_lines,
                    round(block.lines / (2 * duplication.min_lines), 3),
                    f"{block.lines} lines also found at {where}; extract a shared function",
                    _inside(by_file.get(block.path, []), block.line, block.end_line),
                )
            )
    out.sort(key=lambda s: (-s.score, s.path, s.line, s.kind))
    return out[: max(0, limit)]
