"""Fixtures of the knowledge-graph tests: settings with every tool exposed, and a call helper."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from servers.inference_enhancement.settings import Settings


@pytest.fixture
def settings(make_settings: Callable[..., Any]) -> Settings:
    """Every tool, the fast deterministic embedder (meaning is tested separately with the real model)."""
    s: Settings = make_settings(Settings, tools=None, embedding_model="hash-384", min_similarity=0.2)
    return s
