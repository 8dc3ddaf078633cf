"""Smaller tool schemas with the same meaning, because ``tools/list`` is sent into the client's context.

pydantic's schemas are verbose: a generated ``title`` on every property and an
``anyOf [X, null]`` wrapper for every optional value. Sixteen tools of such schemas cost about
three times the 8 KB a server may spend, so ``common.tools.ToolSet`` rewrites each tool's advertised input and
output schema: titles dropped, an optional input (its default being null) advertised
as plain ``X`` (omitting it means null), an optional output as ``"type": [X, "null"]``, and output
schemas lose descriptions and ``required`` lists (every field of a result is always present). Validation
is unaffected: the SDK validates arguments with the pydantic model, not with the advertised schema.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field


def _drop_title(schema: dict[str, Any]) -> None:
    schema.pop("title", None)


def P(description: str, **kw: Any) -> Any:
    """A tool parameter's ``Field``: its description, and no generated title (tools/list must stay small)."""
    return Field(description=description, json_schema_extra=_drop_title, **kw)


#: The ``cursor`` argument of every paged tool: the ``next_cursor`` of the previous page.
CursorArg = Annotated[str | None, P("From next_cursor.")]


def inline(schema: Any, defs: dict[str, Any] | None = None) -> Any:
    """``schema`` with every local ``$ref`` replaced by its definition."""
    if isinstance(schema, dict):
        defs = schema.get("$defs", defs)
        ref = schema.get("$ref")
        if isinstance(ref, str) and defs is not None and ref.startswith("#/$defs/"):
            return inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [inline(s, defs) for s in schema]
    return schema


def smaller(*schemas: Any) -> Any:
    """The schema whose JSON is shortest."""
    return min(schemas, key=lambda sch: len(json.dumps(sch, separators=(",", ":"))))


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null" and len(schema) == 1


def compact(schema: Any, *, nullable_as_type: bool, lean: bool = False, keep_required: bool = False) -> Any:
    """A compact copy of ``schema`` (see the module docstring).

    ``lean`` also drops ``pattern`` (the pydantic model still enforces it; the description should
    say the shape) and defaults that say nothing (``False``, ``0``, ``""``), for servers whose many
    tools would otherwise not fit the budget. ``keep_required`` keeps the ``required`` lists of an
    output schema (a typed result a client validates against).
    """
    kw: dict[str, Any] = {"nullable_as_type": nullable_as_type, "lean": lean, "keep_required": keep_required}
    if isinstance(schema, list):
        return [compact(s, **kw) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if lean and key == "pattern":
            continue
        if lean and key == "additionalProperties":
            continue  # arguments are still validated by the pydantic model
        if key == "description" and nullable_as_type and isinstance(value, str):
            continue  # output schemas: the field names say enough
        if key == "additionalProperties" and value is True:
            continue  # the default
        if key == "format" and nullable_as_type:
            continue
        if key == "required" and nullable_as_type and not keep_required:
            continue  # every output field is always present; listing them all again costs context
        if key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {k: compact(v, **kw) for k, v in value.items()}
        else:
            out[key] = compact(value, **kw)
    options = out.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and any(_is_null(o) for o in options):
        other = next(o for o in options if not _is_null(o))
        if isinstance(other, dict) and (not nullable_as_type or isinstance(other.get("type"), str)):
            del out["anyOf"]
            merged = {**other, **out}
            if nullable_as_type:
                merged["type"] = [other["type"], "null"]
            out = merged
    if "default" in out and (
        out["default"] is None or (lean and out["default"] in (False, 0, "") and not isinstance(out["default"], list))
    ):
        del out["default"]
    return out


def outline(schema: dict[str, Any]) -> dict[str, Any]:
    """An output schema cut to its top level: the field names, nothing nested.

    Results are still produced and validated by the pydantic models; the outline tells the client
    which fields to expect at a fraction of the bytes.
    """
    return {"type": "object", "properties": {name: {} for name in schema.get("properties") or {}}}
