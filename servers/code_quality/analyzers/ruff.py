"""ruff: lint, plus its ``S`` (bandit's rules) and ``C90`` (McCabe) families, so a default run gets
security and complexity findings for Python in about a second per two thousand files."""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from servers.code_quality.analyzers.base import AnalyzerFailed, BatchOutput, JsonAnalyzer, relative_path
from servers.code_quality.records import RESULT_FORMAT, Category, Finding, Severity, clip

DEFAULT_SELECT = ("F", "E4", "E7", "E9", "B", "S", "C90")
# Asserts, fixed passwords, temp paths and subprocess calls are what tests are made of; flagging them there
# buries the real findings.
TEST_FILES = ("**/tests/**", "**/test_*.py", "**/*_test.py", "**/conftest.py")
TEST_IGNORES = ("S101", "S105", "S106", "S107", "S108", "S311", "S603", "S607")
# High: runs code or a shell from data, disables TLS checks, or fails at run time (undefined name).
_HIGH = frozenset({"F821", "S102", "S307", "S506", "S602", "S604", "S605", "S501"})
_LOW = frozenset({"S101", "S311", "S404", "S603", "S607", "S110", "S112", "F401", "F841", "F541"})
# ruff's own order of precedence among the configuration files of one folder.
CONFIG_FILES = (".ruff.toml", "ruff.toml", "pyproject.toml")
MAX_CONFIG_BYTES = 1_000_000


def _read_config(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fh:
            return fh.read(MAX_CONFIG_BYTES + 1)
    except OSError:
        return None


def project_config_text(root: Path) -> tuple[str, bytes] | None:
    """The folder's own ruff configuration (file name, text), as ruff itself would pick it at the top
    level; None when there is none (a pyproject.toml without ``[tool.ruff]`` does not count)."""
    for name in CONFIG_FILES:
        data = _read_config(root / name)
        if data is None or len(data) > MAX_CONFIG_BYTES:
            continue
        if name == "pyproject.toml":
            try:
                if "ruff" not in tomllib.loads(data.decode()).get("tool", {}):
                    continue
            except (UnicodeDecodeError, tomllib.TOMLDecodeError):
                continue
        return name, data
    return None


def project_config(root: Path) -> tuple[Path, str] | None:
    """The folder's own ruff configuration (path, SHA-256 of its text); see ``project_config_text``."""
    found = project_config_text(root)
    return None if found is None else (root / found[0], hashlib.sha256(found[1]).hexdigest())


def classify(code: str) -> tuple[Severity, Category]:
    """Severity and category of a ruff rule code."""
    if code in ("invalid-syntax", "syntax-error"):
        return "high", "lint"
    if code == "C901":
        return "medium", "complexity"
    if code.startswith("S"):
        if code in _HIGH:
            return "high", "security"
        return ("low" if code in _LOW else "medium"), "security"
    if code in _HIGH or code.startswith("E9"):
        return "high", "lint"
    if code in _LOW:
        return "low", "lint"
    if code.startswith(("F", "B")):
        return "medium", "lint"
    return "low", "lint"


class Ruff(JsonAnalyzer):
    name = "ruff"
    executable_name = "ruff"
    languages = frozenset({"python"})
    default_batch_size = 5_000
    threaded = True

    def __init__(
        self,
        *,
        select: Sequence[str] = DEFAULT_SELECT,
        max_complexity: int = 10,
        relax_tests: bool = True,
        project_root: Path | None = None,
        isolated: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.select = tuple(select)
        self.max_complexity = max_complexity
        self.relax_tests = relax_tests
        # A user of ruff expects their own rules, ignores and excludes; without a configuration of theirs
        # (or when isolated) the suite's selection applies.
        self.config = None if isolated or project_root is None else project_config(project_root)

    def options(self) -> list[str]:
        if self.config is not None:
            return ["--config", str(self.config[0]), "--force-exclude"]
        options = [
            "--isolated",
            "--select",
            ",".join(self.select),
            "--config",
            f"lint.mccabe.max-complexity={self.max_complexity}",
        ]
        if self.relax_tests:
            ignores = json.dumps(list(TEST_IGNORES))
            table = ", ".join(f"{json.dumps(pattern)} = {ignores}" for pattern in TEST_FILES)
            options += ["--config", f"lint.per-file-ignores = {{{table}}}"]
        return options

    def config_hash(self) -> str:
        if self.config is None:
            return super().config_hash()
        # The configuration's text, not where it lies: a copy of it beside code sent as text, or another
        # checkout of the project, gives the same results for the same relative paths.
        key = [RESULT_FORMAT, self.name, "project-config", self.config[1]]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]

    def command(self, executable: str, paths: Sequence[str]) -> list[str]:
        return [
            executable,
            "check",
            "--no-cache",
            "--output-format",
            "json",
            "--exit-zero",
            *self.options(),
            "--",
            *paths,
        ]

    def parse_json(self, data: object, root: Path, paths: Sequence[str]) -> BatchOutput:
        if not isinstance(data, list):
            raise AnalyzerFailed("ruff printed JSON that is not a list of diagnostics")
        out = BatchOutput()
        for item in data:
            try:
                path = relative_path(root, item["filename"])
                code = item.get("code") or "invalid-syntax"
                start = item["location"]
                end = item.get("end_location") or start
                if path is None:
                    continue
                severity, category = classify(code)
                out.findings.append(
                    Finding(
                        analyzer=self.name,
                        rule_id=code,
                        severity=severity,
                        category=category,
                        path=path,
                        line=int(start["row"]),
                        end_line=int(end["row"]),
                        column=int(start["column"]),
                        message=clip(str(item["message"])),
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise AnalyzerFailed(f"ruff diagnostic without the expected fields: {exc!r}") from exc
        return out
