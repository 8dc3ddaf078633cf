"""Fixtures of the documentation tests: settings wired to this test's database, Redis and a folder root,
and the service itself on a fresh database (no MCP)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from common.runtime import open_deps
from servers.documentation.service import DocumentationService
from servers.documentation.settings import Settings


@pytest.fixture
def docs_root(tmp_path: Path) -> Path:
    root = tmp_path / "allowed"
    root.mkdir()
    return root


@pytest.fixture
def settings(make_settings: Callable[..., Any], docs_root: Path) -> Settings:
    s: Settings = make_settings(Settings, embedding_model="hash-384", allowed_roots=[docs_root])
    return s


@pytest.fixture
async def svc(settings: Settings) -> AsyncIterator[DocumentationService]:
    """The documentation service on this test's database (migrated on start), as the lifespan runs it."""
    async with open_deps("documentation", settings) as deps, DocumentationService.open(deps, settings) as service:
        yield service
