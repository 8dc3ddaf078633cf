"""Smaller tool schemas with the same meaning, because ``tools/list`` is sent into the client's context.

pydantic's schemas are verbose: a generated ``title`` on every property and an
``anyOf [X, null]`` wrapper for every optional value. Sixteen tools of such schemas cost about
three times the 8 KB a server may spend, so ``common.runtime.add_tool`` rewrites each tool's advertised input and
output schema is rewritten: titles dropped, an optional input (its default being null) advertised
as plain ``X`` (omitting it means null), an optional output as ``"type": [X, "null"]``, and output
schemas lose descriptions and ``required`` lists (every field of a result is always present). Validation
is unaffected: the SDK validates arguments with the pydantic model, not with the advertised schema.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null" and len(schema) == 1


def compact(schema: Any, *, nullable_as_type: bool) -> Any:
    """A compact copy of ``schema`` (see the module docstring)."""
    if isinstance(schema, list):
        return [compact(s, nullable_as_type=nullable_as_type) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key == "description" and nullable_as_type and isinstance(value, str):
            continue  # output schemas: the field names say enough
        if key == "additionalProperties" and value is True:
            continue  # the default
        if key == "format" and nullable_as_type:
            continue
        if key == "required" and nullable_as_type:
            continue  # every output field is always present; listing them all again costs context
        if key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {k: compact(v, nullable_as_type=nullable_as_type) for k, v in value.items()}
        else:
            out[key] = compact(value, nullable_as_type=nullable_as_type)
    options = out.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and any(_is_null(o) for o in options):
        other = next(o for o in options if not _is_null(o))
        if isinstance(other, dict) and (not nullable_as_type or isinstance(other.get("type"), str)):
            del out["anyOf"]
            merged = {**other, **out}
            if nullable_as_type:
                merged["type"] = [other["type"], "null"]
            out = merged
    if out.get("default", 0) is None:
        del out["default"]
    return out


def compact_tool(server: MCPServer[Any], name: str) -> None:
    """Rewrite the advertised schemas of one registered tool in place (idempotent)."""
    tool = server._tool_manager.get_tool(name)  # no public way to reach a registered tool's schema
    if tool is None:
        return
    tool.parameters = compact(tool.parameters, nullable_as_type=False)
    meta = tool.fn_metadata
    if meta.output_schema is not None:
        meta.output_schema = compact(meta.output_schema, nullable_as_type=True)


def compact_tools(server: MCPServer[Any]) -> None:
    """Rewrite the advertised schemas of every registered tool in place."""
    for tool in server._tool_manager.list_tools():
        compact_tool(server, tool.name)
