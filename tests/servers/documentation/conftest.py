"""Fixtures of the documentation tests: settings wired to this test's database, Redis and a folder root."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

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


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def fails(client: Client, tool: str, args: dict[str, Any], *expected: str) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, result.structured_content
    text: str = result.content[0].text  # type: ignore[union-attr]
    for part in expected:
        assert part in text, text
    return text
