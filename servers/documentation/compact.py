"""Shrink the advertised tool schemas: tools/list is sent into the client's context on every turn.

Drops generated titles, writes an optional input (default null) as its plain type, and strips
descriptions, formats and ``required`` lists from output schemas (every result field is always
present). Validation is unaffected: the SDK validates with the pydantic models, not these schemas.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer


def _null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema == {"type": "null"}


def compact(schema: Any, *, output: bool) -> Any:
    if isinstance(schema, list):
        return [compact(s, output=output) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if output and key in ("description", "format", "required", "default"):
            continue
        if key == "pattern":
            continue  # validated by the pydantic model; the description says the shape
        if key == "additionalProperties" and value is True:
            continue
        if key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {k: compact(v, output=output) for k, v in value.items()}
        else:
            out[key] = compact(value, output=output)
    options = out.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and any(_null(o) for o in options):
        other = next(o for o in options if not _null(o))
        if isinstance(other, dict) and (not output or isinstance(other.get("type"), str)):
            del out["anyOf"]
            merged = {**other, **out}
            if output:
                merged["type"] = [other["type"], "null"]
            out = merged
    if "default" in out and out["default"] in (None, False, 0, "") and not isinstance(out["default"], list):
        del out["default"]  # the obvious defaults cost context and say nothing
    return out


def outline(schema: dict[str, Any]) -> dict[str, Any]:
    """An output schema cut to its top level: the field names, nothing nested.

    Results are still produced by the pydantic models; the outline only tells the client which
    fields to expect, at a fraction of the bytes.
    """
    props: dict[str, Any] = {name: {} for name in schema.get("properties") or {}}
    return {"type": "object", "properties": props}


def compact_tools(server: MCPServer[Any]) -> None:
    """Rewrite the advertised schemas of every registered tool in place."""
    for tool in server._tool_manager.list_tools():  # no public way to reach a registered tool's schema
        tool.parameters = compact(tool.parameters, output=False)
        meta = tool.fn_metadata
        if meta.output_schema is not None:
            meta.output_schema = outline(meta.output_schema)
