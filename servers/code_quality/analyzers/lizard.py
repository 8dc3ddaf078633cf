"""lizard: per-function cyclomatic complexity and size for many languages (CSV; lizard has no JSON).

It feeds the metrics and refactoring hints. It reports complexity *findings* only for languages other
than Python, because ruff's ``C901`` already reports them for Python and a finding should appear once.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from servers.code_quality.analyzers.base import Analyzer, AnalyzerFailed, BatchOutput, ProcessResult, relative_path
from servers.code_quality.records import FileMetrics, Finding, FunctionMetrics

LIZARD_LANGUAGES = frozenset(
    {
        "python",
        "javascript",
        "typescript",
        "go",
        "rust",
        "java",
        "kotlin",
        "c",
        "cpp",
        "csharp",
        "ruby",
        "php",
        "swift",
        "scala",
        "lua",
    }
)


class Lizard(Analyzer):
    name = "lizard"
    executable_name = "lizard"
    languages = LIZARD_LANGUAGES
    default_batch_size = 1_000  # each lizard process pays its start-up: fewer, larger batches

    def __init__(self, *, max_complexity: int = 10, findings_for_python: bool = False, **kw: Any) -> None:
        super().__init__(**kw)
        self.max_complexity = max_complexity
        self.findings_for_python = findings_for_python

    def options(self) -> list[str]:
        return ["--csv", f"ccn>{self.max_complexity}", f"python-findings={self.findings_for_python}"]

    def command(self, executable: str, paths: Sequence[str]) -> list[str]:
        return [executable, "--csv", *paths]

    def parse(self, result: ProcessResult, root: Path, paths: Sequence[str]) -> BatchOutput:
        out = BatchOutput()
        per_file: dict[str, list[int]] = {p: [] for p in paths}
        # lizard names the file on each of its functions' rows: resolve each name once.
        resolved: dict[str, str | None] = {}
        try:
            rows = list(csv.reader(io.StringIO(result.stdout.decode())))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise AnalyzerFailed(f"lizard printed output that is not CSV: {exc}") from exc
        for row in rows:
            if not row:
                continue
            try:
                nloc, ccn, _tokens, params = (int(v) for v in row[:4])
                file_name, name, start, end = row[6], row[7], int(row[9]), int(row[10])
            except (IndexError, ValueError) as exc:
                raise AnalyzerFailed(f"lizard CSV row with unexpected fields: {exc}") from exc
            if file_name in resolved:
                path = resolved[file_name]
            else:
                path = resolved[file_name] = relative_path(root, file_name)
            if path is None:
                continue
            per_file.setdefault(path, []).append(ccn)
            out.functions.append(FunctionMetrics(path, name, start, end, ccn, nloc, params))
            is_python = path.endswith((".py", ".pyi"))
            if ccn > self.max_complexity and (self.findings_for_python or not is_python):
                out.findings.append(
                    Finding(
                        analyzer=self.name,
                        rule_id="ccn",
                        severity="high" if ccn > 2 * self.max_complexity else "medium",
                        category="complexity",
                        path=path,
                        line=start,
                        end_line=end,
                        message=f"{name} has cyclomatic complexity {ccn} (limit {self.max_complexity})",
                        symbol=name,
                    )
                )
        for path, ccns in per_file.items():
            out.metrics[path] = FileMetrics(
                path=path,
                functions=len(ccns),
                max_complexity=max(ccns, default=0),
                mean_complexity=round(sum(ccns) / len(ccns), 2) if ccns else 0.0,
            )
        return out
