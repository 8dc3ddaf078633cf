"""The analyzers and which of them run by default.

Defaults keep a run over a couple of thousand files to seconds: ``ruff`` (lint plus its ``S`` security
and ``C90`` complexity rule families) and ``lizard`` (per-function complexity and size, in parallel
batches). The ``deep`` set adds ``vulture`` (dead code: a whole-program analysis, so one changed file
re-runs it over every file, longer than a small re-run should take), ``bandit`` (most of it duplicates
ruff's ``S`` rules, at about seventy times the cost), ``detect-secrets`` (minutes on a large tree; worth
it on changed files) and ``radon`` maintainability (very slow on big files, so capped per file).
``semgrep`` runs only when a setting names its executable.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from common.errors import InvalidInput
from servers.code_quality.analyzers.bandit import Bandit
from servers.code_quality.analyzers.base import Analyzer
from servers.code_quality.analyzers.lizard import Lizard
from servers.code_quality.analyzers.radon import RadonMaintainability
from servers.code_quality.analyzers.ruff import Ruff
from servers.code_quality.analyzers.secrets import DetectSecrets
from servers.code_quality.analyzers.semgrep import Semgrep
from servers.code_quality.analyzers.vulture import Vulture

ANALYZERS: dict[str, type[Analyzer]] = {
    cls.name: cls for cls in (Ruff, Lizard, Vulture, Bandit, DetectSecrets, RadonMaintainability, Semgrep)
}
DEFAULT_SET = ("ruff", "lizard")
DEEP_SET = (*DEFAULT_SET, "vulture", "bandit", "detect-secrets", "radon")


def build_analyzers(names: Iterable[str], options: dict[str, dict[str, Any]] | None = None) -> list[Analyzer]:
    """Instances for ``names``; ``options[name]`` holds keyword arguments (executable, timeout_s, ...)."""
    options = options or {}
    out: list[Analyzer] = []
    names = list(dict.fromkeys(names))
    for name in names:
        cls = ANALYZERS.get(name)
        if cls is None:
            raise InvalidInput(f"unknown analyzer {name[:80]!r}; choose from {', '.join(sorted(ANALYZERS))}")
        kwargs = dict(options.get(name, {}))
        if cls is Semgrep:
            kwargs.setdefault("executable", None)
        if cls is Lizard:
            # ruff's C901 reports Python complexity when ruff runs; otherwise lizard does.
            kwargs.setdefault("findings_for_python", "ruff" not in names)
        out.append(cls(**kwargs))
    return out


__all__ = ["ANALYZERS", "DEEP_SET", "DEFAULT_SET", "Analyzer", "build_analyzers"]
