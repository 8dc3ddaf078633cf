"""Result models from database rows: columns named as the model's fields are copied, the rest are given."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, TypeVar

import asyncpg
from pydantic import BaseModel

T = TypeVar("T")


def _fields(model: type[Any]) -> list[str]:
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    if dataclasses.is_dataclass(model):
        return [f.name for f in dataclasses.fields(model)]
    raise TypeError(f"{model!r} is neither a pydantic model nor a dataclass")


def model_of(model: type[T], row: Mapping[str, Any] | asyncpg.Record, **given: Any) -> T:
    """``model`` built from ``row``: every field that is a column of the row, then ``given`` (which wins).

    Fields that are neither keep their defaults, so a query that leaves out an optional column is fine.
    """
    keys = set(row.keys())
    values = {name: row[name] for name in _fields(model) if name in keys and name not in given}
    return model(**values, **given)


def decoded(record: Mapping[str, Any] | asyncpg.Record | None, *json_columns: str) -> dict[str, Any] | None:
    """A row as a dict with its JSON columns parsed (asyncpg returns json/jsonb as text); None stays None."""
    if record is None:
        return None
    out = dict(record)
    for name in json_columns:
        if isinstance(out.get(name), str):
            out[name] = json.loads(out[name])
    return out
