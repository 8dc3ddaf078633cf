"""The vector index protocol, its record types, validation and filter language.

Vector search behind one protocol: pgvector in the server's own schema (default) or Qdrant.

Both backends share the record types, the validation and the small filter language defined here,
so a server written against :class:`VectorIndex` behaves the same on either (one contract test
suite runs on both). Scores are cosine similarity: 1 is identical, higher is better.

Filter language (keys AND-ed; field names ``^[a-zA-Z_][a-zA-Z0-9_]{0,63}$``)::

    {"kind": "note"}                           equality (a list-valued field matches if any element does)
    {"tag": {"in": ["a", "b"]}}                any of
    {"year": {"gte": 2020, "lt": 2024}}        range over numbers (gt, gte, lt, lte)
    {"at": {"gte": "2024-01-01T00:00:00Z"}}    range over ISO-8601 timestamps (naive = UTC)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np

from common.errors import DimensionMismatch, InvalidInput

COLLECTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
FIELD_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$")
#: Payload key reserved for the original id in Qdrant (whose point ids must be UUIDs).
RESERVED_PAYLOAD_KEY = "_id"
MAX_DIM = 2000  # pgvector's HNSW limit for the `vector` type
MAX_LIMIT = 1000
MAX_ID_LENGTH = 512
MAX_FILTER_KEYS = 16
MAX_IN_VALUES = 1000
RANGE_OPS = ("gt", "gte", "lt", "lte")

Scalar = str | int | float | bool


@dataclass
class VectorRecord:
    """One stored item: its id, its vector and a JSON-able payload."""

    id: str
    vector: np.ndarray | Sequence[float]
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchHit:
    """A search result; ``score`` is cosine similarity (higher is better)."""

    id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class CollectionInfo:
    """What a collection holds: its vectors' dimension and model, and how many there are."""

    name: str
    dim: int
    model: str | None
    count: int


# -- filters -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Eq:
    field: str
    value: Scalar


@dataclass(frozen=True)
class AnyOf:
    field: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Between:
    """A range; ``kind`` says whether the bounds are numbers or (UTC) datetimes."""

    field: str
    kind: str  # "number" | "datetime"
    gt: float | datetime | None = None
    gte: float | datetime | None = None
    lt: float | datetime | None = None
    lte: float | datetime | None = None


Condition = Eq | AnyOf | Between

_FILTER_HELP = (
    'Use {"field": value}, {"field": {"in": [v1, v2]}} or {"field": {"gte": x, "lte": y}} '
    "(numbers or ISO-8601 timestamps); several keys are AND-ed."
)


def _scalar(name: str, value: Any) -> Scalar:
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"Filter on {name!r}: {value} is not a finite number.")
        return value
    raise InvalidInput(
        f"Filter on {name!r}: {type(value).__name__} values are not supported; use a string, number or boolean. "
        + _FILTER_HELP
    )


def _bound(name: str, op: str, value: Any) -> tuple[str, float | datetime]:
    if isinstance(value, bool):
        raise InvalidInput(f"Filter on {name!r}: {op} needs a number or an ISO-8601 timestamp, not a boolean.")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidInput(f"Filter on {name!r}: {op} must be a finite number.")
        return "number", float(value)
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidInput(
                f"Filter on {name!r}: {op}={value!r} is neither a number nor an ISO-8601 timestamp "
                "(e.g. 2024-05-01 or 2024-05-01T12:00:00Z)."
            ) from None
    else:
        raise InvalidInput(f"Filter on {name!r}: {op} needs a number or an ISO-8601 timestamp.")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return "datetime", parsed.astimezone(UTC)


def parse_filter(flt: Mapping[str, Any] | None) -> list[Condition]:
    """Validate the filter language into conditions; anything else raises :class:`InvalidInput`."""
    if flt is None:
        return []
    if not isinstance(flt, Mapping):
        raise InvalidInput("A filter must be an object. " + _FILTER_HELP)
    if len(flt) > MAX_FILTER_KEYS:
        raise InvalidInput(f"A filter may have at most {MAX_FILTER_KEYS} fields.")
    conditions: list[Condition] = []
    for name, spec in flt.items():
        if not isinstance(name, str) or not FIELD_NAME.match(name):
            raise InvalidInput(
                f"Filter field {name!r} is not a valid name: use letters, digits and _ (at most 64, not starting "
                "with a digit)."
            )
        if name == RESERVED_PAYLOAD_KEY:
            raise InvalidInput(f"Filter field {RESERVED_PAYLOAD_KEY!r} is reserved; filter by id with ids=[...].")
        if not isinstance(spec, Mapping):
            conditions.append(Eq(name, _scalar(name, spec)))
            continue
        unknown = set(spec) - {"in", *RANGE_OPS}
        if unknown or not spec:
            raise InvalidInput(
                f"Filter on {name!r}: unknown operator(s) {sorted(map(str, unknown)) or '(none)'}. " + _FILTER_HELP
            )
        if "in" in spec:
            values = spec["in"]
            if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
                raise InvalidInput(f'Filter on {name!r}: "in" needs a non-empty list of values.')
            if len(values) > MAX_IN_VALUES:
                raise InvalidInput(f'Filter on {name!r}: "in" takes at most {MAX_IN_VALUES} values.')
            conditions.append(AnyOf(name, tuple(dict.fromkeys(_scalar(name, v) for v in values))))
        bounds = {op: _bound(name, op, spec[op]) for op in RANGE_OPS if op in spec}
        if bounds:
            kinds = {kind for kind, _ in bounds.values()}
            if len(kinds) > 1:
                raise InvalidInput(f"Filter on {name!r}: range bounds must all be numbers or all be timestamps.")
            conditions.append(Between(name, kinds.pop(), **{op: v for op, (_, v) in bounds.items()}))
    return conditions


# -- validation shared by the backends --------------------------------------------------------


def check_collection_name(name: str) -> str:
    """Collection names become table names, so they are kept short, lowercase and plain."""
    if not isinstance(name, str) or not COLLECTION_NAME.match(name):
        raise InvalidInput(
            f"Collection name {name!r} is invalid: use lowercase letters, digits and _, starting with a letter, "
            "at most 41 characters."
        )
    return name


def check_dim(dim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
        raise InvalidInput(f"Vector dimension must be an integer between 1 and {MAX_DIM}, got {dim!r}.")
    return dim


def check_limit(limit: int, what: str = "limit") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"{what} must be between 1 and {MAX_LIMIT}, got {limit!r}.")
    return limit


def check_id(record_id: Any) -> str:
    if not isinstance(record_id, str) or not record_id or len(record_id) > MAX_ID_LENGTH:
        raise InvalidInput(f"Vector ids must be non-empty strings of at most {MAX_ID_LENGTH} characters.")
    return record_id


def mismatch(name: str, have_dim: int, have_model: str | None, dim: int, model: str | None) -> DimensionMismatch:
    """The error for a vector or model that does not fit the collection, with the way out."""
    have = f"{have_dim}-d vectors" + (f" from model {have_model!r}" if have_model else "")
    got = f"{dim}-d vectors" + (f" from model {model!r}" if model else "")
    return DimensionMismatch(
        f"Collection {name!r} holds {have}, but got {got}. Vectors from different models cannot be compared: "
        "re-embed the data into a new collection (another name) with the new model, or use the collection's model."
    )


def as_vector(name: str, vector: Any, dim: int, model: str | None = None) -> np.ndarray:
    """A float32, L2-normalised copy of ``vector``; wrong length, NaN or zero vectors are refused."""
    try:
        arr = np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidInput("A vector must be a sequence of numbers.") from None
    if arr.shape[0] != dim:
        raise mismatch(name, dim, model, int(arr.shape[0]), None)
    if not np.all(np.isfinite(arr)):
        raise InvalidInput("A vector contains NaN or infinite values; re-embed the text.")
    norm = float(np.linalg.norm(arr))
    if norm == 0.0:
        raise InvalidInput("A zero vector has no direction, so cosine similarity is undefined; re-embed the text.")
    return (arr / np.float32(norm)).astype(np.float32, copy=False)


def check_payload(payload: Any) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, Mapping):
        raise InvalidInput("A vector payload must be an object.")
    if RESERVED_PAYLOAD_KEY in payload:
        raise InvalidInput(f"Payload key {RESERVED_PAYLOAD_KEY!r} is reserved; store your own id under another key.")
    return dict(payload)


def check_threshold(score_threshold: float | None) -> float | None:
    if score_threshold is None:
        return None
    if isinstance(score_threshold, bool) or not isinstance(score_threshold, int | float):
        raise InvalidInput("score_threshold must be a number between -1 and 1.")
    if not -1.0 <= float(score_threshold) <= 1.0:
        raise InvalidInput(f"score_threshold must be between -1 and 1 (cosine similarity), got {score_threshold}.")
    return float(score_threshold)


# -- the protocol --------------------------------------------------------------------------------


@runtime_checkable
class VectorIndex(Protocol):
    """Named collections of vectors with JSON payloads, searched by cosine similarity."""

    backend: str

    async def ensure_collection(self, name: str, *, dim: int, model: str) -> None:
        """Create the collection if missing; raise ``DimensionMismatch`` if it exists with another dim/model."""
        ...

    async def upsert(self, name: str, records: Sequence[VectorRecord], *, model: str | None = None) -> int:
        """Insert or replace records by id; returns how many were written."""
        ...

    async def search(
        self,
        name: str,
        vector: np.ndarray | Sequence[float],
        *,
        limit: int = 10,
        filter: Mapping[str, Any] | None = None,
        score_threshold: float | None = None,
        model: str | None = None,
    ) -> list[SearchHit]:
        """The ``limit`` nearest records (best first) matching ``filter`` and scoring at least the threshold."""
        ...

    async def delete(
        self, name: str, *, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> int:
        """Delete by ids and/or filter (both given: ids that match the filter); returns how many went."""
        ...

    async def scroll(
        self, name: str, *, filter: Mapping[str, Any] | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[VectorRecord], str | None]:
        """One page of records in a stable order, and the cursor of the next page (``None`` at the end)."""
        ...

    async def count(self, name: str, filter: Mapping[str, Any] | None = None) -> int:
        """How many records match ``filter`` (all when ``None``)."""
        ...

    async def info(self, name: str) -> CollectionInfo:
        """Dimension, model and size of a collection; ``NotFound`` if it does not exist."""
        ...

    async def list_collections(self) -> list[str]:
        """Names of this server's collections."""
        ...

    async def drop_collection(self, name: str) -> bool:
        """Delete a collection and its vectors; returns whether it existed."""
        ...

    async def health(self) -> dict[str, Any]:
        """A cheap round trip that never raises: ``{"ok": bool, "backend": ..., ...}``."""
        ...

    async def close(self) -> None:
        """Release the backend's connections (a pgvector index leaves the shared pool open)."""
        ...
