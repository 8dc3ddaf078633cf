"""semgrep, optional and external: it pins its own ``mcp`` version, so it lives in its own environment
and this server runs the executable a setting points at (``missing`` when there is none). Rules come
from ``config``: a local rules file or folder keeps it offline; a registry name (``p/python``) needs
the network the first time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from servers.code_quality.analyzers.base import (
    AnalyzerFailed,
    AnalyzerMissing,
    BatchOutput,
    JsonAnalyzer,
    relative_path,
)
from servers.code_quality.files import SourceFile
from servers.code_quality.records import Finding, Severity, clip

_SEVERITY: dict[str, Severity] = {"ERROR": "high", "WARNING": "medium", "INFO": "low"}
_NOT_CODE = frozenset({"other", "markdown", "text"})


class Semgrep(JsonAnalyzer):
    name = "semgrep"
    executable_name = "semgrep"
    default_batch_size = 200
    # semgrep exits 1 when it found blocking findings, 2+ on errors.
    ok_returncodes = frozenset({0, 1})

    def __init__(self, *, executable: str | None, config: str = "p/default", **kw: Any) -> None:
        super().__init__(executable=executable, **kw)
        if not executable:
            # Never picked up from PATH: semgrep is used only when a setting names it.
            self.executable = None
        self.config = config

    def _require_executable(self) -> str:
        if not self.executable:
            raise AnalyzerMissing("semgrep is optional and not configured; set its executable path to enable it")
        return super()._require_executable()

    def applies_to(self, file: SourceFile) -> bool:
        return file.language not in _NOT_CODE

    def options(self) -> list[str]:
        return ["--config", self.config]

    def command(self, executable: str, paths: Sequence[str]) -> list[str]:
        return [
            executable,
            "scan",
            "--json",
            "--quiet",
            "--disable-version-check",
            "--metrics=off",
            *self.options(),
            "--",
            *paths,
        ]

    def parse_json(self, data: object, root: Path, paths: Sequence[str]) -> BatchOutput:
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            raise AnalyzerFailed("semgrep printed JSON without a 'results' list")
        out = BatchOutput()
        for item in data["results"]:
            try:
                path = relative_path(root, item["path"])
                if path is None:
                    continue
                extra = item.get("extra") or {}
                out.findings.append(
                    Finding(
                        analyzer=self.name,
                        rule_id=str(item["check_id"]),
                        severity=_SEVERITY.get(str(extra.get("severity", "")).upper(), "medium"),
                        category="semgrep",
                        path=path,
                        line=int(item["start"]["line"]),
                        end_line=int(item["end"]["line"]),
                        column=int(item["start"].get("col", 1)),
                        message=clip(str(extra.get("message", item["check_id"]))),
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise AnalyzerFailed(f"semgrep result without the expected fields: {exc!r}") from exc
        return out
