"""Fixtures of the knowledge-graph tests: settings with every tool exposed, and the service opened on them."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from common.runtime import open_deps
from servers.inference_enhancement.service import NAME, GraphService
from servers.inference_enhancement.settings import Settings

OpenGraph = Callable[..., AbstractAsyncContextManager[GraphService]]


@pytest.fixture
def settings(make_settings: Callable[..., Any]) -> Settings:
    """Every tool, the fast deterministic embedder (meaning is tested separately with the real model)."""
    s: Settings = make_settings(
        Settings, tools=None, embedding_model="hash-384", min_similarity=0.2, memory_file_path=None
    )
    return s


@pytest.fixture
def open_graph(settings: Settings) -> OpenGraph:
    """``async with open_graph(settings, embedder=...) as svc``: the service on this test's migrated database."""

    @asynccontextmanager
    async def opened(s: Settings | None = None, *, embedder: Any = None) -> AsyncIterator[GraphService]:
        s = s or settings
        async with open_deps(NAME, s) as deps:
            if embedder is not None:
                deps = dataclasses.replace(deps, embedder=embedder)
            async with GraphService.open(deps, s) as svc:
                yield svc

    return opened


@pytest.fixture
async def graph(open_graph: OpenGraph) -> AsyncIterator[GraphService]:
    """The service with the test settings and the hash embedder."""
    async with open_graph() as svc:
        yield svc
