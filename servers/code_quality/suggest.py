"""Refactoring suggestions, ranked: what to untangle first and why.

Each suggestion names a location, the metric that motivated it (and its value against the threshold)
and the fingerprints of the findings it would address. Scores are the metric over its threshold, so
kinds compare on one scale; a hot spot (a complex file that also collects findings) is boosted by how
many findings it holds, weighted by severity.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

from servers.code_quality.coverage import count_in
from servers.code_quality.duplication import DuplicationReport
from servers.code_quality.models import SuggestionView
from servers.code_quality.records import Finding, FunctionMetrics
from servers.code_quality.runner import AnalysisResult

_MAX_LINKED = 20
# How much one finding of each severity makes a file a hot spot; a pile of low-severity findings alone
# should not outrank one complex file with a real problem.
_WEIGHT = {"high": 3.0, "medium": 1.0, "low": 0.25, "info": 0.0}
_MIN_HOT_WEIGHT = 2.0
#: A complex function is "uncovered" when more than this share of its coverable lines never ran in the tests.
_UNCOVERED_SHARE = 0.5


def _inside(findings: Sequence[Finding], start: int, end: int) -> list[str]:
    return [f.fingerprint for f in findings if start <= f.line <= end][:_MAX_LINKED]


def _uncovered(
    fn: FunctionMetrics, lines: tuple[str, str], max_complexity: int, here: Sequence[Finding]
) -> list[SuggestionView]:
    """A complex function the tests mostly do not run: risky to change, so cover it before refactoring."""
    covered, uncovered = (count_in(ranges, fn.line, fn.end_line) for ranges in lines)
    coverable = covered + uncovered
    share = uncovered / coverable if coverable else 0.0
    if share <= _UNCOVERED_SHARE:
        return []
    return [
        SuggestionView(
            kind="complex_uncovered",
            path=fn.path,
            line=fn.line,
            end_line=fn.end_line,
            symbol=fn.name,
            metric="uncovered_line_share",
            value=round(share, 3),
            threshold=_UNCOVERED_SHARE,
            # Above the same function's complex_function hint: untested complexity is the riskier kind.
            score=round(fn.complexity / max_complexity * (1 + share), 3),
            reason=f"{fn.name} has {fn.complexity} independent paths and the tests run {covered} of its "
            f"{coverable} coverable lines; add tests before refactoring it",
            fingerprints=_inside(here, fn.line, fn.end_line),
        )
    ]


def suggest_refactorings(
    result: AnalysisResult,
    duplication: DuplicationReport | None = None,
    *,
    limit: int = 20,
    max_complexity: int = 10,
    max_function_lines: int = 60,
    max_file_lines: int = 500,
    coverage: Mapping[str, tuple[str, str]] | None = None,
) -> list[SuggestionView]:
    """The ``limit`` most worthwhile refactorings of a run, best first; ``coverage`` maps a path to its
    (covered, uncovered) line ranges when the run read a coverage report."""
    by_file: dict[str, list[Finding]] = defaultdict(list)
    for f in result.findings:
        by_file[f.path].append(f)
    out: list[SuggestionView] = []
    for fn in result.functions:
        here = by_file.get(fn.path, [])
        if fn.complexity > max_complexity:
            out.append(
                SuggestionView(
                    kind="complex_function",
                    path=fn.path,
                    line=fn.line,
                    end_line=fn.end_line,
                    symbol=fn.name,
                    metric="cyclomatic_complexity",
                    value=fn.complexity,
                    threshold=max_complexity,
                    score=round(fn.complexity / max_complexity, 3),
                    reason=f"{fn.name} has {fn.complexity} independent paths; split it into smaller functions",
                    fingerprints=_inside(here, fn.line, fn.end_line),
                )
            )
            if coverage and fn.path in coverage:
                out.extend(_uncovered(fn, coverage[fn.path], max_complexity, here))
        if fn.code_lines > max_function_lines:
            out.append(
                SuggestionView(
                    kind="long_function",
                    path=fn.path,
                    line=fn.line,
                    end_line=fn.end_line,
                    symbol=fn.name,
                    metric="function_code_lines",
                    value=fn.code_lines,
                    threshold=max_function_lines,
                    score=round(fn.code_lines / max_function_lines, 3),
                    reason=f"{fn.name} is {fn.code_lines} lines of code; extract its steps",
                    fingerprints=_inside(here, fn.line, fn.end_line),
                )
            )
    for metrics in result.file_metrics.values():
        here = by_file.get(metrics.path, [])
        if metrics.lines > max_file_lines:
            out.append(
                SuggestionView(
                    kind="long_file",
                    path=metrics.path,
                    line=1,
                    end_line=metrics.lines,
                    symbol=None,
                    metric="file_lines",
                    value=metrics.lines,
                    threshold=max_file_lines,
                    score=round(metrics.lines / max_file_lines, 3),
                    reason=f"{metrics.path} has {metrics.lines} lines; split it by responsibility",
                    fingerprints=[],
                )
            )
        weight = sum(_WEIGHT[f.severity] for f in here)
        if metrics.max_complexity > max_complexity and weight >= _MIN_HOT_WEIGHT:
            boost = math.log2(1 + weight)
            out.append(
                SuggestionView(
                    kind="hot_spot",
                    path=metrics.path,
                    line=1,
                    end_line=None,
                    symbol=None,
                    metric="complexity_x_weighted_findings",
                    value=round(metrics.max_complexity * weight, 2),
                    threshold=max_complexity,
                    score=round(metrics.max_complexity / max_complexity * boost, 3),
                    reason=f"complexity up to {metrics.max_complexity} and {len(here)} findings meet in this file; "
                    "refactor it first",
                    fingerprints=[f.fingerprint for f in here][:_MAX_LINKED],
                )
            )
    for path, findings in by_file.items():
        dead = [f for f in findings if f.category == "dead_code"]
        if dead:
            out.append(
                SuggestionView(
                    kind="dead_code",
                    path=path,
                    line=min(f.line for f in dead),
                    end_line=max(f.end_line or f.line for f in dead),
                    symbol=None,
                    metric="unused_items",
                    value=len(dead),
                    threshold=1,
                    score=round(min(3.0, 0.5 + 0.25 * len(dead)), 3),
                    reason=f"{len(dead)} unused item(s) ({', '.join(sorted({f.symbol or f.rule_id for f in dead})[:5])}); "
                    "delete them after checking nothing calls them dynamically",
                    fingerprints=[f.fingerprint for f in dead][:_MAX_LINKED],
                )
            )
    if duplication is not None:
        for block in duplication.blocks:
            where = ", ".join(f"{p}:{line}" for p, line in block.others[:3])
            out.append(
                SuggestionView(
                    kind="duplicate_block",
                    path=block.path,
                    line=block.line,
                    end_line=block.end_line,
                    symbol=None,
                    metric="duplicated_lines",
                    value=block.lines,
                    threshold=duplication.min_lines,
                    score=round(block.lines / (2 * duplication.min_lines), 3),
                    reason=f"{block.lines} lines also found at {where}; extract a shared function",
                    fingerprints=_inside(by_file.get(block.path, []), block.line, block.end_line),
                )
            )
    out.sort(key=lambda s: (-s.score, s.path, s.line, s.kind))
    return out[: max(0, limit)]
