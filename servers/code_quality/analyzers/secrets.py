"""detect-secrets: credentials committed in any text file. Opt-in ("deep") for a whole tree, cheap on
changed files; a finding carries the secret's type and line, never the value or the line's text."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from servers.code_quality.analyzers.base import AnalyzerFailed, BatchOutput, JsonAnalyzer, relative_path
from servers.code_quality.files import SourceFile
from servers.code_quality.records import Finding


class DetectSecrets(JsonAnalyzer):
    name = "detect-secrets"
    executable_name = "detect-secrets"
    default_batch_size = 50

    def applies_to(self, file: SourceFile) -> bool:
        return True

    def options(self) -> list[str]:
        return ["scan", "--all-files"]

    def command(self, executable: str, paths: Sequence[str]) -> list[str]:
        return [executable, "scan", "--all-files", *paths]

    def parse_json(self, data: object, root: Path, paths: Sequence[str]) -> BatchOutput:
        if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
            raise AnalyzerFailed("detect-secrets printed JSON without a 'results' object")
        out = BatchOutput()
        for name, items in data["results"].items():
            path = relative_path(root, name)
            if path is None or not isinstance(items, list):
                continue
            for item in items:
                try:
                    kind = str(item["type"])
                    line = int(item["line_number"])
                except (KeyError, TypeError, ValueError) as exc:
                    raise AnalyzerFailed(f"detect-secrets result without the expected fields: {exc!r}") from exc
                out.findings.append(
                    Finding(
                        analyzer=self.name,
                        rule_id=re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-"),
                        severity="high",
                        category="secret",
                        path=path,
                        line=line,
                        end_line=line,
                        message=f"possible {kind} committed in the file (value not shown)",
                    )
                )
        return out
