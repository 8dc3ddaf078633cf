"""The records every analyzer produces and every later step (cache, compare, gate) consumes.

Plain frozen dataclasses with ``to_dict``/``from_dict`` so a cache or a store can keep them as JSON.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

Severity = Literal["high", "medium", "low", "info"]
Category = Literal["lint", "security", "complexity", "dead_code", "secret", "semgrep"]
OutcomeStatus = Literal["ok", "missing", "failed", "timeout"]

SEVERITIES: tuple[Severity, ...] = ("high", "medium", "low", "info")
CATEGORIES: tuple[Category, ...] = ("lint", "security", "complexity", "dead_code", "secret", "semgrep")
# Part of every cache key's config hash: bump it when a record's fields change meaning.
RESULT_FORMAT = 2
MAX_MESSAGE_CHARS = 300
MAX_CONTEXT_LINES = 3
MAX_CONTEXT_LINE_CHARS = 160


@functools.cache
def _names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = _names(cls)
    if data.keys() <= names:  # the usual case (what to_dict wrote), checked in C: no copy needed
        return data
    return {k: v for k, v in data.items() if k in names}


def _flat(record: object) -> dict[str, Any]:
    # The records below hold only scalars, so a copy of their fields is what asdict gives, much faster.
    return dict(vars(record))


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class Finding:
    """One problem one analyzer reported at one place.

    ``context`` holds at most a few (redacted) lines around the finding, never the file's content;
    ``signature`` is the normalised code context the fingerprint is built from (see fingerprint.py) and
    ``anchor`` the same for the flagged line(s) and symbol alone, a looser match when a neighbour changed;
    ``fingerprint`` is set once the findings of a file are merged (it depends on the occurrence index).
    """

    analyzer: str
    rule_id: str
    severity: Severity
    category: Category
    path: str
    line: int
    message: str
    end_line: int | None = None
    column: int | None = None
    context: str | None = None
    symbol: str | None = None
    signature: str = ""
    anchor: str = ""
    fingerprint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _flat(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(**_known(cls, data))

    def with_path(self, path: str) -> Finding:
        return replace(self, path=path)


@dataclass(frozen=True)
class FunctionMetrics:
    """Size and cyclomatic complexity of one function, as a complexity analyzer measured it."""

    path: str
    name: str
    line: int
    end_line: int
    complexity: int
    code_lines: int
    parameters: int = 0

    def to_dict(self) -> dict[str, Any]:
        return _flat(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FunctionMetrics:
        return cls(**_known(cls, data))

    def to_row(self) -> list[Any]:
        """The fields in their order: a run stores tens of thousands of functions, and rows repeat no field names."""
        return [self.path, self.name, self.line, self.end_line, self.complexity, self.code_lines, self.parameters]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> FunctionMetrics:
        return cls(*row)


@dataclass(frozen=True)
class FileMetrics:
    """Per-file measures; each analyzer fills what it knows, the runner merges them."""

    path: str
    lines: int = 0
    code_lines: int = 0
    functions: int = 0
    max_complexity: int = 0
    mean_complexity: float = 0.0
    maintainability: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return _flat(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileMetrics:
        return cls(**_known(cls, data))


@dataclass
class AnalyzerOutcome:
    """What became of one analyzer in one run: never dropped silently, whatever happened."""

    analyzer: str
    status: OutcomeStatus
    reason: str = ""
    version: str | None = None
    config_hash: str = ""
    files_total: int = 0
    files_analyzed: int = 0
    files_cached: int = 0
    files_failed: list[str] = field(default_factory=list)
    # Outside the run's scope for this analyzer and not in the cache: not analysed, on purpose.
    files_out_of_scope: list[str] = field(default_factory=list)
    invocations: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
