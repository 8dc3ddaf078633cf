"""Every registered server follows the tool rules of DESIGN.md."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from mcp import Client

from servers import registry

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("name", registry.names())
async def test_every_tool_follows_the_rules(name: str, make_settings: Callable[..., Any]) -> None:
    spec = registry.get(name)
    settings = make_settings(spec.module("settings").Settings)
    async with Client(spec.build(settings)) as client:
        listed = await client.list_tools()
    payload = json.dumps([t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed.tools])
    assert len(payload) <= 8192, f"{name}: tools/list is {len(payload)} bytes; keep it under 8 KB"
    for tool in listed.tools:
        assert re.fullmatch(r"[a-z][a-z0-9_]{0,39}", tool.name), tool.name
        assert tool.title, f"{tool.name} needs a title"
        assert tool.description, f"{tool.name} needs a description"
        assert len(tool.description) <= 400, f"{tool.name}: keep the description short"
        ann = tool.annotations
        assert ann is not None, tool.name
        for hint in ("read_only_hint", "destructive_hint", "idempotent_hint", "open_world_hint"):
            assert getattr(ann, hint) is not None, f"{tool.name}: {hint} must be set explicitly"
        assert tool.output_schema is not None, f"{tool.name} must return a pydantic model"
        for pname, prop in tool.input_schema.get("properties", {}).items():
            assert prop.get("description"), f"{tool.name}.{pname} needs a description"
        for pname in tool.input_schema.get("properties", {}):
            if pname in ("limit",):
                assert "maximum" in tool.input_schema["properties"][pname], f"{tool.name}.limit needs a maximum"
