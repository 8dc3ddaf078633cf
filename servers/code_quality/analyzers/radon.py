"""radon ``mi``: the maintainability index of Python files. Opt-in and capped per file: it is by far the
slowest step on large files (the index grows costly with file size), and only ruff/lizard are needed for
complexity."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from servers.code_quality.analyzers.base import AnalyzerFailed, BatchOutput, JsonAnalyzer, relative_path
from servers.code_quality.files import SourceFile
from servers.code_quality.records import FileMetrics


class RadonMaintainability(JsonAnalyzer):
    name = "radon"
    executable_name = "radon"
    languages = frozenset({"python"})
    default_batch_size = 25

    def __init__(self, *, max_lines: int = 2000, **kw: Any) -> None:
        super().__init__(**kw)
        self.max_lines = max_lines

    def applies_to(self, file: SourceFile) -> bool:
        return super().applies_to(file) and file.lines <= self.max_lines

    def options(self) -> list[str]:
        return ["mi", "-j", f"max-lines={self.max_lines}"]

    def command(self, executable: str, paths: Sequence[str]) -> list[str]:
        return [executable, "mi", "-j", "--", *paths]

    def parse_json(self, data: object, root: Path, paths: Sequence[str]) -> BatchOutput:
        if not isinstance(data, dict):
            raise AnalyzerFailed("radon printed JSON that is not an object")
        out = BatchOutput()
        for name, value in data.items():
            path = relative_path(root, name)
            if path is None or not isinstance(value, dict):
                continue
            if "mi" not in value:
                out.failed[path] = str(value.get("error", "radon could not measure it"))[:120]
                continue
            out.metrics[path] = FileMetrics(path=path, maintainability=round(float(value["mi"]), 2))
        return out
