"""Fixtures of the documentation tests: settings wired to this test's database, Redis and a folder root."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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
