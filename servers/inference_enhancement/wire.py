"""The reference memory server's two result channels, for the nine tools it has.

Its text content is ``JSON.stringify(value, null, 2)`` of a bare list (the ``create_*`` tools and
``add_observations``), of the graph object (``read_graph``, ``search_nodes``, ``open_nodes``) or the
plain message (``delete_*``); its structured content is the object (``{entities}``, ``{relations}``,
``{results}``, ``{success, message}``, ``{entities, relations}``). A graph gains ``next_cursor`` in
both channels only when there is a further page, so a graph that fits one page is sent exactly as
the reference sends it.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

from servers.inference_enhancement.models import Done, Graph


def js_json(value: Any) -> str:
    """``JSON.stringify(value, null, 2)``: two-space indent, ``": "`` after keys, non-ASCII unescaped."""
    return json.dumps(value, ensure_ascii=False, indent=2)


def _result(text: str, structured: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


def listed(model: BaseModel, key: str) -> CallToolResult:
    """A ``{key: [...]}`` result whose text is the bare list."""
    data = model.model_dump(mode="json", by_alias=True)
    return _result(js_json(data[key]), data)


def done(model: Done) -> CallToolResult:
    """A delete's result: its message as the text."""
    return _result(model.message, model.model_dump(mode="json"))


def graph(model: Graph) -> CallToolResult:
    """A graph: ``{entities, relations}``, plus ``next_cursor`` when a further page exists."""
    exclude = {"next_cursor"} if model.next_cursor is None else set()
    data = model.model_dump(mode="json", by_alias=True, exclude=exclude)
    return _result(js_json(data), data)
