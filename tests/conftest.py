"""Test-wide configuration; the fixtures live in ``common.testing`` (loaded by pytest's addopts)."""

import shutil
import tempfile
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """A private temporary root per run: pytest's shared numbered folders are pruned by concurrent runs."""
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="mcp-suite-pytest-")
        config.add_cleanup(lambda: shutil.rmtree(Path(config.option.basetemp), ignore_errors=True))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
