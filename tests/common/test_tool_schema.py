"""Advertised tool schemas are compacted without changing what they accept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from mcp import Client

from common.tool_schema import compact
from servers.notes.server import build
from servers.notes.settings import Settings

pytestmark = pytest.mark.anyio


def test_compact_schemas_keep_meaning_and_drop_noise() -> None:
    schema = {
        "title": "xArguments",
        "properties": {
            "title": {"title": "Title", "type": "string", "description": "a property named title stays"},
            "n": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None, "title": "N"},
        },
        "required": ["title"],
    }
    assert compact(schema, nullable_as_type=False) == {
        "properties": {
            "title": {"type": "string", "description": "a property named title stays"},
            "n": {"type": "integer"},
        },
        "required": ["title"],
    }
    out = compact(schema, nullable_as_type=True)
    assert out["properties"]["n"] == {"type": ["integer", "null"]}
    assert "required" not in out


async def test_a_compacted_tool_still_validates_and_answers(make_settings: Callable[..., Any]) -> None:
    settings = make_settings(Settings, embedding_model="hash-384")
    async with Client(build(settings)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        search = tools["search_notes"]
        assert "title" not in search.input_schema["properties"]["query"]
        assert search.input_schema["properties"]["tag"] == {
            "type": "string",
            "maxLength": 50,
            "description": "Only notes carrying this tag.",
        }
        ok = await client.call_tool("search_notes", {"query": "anything", "tag": None})
        assert not ok.is_error
        bad = await client.call_tool("search_notes", {"query": "anything", "limit": "many"})
        assert bad.is_error
