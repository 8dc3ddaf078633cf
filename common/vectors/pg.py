"""pgvector backend: one table per collection in the server's own schema, HNSW over cosine distance.

Tables are created at run time (collections are data, not schema), inside a transaction holding
an advisory lock so processes that start together create each one exactly once. User values
only ever reach SQL as ``$n`` parameters; identifiers are validated names, quoted.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import numpy as np

from common.db import Database
from common.errors import InvalidInput, NotFound
from common.logging import get_logger, redact
from common.vectors.base import (
    AnyOf,
    Between,
    CollectionInfo,
    Condition,
    Eq,
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

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _ident(name: str) -> str:
    if not _SCHEMA.match(name):
        raise ValueError(f"invalid SQL identifier {name!r}")
    return f'"{name}"'


def compile_filter(conditions: Sequence[Condition], first_param: int) -> tuple[str, list[Any], bool]:
    """SQL for ``conditions`` over ``payload`` with ``$n`` parameters from ``first_param``.

    Returns (sql, params, needs_utc): datetime ranges compare in UTC, so the caller pins the
    transaction's time zone (naive timestamps in payloads then mean UTC, as in Qdrant).
    """
    parts: list[str] = []
    params: list[Any] = []
    needs_utc = False

    def p(value: Any) -> str:
        params.append(value)
        return f"${first_param + len(params) - 1}"

    for cond in conditions:
        if isinstance(cond, Eq):
            # Containment uses the GIN index; the second form makes a list-valued field match
            # when any element equals the value (Qdrant's semantics).
            scalar = p(json.dumps({cond.field: cond.value}))
            listed = p(json.dumps({cond.field: [cond.value]}))
            parts.append(f"(payload @> {scalar}::text::jsonb OR payload @> {listed}::text::jsonb)")
        elif isinstance(cond, AnyOf):
            docs = [json.dumps({cond.field: v}) for v in cond.values]
            docs += [json.dumps({cond.field: [v]}) for v in cond.values]
            parts.append(f"payload @> ANY({p(docs)}::text[]::jsonb[])")
        elif isinstance(cond, Between):
            key = p(cond.field)
            if cond.kind == "number":
                value = f"(CASE WHEN jsonb_typeof(payload->{key}) = 'number' THEN (payload->>{key})::float8 END)"
                cast = "float8"
            else:
                needs_utc = True
                value = (
                    f"(CASE WHEN jsonb_typeof(payload->{key}) = 'string' "
                    f"AND pg_input_is_valid(payload->>{key}, 'timestamptz') "
                    f"THEN (payload->>{key})::timestamptz END)"
                )
                cast = "timestamptz"
            for op, sym in (("gt", ">"), ("gte", ">="), ("lt", "<"), ("lte", "<=")):
                bound = getattr(cond, op)
                if bound is not None:
                    parts.append(f"{value} {sym} {p(bound)}::{cast}")
    return (" AND ".join(parts) if parts else "TRUE"), params, needs_utc


def ef_search(limit: int) -> int:
    """HNSW candidate list size for a query returning ``limit`` rows (pgvector caps it at 1000)."""
    return min(1000, max(100, limit * 4))


def _payload(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        loaded: dict[str, Any] = json.loads(value)
        return loaded
    return dict(value or {})


def _encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode("utf-8")).decode("ascii")


def _decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidInput("The cursor is not one this index returned; start again without a cursor.") from None


class PgVectorIndex:
    """Collections as tables ``<schema>.vectors__<name>``, catalogued in ``<schema>.vector_collections``."""

    backend = "pgvector"

    def __init__(self, db: Database, schema: str) -> None:
        self.db = db
        self.schema = schema
        self._s = _ident(schema)
        self._catalog = f"{self._s}.vector_collections"

    def _table(self, name: str) -> str:
        return f"{self._s}.{_ident('vectors__' + check_collection_name(name))}"

    async def _meta(self, conn: asyncpg.Connection, name: str) -> tuple[int, str]:
        """The collection's (dim, model); ``NotFound`` if the catalog (or the entry) is missing."""
        try:
            row = await conn.fetchrow(f"SELECT dim, model FROM {self._catalog} WHERE name = $1", name)
        except asyncpg.exceptions.UndefinedTableError:
            row = None
        if row is None:
            raise NotFound(f"Vector collection {name!r} does not exist; create it with ensure_collection first.")
        return int(row["dim"]), str(row["model"])

    async def ensure_collection(self, name: str, *, dim: int, model: str) -> None:
        """Create the catalog entry, table, HNSW and GIN indexes if missing (idempotent, race-safe)."""
        check_collection_name(name)
        check_dim(dim)
        table = self._table(name)
        prefix = "vectors__" + name

        async def tx(conn: asyncpg.Connection) -> None:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{self.schema}.vectors")
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._catalog} ("
                " name text PRIMARY KEY,"
                " dim integer NOT NULL CHECK (dim BETWEEN 1 AND 2000),"
                " model text NOT NULL,"
                " created_at timestamptz NOT NULL DEFAULT now())"
            )
            row = await conn.fetchrow(f"SELECT dim, model FROM {self._catalog} WHERE name = $1", name)
            if row is not None and (row["dim"] != dim or row["model"] != model):
                raise mismatch(name, row["dim"], row["model"], dim, model)
            if row is None:
                await conn.execute(
                    f"INSERT INTO {self._catalog} (name, dim, model) VALUES ($1, $2, $3)", name, dim, model
                )
            # dim is a validated int: DDL cannot take it as a parameter.
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table} ("
                f" id text PRIMARY KEY, embedding vector({int(dim)}) NOT NULL,"
                " payload jsonb NOT NULL DEFAULT '{}'::jsonb)"
            )
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS {_ident(prefix + '_hnsw')} ON {table} "
                "USING hnsw (embedding vector_cosine_ops)"
            )
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS {_ident(prefix + '_payload')} ON {table} USING gin (payload)"
            )

        await self.db.run_in_transaction(tx)

    async def upsert(self, name: str, records: Sequence[VectorRecord], *, model: str | None = None) -> int:
        """Insert or replace by id in one transaction (the last of duplicate ids wins)."""
        table = self._table(name)
        if not records:
            return 0
        ids = [check_id(r.id) for r in records]
        payloads = [json.dumps(check_payload(r.payload)) for r in records]

        async def tx(conn: asyncpg.Connection) -> int:
            dim, have_model = await self._meta(conn, name)
            if model is not None and model != have_model:
                raise mismatch(name, dim, have_model, dim, model)
            rows = [
                (i, as_vector(name, r.vector, dim, have_model), p)
                for i, r, p in zip(ids, records, payloads, strict=True)
            ]
            await conn.executemany(
                f"INSERT INTO {table} (id, embedding, payload) VALUES ($1, $2, $3::text::jsonb) "
                "ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, payload = EXCLUDED.payload",
                rows,
            )
            return len(rows)

        return await self.db.run_in_transaction(tx)

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
        """Nearest by cosine distance through HNSW; with a filter, pgvector's iterative scan keeps ``limit`` rows."""
        table = self._table(name)
        check_limit(limit)
        threshold = check_threshold(score_threshold)
        conditions = parse_filter(filter)
        where, params, needs_utc = compile_filter(conditions, 3)
        sql = (
            f"SELECT id, embedding <=> $1 AS distance, payload::text AS payload FROM {table} "
            f"WHERE {where} ORDER BY embedding <=> $1 LIMIT $2"
        )

        async def tx(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            dim, have_model = await self._meta(conn, name)
            if model is not None and model != have_model:
                raise mismatch(name, dim, have_model, dim, model)
            query = as_vector(name, vector, dim, have_model)
            # HNSW returns at most ef_search candidates, and pgvector's default (40) misses too many
            # true neighbours for a top 10 (docs/benchmarks.md has the recall figures).
            await conn.execute("SELECT set_config('hnsw.ef_search', $1, true)", str(ef_search(limit)))
            if conditions:
                await conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
            if needs_utc:
                await conn.execute("SELECT set_config('TimeZone', 'UTC', true)")
            rows: list[asyncpg.Record] = await conn.fetch(sql, query, limit, *params)
            return rows

        rows = await self.db.run_in_transaction(tx)
        hits = [SearchHit(r["id"], 1.0 - float(r["distance"]), _payload(r["payload"])) for r in rows]
        hits.sort(key=lambda h: h.score, reverse=True)  # relaxed_order may be slightly out of order
        if threshold is not None:
            hits = [h for h in hits if h.score >= threshold]
        return hits

    async def delete(
        self, name: str, *, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> int:
        """Delete by ids and/or filter; an empty request is refused rather than emptying the collection."""
        table = self._table(name)
        conditions = parse_filter(filter)
        if ids is None and not conditions:
            raise InvalidInput("delete needs ids or a non-empty filter; use drop_collection to remove everything.")
        id_list = [check_id(i) for i in ids] if ids is not None else None
        where, params, needs_utc = compile_filter(conditions, 2 if id_list is not None else 1)
        args: list[Any] = []
        if id_list is not None:
            where = f"id = ANY($1::text[]) AND {where}"
            args.append(id_list)

        async def tx(conn: asyncpg.Connection) -> int:
            await self._meta(conn, name)
            if needs_utc:
                await conn.execute("SELECT set_config('TimeZone', 'UTC', true)")
            status: str = await conn.execute(f"DELETE FROM {table} WHERE {where}", *args, *params)
            return int(status.rsplit(" ", 1)[-1])

        return await self.db.run_in_transaction(tx)

    async def scroll(
        self, name: str, *, filter: Mapping[str, Any] | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[VectorRecord], str | None]:
        """Keyset pagination by id: stable under concurrent inserts, no OFFSET cost."""
        table = self._table(name)
        check_limit(limit)
        after = _decode_cursor(cursor) if cursor else None
        where, params, needs_utc = compile_filter(parse_filter(filter), 3)
        sql = (
            f"SELECT id, embedding, payload::text AS payload FROM {table} "
            f"WHERE ($1::text IS NULL OR id > $1) AND {where} ORDER BY id LIMIT $2"
        )

        async def tx(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            await self._meta(conn, name)
            if needs_utc:
                await conn.execute("SELECT set_config('TimeZone', 'UTC', true)")
            rows: list[asyncpg.Record] = await conn.fetch(sql, after, limit + 1, *params)
            return rows

        rows = await self.db.run_in_transaction(tx)
        more = len(rows) > limit
        rows = rows[:limit]
        records = [VectorRecord(r["id"], _to_numpy(r["embedding"]), _payload(r["payload"])) for r in rows]
        return records, (_encode_cursor(rows[-1]["id"]) if more and rows else None)

    async def count(self, name: str, filter: Mapping[str, Any] | None = None) -> int:
        """Exact count (a sequential or bitmap scan: fine for the sizes a server holds)."""
        table = self._table(name)
        where, params, needs_utc = compile_filter(parse_filter(filter), 1)

        async def tx(conn: asyncpg.Connection) -> int:
            await self._meta(conn, name)
            if needs_utc:
                await conn.execute("SELECT set_config('TimeZone', 'UTC', true)")
            return int(await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {where}", *params))

        return await self.db.run_in_transaction(tx)

    async def info(self, name: str) -> CollectionInfo:
        table = self._table(name)

        async def tx(conn: asyncpg.Connection) -> CollectionInfo:
            dim, model = await self._meta(conn, name)
            n = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
            return CollectionInfo(name=name, dim=dim, model=model, count=n)

        return await self.db.run_in_transaction(tx)

    async def list_collections(self) -> list[str]:
        async def run(conn: asyncpg.Connection) -> list[str]:
            try:
                rows = await conn.fetch(f"SELECT name FROM {self._catalog} ORDER BY name")
            except asyncpg.exceptions.UndefinedTableError:
                return []
            return [r["name"] for r in rows]

        return await self.db.run(run)

    async def drop_collection(self, name: str) -> bool:
        table = self._table(name)

        async def tx(conn: asyncpg.Connection) -> bool:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{self.schema}.vectors")
            try:
                status = await conn.execute(f"DELETE FROM {self._catalog} WHERE name = $1", name)
            except asyncpg.exceptions.UndefinedTableError:
                return False
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
            return bool(status != "DELETE 0")

        return await self.db.run_in_transaction(tx)

    async def health(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            version = await self.db.run(
                lambda c: c.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'"), retry=False
            )
            ok, error = version is not None, None if version is not None else "the vector extension is missing"
        except Exception as exc:
            version, ok, error = None, False, redact(str(exc)) or type(exc).__name__
        return {
            "ok": ok,
            "backend": self.backend,
            "schema": self.schema,
            "pgvector": version,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            "error": error,
        }

    async def close(self) -> None:
        """Nothing to release: the pool belongs to the server's Database."""


def _to_numpy(value: Any) -> np.ndarray:
    arr = value.to_numpy() if hasattr(value, "to_numpy") else value
    return np.asarray(arr, dtype=np.float32)
