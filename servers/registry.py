"""The one list of servers. Migrations, the CLI, ``config claude``, ``doctor`` and the conformance
tests all iterate :data:`SERVERS`; adding a server is a folder plus one line here."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class ServerSpec:
    """A server: its name is also its PostgreSQL schema, its role and its env prefix (upper-cased)."""

    name: str
    title: str
    description: str
    #: An example server used by the tests and as the template for new ones; left out of `config claude`.
    example: bool = False
    #: Where the server can keep its vectors (VECTOR_BACKEND); the others keep them in their own schema.
    vector_backends: tuple[str, ...] = ("pgvector",)
    #: Modules of the server's optional extra (named after the server); checked, not imported, at start.
    requires: tuple[str, ...] = ()

    @property
    def package(self) -> str:
        return f"servers.{self.name}"

    @property
    def env_prefix(self) -> str:
        return f"{self.name.upper()}_"

    def module(self, sub: str) -> ModuleType:
        return importlib.import_module(f"{self.package}.{sub}")

    def load_settings(self, **overrides: Any) -> Any:
        """The server's Settings, read from the environment (a bad value stops with a clear message)."""
        from common.settings import SettingsError, load_settings

        settings = load_settings(self.module("settings").Settings, **overrides)
        if settings.vector_backend not in self.vector_backends:
            raise SettingsError(
                f"Invalid configuration:\n  VECTOR_BACKEND: {self.name} keeps its vectors in its own PostgreSQL "
                f"schema (pgvector) and does not support {settings.vector_backend!r}; unset VECTOR_BACKEND for this "
                "server (docs/configuration.md lists which servers support Qdrant)."
            )
        return settings

    def missing_extra(self) -> str | None:
        """A message with the install command when a module of the server's extra is not installed."""
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if not missing:
            return None
        return (
            f"The {self.name} server needs its optional dependencies ({', '.join(missing)} missing). Install them "
            f'with: pip install "mcp-suite[{self.name}]" (or run scripts/setup, which installs every extra).'
        )

    def build(self, settings: Any) -> Any:
        """The server's ``build(settings) -> MCPServer``."""
        return self.module("server").build(settings)


SERVERS: tuple[ServerSpec, ...] = (
    ServerSpec(
        "notes",
        "Notes (example)",
        "Tiny example server that exercises every part of common/ end to end; the template for new servers.",
        example=True,
        vector_backends=("pgvector", "qdrant"),
    ),
    ServerSpec(
        "memory_management",
        "Memory",
        "Long-term memory for agents: store, recall (hybrid semantic + keyword), organise and consolidate memories.",
    ),
    ServerSpec(
        "inference_enhancement",
        "Knowledge graph",
        "Knowledge graph (entities, relations, observations) with hybrid search and prompt enrichment; drop-in for the reference memory server.",
    ),
    ServerSpec(
        "documentation",
        "Documentation",
        "Private, versioned documentation and API specs: ingest folders, hybrid search, read sections, OpenAPI endpoints, generated references and diagrams.",
    ),
    ServerSpec(
        "web_access",
        "Web access",
        "Fetch pages as markdown through an SSRF guard and a shared HTTP cache, crawl sites as jobs, web search with history, usage ledger and quotas, screenshots.",
        requires=("trafilatura", "readability", "markdownify", "protego", "pypdf", "playwright"),
    ),
    ServerSpec(
        "ui_testing",
        "UI testing",
        "Screenshots in headless Chromium with visual baselines and diffs, axe accessibility audits with deltas, and stored UI checks run as jobs.",
        requires=("playwright", "axe_playwright_python", "PIL", "numpy"),
    ),
    ServerSpec(
        "code_quality",
        "Code quality",
        "Static analysis of repositories as incremental jobs: findings with stable fingerprints and triage, run comparison, metrics and trends, quality gates, refactoring hints, vulnerable dependencies.",
        requires=("ruff", "bandit", "lizard", "vulture", "radon", "detect_secrets", "matplotlib", "defusedxml"),
    ),
    ServerSpec(
        "analytics",
        "Analytics",
        "Datasets from files or PostgreSQL queries: profiles, read-only SQL, charts, stored predictions and patterns.",
        requires=("duckdb", "pyarrow", "pandas", "sklearn", "statsmodels", "vl_convert", "openpyxl"),
    ),
)


def get(name: str) -> ServerSpec:
    """The spec named ``name``; a clear error lists the known names."""
    for spec in SERVERS:
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in SERVERS)
    raise KeyError(f"Unknown server {name!r}. Known servers: {known}")


def names(*, include_examples: bool = True) -> list[str]:
    return [s.name for s in SERVERS if include_examples or not s.example]
