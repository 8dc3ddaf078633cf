"""Test-wide configuration; the fixtures live in ``common.testing`` (loaded by pytest's addopts)."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
