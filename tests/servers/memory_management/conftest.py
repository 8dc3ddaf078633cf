"""Fixtures of the memory tests: settings on the test's database, and the service opened on them."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from common.runtime import open_deps
from servers.memory_management.service import NAME, MemoryService, Tuning
from servers.memory_management.settings import Settings

OpenMemory = Callable[..., AbstractAsyncContextManager[MemoryService]]


@pytest.fixture
def settings(make_settings: Callable[..., Any]) -> Settings:
    """Every tool, and the deterministic hash embedder (meaning does not matter in most tests)."""
    s: Settings = make_settings(Settings, embedding_model="hash-384", tools=["all"])
    return s


@pytest.fixture
def open_memory(settings: Settings) -> OpenMemory:
    """``async with open_memory(settings, tuning=..., embedder=...) as svc``: the service on a migrated database."""

    @asynccontextmanager
    async def opened(
        s: Settings | None = None, *, tuning: Tuning | None = None, embedder: Any = None
    ) -> AsyncIterator[MemoryService]:
        s = s or settings
        async with open_deps(NAME, s) as deps:
            if embedder is not None:
                deps = dataclasses.replace(deps, embedder=embedder)
            async with MemoryService.open(deps, s, tuning) as svc:
                yield svc

    return opened


@pytest.fixture
async def memory(open_memory: OpenMemory) -> AsyncIterator[MemoryService]:
    """The service with default tuning and the hash embedder."""
    async with open_memory() as svc:
        yield svc
