"""bandit: Python security checks. Opt-in ("deep"): ruff's ``S`` rules cover most of it at a fraction
of the time, so bandit is worth its minute per two thousand files on changed files or on request."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from servers.code_quality.analyzers.base import AnalyzerFailed, BatchOutput, JsonAnalyzer, relative_path
from servers.code_quality.records import Finding, Severity, clip

# The messages of the hard-coded password checks quote the password itself.
_QUOTES_SECRET = frozenset({"B105", "B106", "B107"})
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_SEVERITY: dict[str, Severity] = {"HIGH": "high", "MEDIUM": "medium", "LOW": "low"}


class Bandit(JsonAnalyzer):
    name = "bandit"
    executable_name = "bandit"
    languages = frozenset({"python"})
    default_batch_size = 50
    # bandit exits 1 when it found issues.
    ok_returncodes = frozenset({0, 1})

    def options(self) -> list[str]:
        return ["-f", "json", "-q"]

    def command(self, executable: str, paths: Sequence[str]) -> list[str]:
        return [executable, *self.options(), "--", *paths]

    def parse_json(self, data: object, root: Path, paths: Sequence[str]) -> BatchOutput:
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            raise AnalyzerFailed("bandit printed JSON without a 'results' list")
        out = BatchOutput()
        for error in data.get("errors") or []:
            path = relative_path(root, str(error.get("filename", ""))) if isinstance(error, dict) else None
            if path is not None:
                out.failed[path] = str(error.get("reason", "bandit could not analyse it"))[:120]
        for item in data["results"]:
            try:
                path = relative_path(root, item["filename"])
                if path is None:
                    continue
                lines = item.get("line_range") or [item["line_number"]]
                rule = str(item["test_id"])
                text = str(item["issue_text"])
                if rule in _QUOTES_SECRET:
                    text = _QUOTED.sub("'…'", text)
                out.findings.append(
                    Finding(
                        analyzer=self.name,
                        rule_id=rule,
                        severity=_SEVERITY.get(str(item.get("issue_severity")), "low"),
                        category="security",
                        path=path,
                        line=int(item["line_number"]),
                        end_line=int(max(lines)),
                        column=int(item.get("col_offset", 0)) + 1,
                        message=clip(f"{text} (confidence {str(item.get('issue_confidence', '?')).lower()})"),
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise AnalyzerFailed(f"bandit result without the expected fields: {exc!r}") from exc
        return out
