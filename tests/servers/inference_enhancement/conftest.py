"""Fixtures of the knowledge-graph tests: settings with every tool exposed, and a call helper."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from mcp import Client

from servers.inference_enhancement.settings import Settings


@pytest.fixture
def settings(make_settings: Callable[..., Any]) -> Settings:
    """Every tool, the fast deterministic embedder (meaning is tested separately with the real model)."""
    s: Settings = make_settings(Settings, tools=None, embedding_model="hash-384", min_similarity=0.2)
    return s


async def call(client: Client, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await client.call_tool(tool, args or {})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def fail(client: Client, tool: str, args: dict[str, Any]) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, result.structured_content
    text: str = result.content[0].text  # type: ignore[union-attr]
    return text
