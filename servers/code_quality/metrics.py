"""Per-run metrics: size, complexity, duplication and findings by severity, category and analyzer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from servers.code_quality.duplication import DuplicationReport
from servers.code_quality.files import SkippedFile
from servers.code_quality.records import CATEGORIES, SEVERITIES
from servers.code_quality.runner import AnalysisResult


@dataclass
class RunMetrics:
    files: int = 0
    lines: int = 0
    code_lines: int = 0
    functions: int = 0
    max_complexity: int = 0
    mean_complexity: float = 0.0
    mean_maintainability: float | None = None
    duplicated_lines: int = 0
    duplication_share: float = 0.0
    findings: int = 0
    by_severity: dict[str, int] = field(default_factory=dict)
    by_category: dict[str, int] = field(default_factory=dict)
    by_analyzer: dict[str, int] = field(default_factory=dict)
    skipped_files: dict[str, int] = field(default_factory=dict)
    partial: bool = False
    #: Share of coverable lines the tests ran, from the run's coverage report; None without one.
    coverage: float | None = None
    covered_lines: int | None = None
    coverable_lines: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_metrics(
    result: AnalysisResult,
    *,
    skipped: Sequence[SkippedFile] = (),
    duplication: DuplicationReport | None = None,
) -> RunMetrics:
    """The run's totals; complexity is averaged over functions, not files."""
    files = list(result.file_metrics.values())
    complexities = [fn.complexity for fn in result.functions]
    maintainability = [m.maintainability for m in files if m.maintainability is not None]
    severity = Counter(f.severity for f in result.findings)
    category = Counter(f.category for f in result.findings)
    return RunMetrics(
        files=len(files),
        lines=sum(m.lines for m in files),
        code_lines=sum(m.code_lines for m in files),
        functions=len(complexities),
        max_complexity=max(complexities, default=0),
        mean_complexity=round(sum(complexities) / len(complexities), 2) if complexities else 0.0,
        mean_maintainability=round(sum(maintainability) / len(maintainability), 2) if maintainability else None,
        duplicated_lines=duplication.duplicated_lines if duplication else 0,
        duplication_share=duplication.share if duplication else 0.0,
        findings=len(result.findings),
        by_severity={s: severity.get(s, 0) for s in SEVERITIES},
        by_category={c: category.get(c, 0) for c in CATEGORIES},
        by_analyzer=dict(sorted(Counter(f.analyzer for f in result.findings).items())),
        skipped_files=dict(sorted(Counter(s.reason for s in skipped).items())),
        partial=result.partial,
    )


@dataclass(frozen=True)
class MetricChange:
    name: str
    before: float
    after: float
    delta: float
    worse: bool


# Metrics where a higher value is worse; the others (size) are reported without a verdict.
_HIGHER_IS_WORSE = ("max_complexity", "mean_complexity", "duplication_share", "findings")
_LOWER_IS_WORSE = ("mean_maintainability", "coverage")
_NEUTRAL = ("files", "lines", "code_lines", "functions")


def diff_metrics(base: RunMetrics, head: RunMetrics) -> list[MetricChange]:
    """How each metric moved from ``base`` to ``head``, findings per severity and category included;
    ``worse`` marks the moves in the wrong direction (unchanged metrics are left out)."""
    pairs: list[tuple[str, float | None, float | None, bool | None]] = []
    for name in (*_HIGHER_IS_WORSE, *_LOWER_IS_WORSE, *_NEUTRAL):
        direction = True if name in _HIGHER_IS_WORSE else False if name in _LOWER_IS_WORSE else None
        pairs.append((name, getattr(base, name), getattr(head, name), direction))
    for group in ("by_severity", "by_category"):
        before, after = getattr(base, group), getattr(head, group)
        for key in sorted(set(before) | set(after)):
            pairs.append((f"findings_{key}", before.get(key, 0), after.get(key, 0), True))
    out = []
    for name, b, a, higher_is_worse in pairs:
        if b is None or a is None or a == b:
            continue
        delta = round(a - b, 4)
        worse = higher_is_worse is not None and (delta > 0) == higher_is_worse
        out.append(MetricChange(name, b, a, delta, worse))
    return out
