"""Smaller advertised tool schemas with the same meaning: ``tools/list`` is paid for on every turn.

pydantic adds a ``title`` to every property and model, wraps each optional value in
``anyOf [X, null]`` and lists every field of a result as required. After registration each tool's
advertised schemas are rewritten without them (an omitted optional argument means null; every
result field is always present). Argument validation is unchanged: the SDK validates with the
pydantic model, not with the advertised schema.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer


def _is_null(schema: Any) -> bool:
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
        if output and key in ("description", "required", "format"):
            continue
        if key == "additionalProperties":
            continue  # arguments are still validated strictly; advertising it costs bytes on every object
        if key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {k: compact(v, output=output) for k, v in value.items()}
        else:
            out[key] = compact(value, output=output)
    options = out.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and any(_is_null(o) for o in options):
        other = next(o for o in options if not _is_null(o))
        if isinstance(other, dict):
            del out["anyOf"]
            out = {**other, **out}
            if output and isinstance(other.get("type"), str):
                out["type"] = [other["type"], "null"]
    if "default" in out and (out["default"] is None or out["default"] == []):
        del out["default"]
    return out


def inline(schema: Any, defs: dict[str, Any] | None = None) -> Any:
    """``schema`` with every ``$ref`` replaced by its definition (each model is used once per tool)."""
    if isinstance(schema, dict):
        defs = schema.get("$defs", defs)
        ref = schema.get("$ref")
        if isinstance(ref, str) and defs is not None and ref.startswith("#/$defs/"):
            return inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [inline(s, defs) for s in schema]
    return schema


def shallow(schema: dict[str, Any]) -> dict[str, Any]:
    """A result schema reduced to its top-level fields and their JSON types (the docs describe the rest)."""
    props = {}
    for key, value in schema.get("properties", {}).items():
        kind = value.get("type") if isinstance(value, dict) else None
        props[key] = {"type": kind} if kind else {}
    return {"type": "object", "properties": props}


def compact_tools(server: MCPServer[Any]) -> None:
    """Rewrite the advertised input and output schemas of every registered tool in place."""
    for tool in server._tool_manager.list_tools():  # no public way to reach a registered tool's schema
        tool.parameters = compact(inline(tool.parameters), output=False)
        if tool.annotations is not None:
            tool.annotations.title = None  # the tool's own title says it already
        meta = tool.fn_metadata
        if meta.output_schema is not None:
            meta.output_schema = shallow(compact(inline(meta.output_schema), output=True))
