"""Qdrant backend, for when vectors outgrow one PostgreSQL: same protocol, same filters, same scores.

Collections are named ``<server>__<name>`` so servers sharing one Qdrant never collide. Qdrant
point ids must be UUIDs or integers, so each string id maps to a UUIDv5 and the original is kept
in the payload under ``_id`` (never shown to callers). The collection's model and dimension live
in Qdrant's collection metadata so a mismatch is caught on every process, not just the creator.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import AsyncQdrantClient, models

from common.errors import InvalidInput, NotFound
from common.logging import get_logger, redact
from common.vectors.base import (
    RESERVED_PAYLOAD_KEY,
    AnyOf,
    Between,
    CollectionInfo,
    Condition,
    Eq,
    Scalar,
    SearchHit,
    VectorRecord,
    as_vector,
    check_collection_name,
    check_dim,
    check_id,
    check_limit,
    check_payload,
    check_threshold,
    mismatch,
    parse_filter,
)

log = get_logger(__name__)

_SERVER = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_ID_NAMESPACE = uuid.UUID("6f1c3f0e-8a52-5c1e-9d7a-2b1e0c4d5a6f")
_UPSERT_BATCH = 256


def point_id(record_id: str) -> str:
    """The stable UUID Qdrant stores for a string id."""
    return str(uuid.uuid5(_ID_NAMESPACE, record_id))


def _eq_condition(key: str, value: Scalar) -> models.Condition:
    if isinstance(value, float):  # MatchValue takes only str, int and bool
        return models.FieldCondition(key=key, range=models.Range(gte=value, lte=value))
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def compile_filter(conditions: Sequence[Condition], ids: Sequence[str] | None = None) -> models.Filter | None:
    """The Qdrant filter for our filter language (and, optionally, a set of ids)."""
    must: list[models.Condition] = []
    if ids is not None:
        must.append(models.HasIdCondition(has_id=[point_id(i) for i in ids]))
    for cond in conditions:
        if isinstance(cond, Eq):
            must.append(_eq_condition(cond.field, cond.value))
        elif isinstance(cond, AnyOf):
            values = cond.values
            all_str = all(isinstance(v, str) for v in values)
            all_int = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
            if all_str or all_int:  # MatchAny takes only a list of strings or a list of integers
                must.append(models.FieldCondition(key=cond.field, match=models.MatchAny(any=list(values))))  # type: ignore[arg-type]
            else:
                must.append(models.Filter(should=[_eq_condition(cond.field, v) for v in values]))
        elif isinstance(cond, Between):
            if cond.kind == "number":
                rng: models.Range | models.DatetimeRange = models.Range(
                    gt=cond.gt,  # type: ignore[arg-type]
                    gte=cond.gte,  # type: ignore[arg-type]
                    lt=cond.lt,  # type: ignore[arg-type]
                    lte=cond.lte,  # type: ignore[arg-type]
                )
            else:
                rng = models.DatetimeRange(gt=cond.gt, gte=cond.gte, lt=cond.lt, lte=cond.lte)  # type: ignore[arg-type]
            must.append(models.FieldCondition(key=cond.field, range=rng))
    return models.Filter(must=must) if must else None


def _public(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (payload or {}).items() if k != RESERVED_PAYLOAD_KEY}


class QdrantIndex:
    """A :class:`~common.vectors.VectorIndex` on Qdrant: a server at ``url``, local files at ``path``, else memory."""

    backend = "qdrant"

    def __init__(
        self,
        server: str,
        *,
        url: str | None = None,
        path: str | Path | None = None,
        api_key: str | None = None,
        location: str | None = None,
    ) -> None:
        if not _SERVER.match(server):
            raise ValueError(f"invalid server name {server!r}")
        self.server = server
        if url:
            self.client = AsyncQdrantClient(url=url, api_key=api_key)
            self.mode = "remote"
        elif path is not None:
            Path(path).mkdir(parents=True, exist_ok=True)
            self.client = AsyncQdrantClient(path=str(path))
            self.mode = "local"
        else:
            self.client = AsyncQdrantClient(location=location or ":memory:")
            self.mode = "memory"
        # (dim, model) per collection: both are fixed for a collection's lifetime.
        self._meta_cache: dict[str, tuple[int, str | None]] = {}

    def _full(self, name: str) -> str:
        return f"{self.server}__{check_collection_name(name)}"

    async def _meta(self, name: str) -> tuple[int, str | None]:
        full = self._full(name)
        cached = self._meta_cache.get(full)
        if cached is not None:
            return cached
        if not await self.client.collection_exists(full):
            raise NotFound(f"Vector collection {name!r} does not exist; create it with ensure_collection first.")
        info = await self.client.get_collection(full)
        vectors = info.config.params.vectors
        size = vectors.size if isinstance(vectors, models.VectorParams) else None
        metadata = getattr(info.config, "metadata", None) or {}
        dim = int(size if size is not None else metadata.get("dim", 0))
        model = metadata.get("model")
        meta = (dim, str(model) if model is not None else None)
        self._meta_cache[full] = meta
        return meta

    async def ensure_collection(self, name: str, *, dim: int, model: str) -> None:
        """Create the collection (cosine) if missing; a second creator racing us is tolerated."""
        full = self._full(name)
        check_dim(dim)
        if not await self.client.collection_exists(full):
            try:
                await self.client.create_collection(
                    full,
                    vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
                    metadata={"model": model, "dim": dim, "created_at": datetime.now(UTC).isoformat()},
                )
            except Exception:
                if not await self.client.collection_exists(full):
                    raise
        self._meta_cache.pop(full, None)
        have_dim, have_model = await self._meta(name)
        if have_dim != dim or (have_model is not None and have_model != model):
            raise mismatch(name, have_dim, have_model, dim, model)

    async def _checked(self, name: str, model: str | None) -> tuple[int, str | None]:
        dim, have_model = await self._meta(name)
        if model is not None and have_model is not None and model != have_model:
            raise mismatch(name, dim, have_model, dim, model)
        return dim, have_model

    async def upsert(self, name: str, records: Sequence[VectorRecord], *, model: str | None = None) -> int:
        """Insert or replace by id, in batches; waits until Qdrant has applied each batch."""
        full = self._full(name)
        if not records:
            return 0
        dim, have_model = await self._checked(name, model)
        points: dict[str, models.PointStruct] = {}
        for r in records:
            rid = check_id(r.id)
            payload = check_payload(r.payload)
            payload[RESERVED_PAYLOAD_KEY] = rid
            vec = as_vector(name, r.vector, dim, have_model)
            points[rid] = models.PointStruct(id=point_id(rid), vector=vec.tolist(), payload=payload)
        batch = list(points.values())  # the last of duplicate ids wins, as in PostgreSQL
        for start in range(0, len(batch), _UPSERT_BATCH):
            await self.client.upsert(full, points=batch[start : start + _UPSERT_BATCH], wait=True)
        return len(records)

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
        full = self._full(name)
        check_limit(limit)
        threshold = check_threshold(score_threshold)
        flt = compile_filter(parse_filter(filter))
        dim, have_model = await self._checked(name, model)
        query = as_vector(name, vector, dim, have_model)
        result = await self.client.query_points(
            full,
            query=query.tolist(),
            limit=limit,
            query_filter=flt,
            score_threshold=threshold,
            with_payload=True,
        )
        return [
            SearchHit(str((p.payload or {}).get(RESERVED_PAYLOAD_KEY, p.id)), float(p.score), _public(p.payload))
            for p in result.points
        ]

    async def delete(
        self, name: str, *, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> int:
        full = self._full(name)
        conditions = parse_filter(filter)
        if ids is None and not conditions:
            raise InvalidInput("delete needs ids or a non-empty filter; use drop_collection to remove everything.")
        id_list = [check_id(i) for i in ids] if ids is not None else None
        await self._meta(name)
        if id_list == []:
            return 0
        flt = compile_filter(conditions, id_list)
        assert flt is not None
        n = (await self.client.count(full, count_filter=flt, exact=True)).count
        if n:
            await self.client.delete(full, points_selector=models.FilterSelector(filter=flt), wait=True)
        return int(n)

    async def scroll(
        self, name: str, *, filter: Mapping[str, Any] | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[VectorRecord], str | None]:
        full = self._full(name)
        check_limit(limit)
        offset: str | None = None
        if cursor:
            try:
                offset = str(uuid.UUID(cursor))
            except ValueError:
                raise InvalidInput("The cursor is not one this index returned; start again without a cursor.") from None
        flt = compile_filter(parse_filter(filter))
        await self._meta(name)
        points, next_offset = await self.client.scroll(
            full, scroll_filter=flt, limit=limit, offset=offset, with_payload=True, with_vectors=True
        )
        records = [
            VectorRecord(
                str((p.payload or {}).get(RESERVED_PAYLOAD_KEY, p.id)),
                np.asarray(p.vector, dtype=np.float32),
                _public(p.payload),
            )
            for p in points
        ]
        return records, (str(next_offset) if next_offset is not None else None)

    async def count(self, name: str, filter: Mapping[str, Any] | None = None) -> int:
        full = self._full(name)
        flt = compile_filter(parse_filter(filter))
        await self._meta(name)
        return int((await self.client.count(full, count_filter=flt, exact=True)).count)

    async def info(self, name: str) -> CollectionInfo:
        dim, model = await self._meta(name)
        return CollectionInfo(name=name, dim=dim, model=model, count=await self.count(name))

    async def list_collections(self) -> list[str]:
        prefix = f"{self.server}__"
        result = await self.client.get_collections()
        return sorted(c.name[len(prefix) :] for c in result.collections if c.name.startswith(prefix))

    async def drop_collection(self, name: str) -> bool:
        full = self._full(name)
        self._meta_cache.pop(full, None)
        if not await self.client.collection_exists(full):
            return False
        await self.client.delete_collection(full)
        return True

    async def health(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            await self.client.get_collections()
            ok, error = True, None
        except Exception as exc:
            ok, error = False, redact(str(exc)) or type(exc).__name__
        return {
            "ok": ok,
            "backend": self.backend,
            "mode": self.mode,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            "error": error,
        }

    async def close(self) -> None:
        await self.client.close()
