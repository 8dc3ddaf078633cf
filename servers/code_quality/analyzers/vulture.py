"""vulture: unused code in Python. Whole-program: whether a function is used depends on every other
file, so it runs once over all Python files and its cache key covers all their hashes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from servers.code_quality.analyzers.base import Analyzer, AnalyzerFailed, BatchOutput, ProcessResult, relative_path
from servers.code_quality.records import Finding, clip

_LINE = re.compile(
    r"^(?P<path>.+?):(?P<line>\d+): (?P<message>.+?) \((?P<confidence>\d+)% confidence(?:, \d+ lines?)?\)$"
)
_SYNTAX = re.compile(r"^(?P<path>.+?):(?P<line>\d+): invalid syntax")
_KIND = re.compile(r"^(unused \w+(?: \w+)?|unreachable code|redundant if-condition)")


class Vulture(Analyzer):
    name = "vulture"
    executable_name = "vulture"
    languages = frozenset({"python"})
    whole_program = True
    default_batch_size = 1_000_000
    # vulture exits 3 when it found dead code.
    ok_returncodes = frozenset({0, 3})

    def __init__(self, *, min_confidence: int = 60, **kw: Any) -> None:
        super().__init__(**kw)
        self.min_confidence = min_confidence

    def options(self) -> list[str]:
        return ["--min-confidence", str(self.min_confidence)]

    def command(self, executable: str, paths: Sequence[str]) -> list[str]:
        return [executable, *self.options(), "--", *paths]

    def parse(self, result: ProcessResult, root: Path, paths: Sequence[str]) -> BatchOutput:
        out = BatchOutput()
        for raw in result.stderr.decode(errors="replace").splitlines():
            syntax = _SYNTAX.match(raw.strip())
            path = relative_path(root, syntax["path"]) if syntax else None
            if syntax and path is not None:
                out.failed[path] = f"syntax error at line {syntax['line']}"
        for raw in result.stdout.decode(errors="replace").splitlines():
            if not raw.strip():
                continue
            match = _LINE.match(raw.strip())
            if match is None:
                raise AnalyzerFailed(f"vulture printed a line it does not promise: {raw[:80]!r}")
            path = relative_path(root, match["path"])
            if path is None:
                continue
            message = match["message"]
            kind = _KIND.match(message)
            rule = (kind.group(1) if kind else "unused-code").replace(" ", "-")
            confidence = int(match["confidence"])
            symbol = re.search(r"'([^']+)'", message)
            out.findings.append(
                Finding(
                    analyzer=self.name,
                    rule_id=rule,
                    severity="medium" if confidence >= 100 else "low",
                    category="dead_code",
                    path=path,
                    line=int(match["line"]),
                    message=clip(f"{message} ({confidence}% confidence)"),
                    symbol=symbol.group(1) if symbol else None,
                )
            )
        return out
