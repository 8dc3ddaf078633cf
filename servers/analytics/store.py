"""Every SQL statement on schema ``analytics``. Plain async functions on a connection or the Database;
JSON columns travel as text (``$n::jsonb`` in, ``::text`` out)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from common.db import Database
from common.rows import decoded

_DATASET_COLS = """name, description, source_kind, source, source_query, path, format, sheet, columns::text,
row_count, byte_size, fingerprint, profile_fingerprint, created_at, updated_at"""


def _dataset(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    out["columns"] = json.loads(out["columns"])
    return out


INSERT_DATASET = f"""
INSERT INTO analytics.datasets (name, description, source_kind, source, source_query, path, format, sheet, columns,
                                row_count, byte_size, fingerprint)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12)
ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, source_kind = EXCLUDED.source_kind,
    source = EXCLUDED.source, source_query = EXCLUDED.source_query, path = EXCLUDED.path, format = EXCLUDED.format,
    sheet = EXCLUDED.sheet, columns = EXCLUDED.columns, row_count = EXCLUDED.row_count,
    byte_size = EXCLUDED.byte_size, fingerprint = EXCLUDED.fingerprint, profile = NULL,
    profile_fingerprint = NULL, updated_at = now()
WHERE $13
RETURNING {_DATASET_COLS}, (xmax = 0) AS created
"""
OLD_PATH = "SELECT path, source_kind FROM analytics.datasets WHERE name = $1 FOR UPDATE"


async def upsert_dataset(conn: asyncpg.Connection, row: dict[str, Any], replace: bool) -> dict[str, Any] | None:
    """Insert the dataset (or replace it when ``replace``); None when it exists and may not be replaced."""
    rec = await conn.fetchrow(
        INSERT_DATASET,
        row["name"],
        row["description"],
        row["source_kind"],
        row["source"],
        row["source_query"],
        row["path"],
        row["format"],
        row["sheet"],
        json.dumps(row["columns"]),
        row["row_count"],
        row["byte_size"],
        row["fingerprint"],
        replace,
    )
    return _dataset(rec) if rec else None


async def old_path(conn: asyncpg.Connection, name: str) -> tuple[str, str] | None:
    rec = await conn.fetchrow(OLD_PATH, name)
    return (rec["path"], rec["source_kind"]) if rec else None


GET_DATASET = f"SELECT {_DATASET_COLS} FROM analytics.datasets WHERE name = $1"
NAMED_DATASETS = f"SELECT {_DATASET_COLS} FROM analytics.datasets WHERE name = ANY($1::text[]) ORDER BY name"
LIST_DATASETS = (
    f"SELECT {_DATASET_COLS}, count(*) OVER () AS total FROM analytics.datasets ORDER BY name LIMIT $1 OFFSET $2"
)
COUNT_DATASETS = "SELECT count(*) FROM analytics.datasets"
DELETE_DATASET = "DELETE FROM analytics.datasets WHERE name = $1 RETURNING path, source_kind"


async def get_dataset(db: Database, name: str) -> dict[str, Any] | None:
    rec = await db.fetchrow(GET_DATASET, name)
    return _dataset(rec) if rec else None


async def named_datasets(db: Database, names: Sequence[str]) -> list[dict[str, Any]]:
    """The datasets among ``names`` (names not registered are left out)."""
    return [_dataset(r) for r in await db.fetch(NAMED_DATASETS, list(names))]


async def list_datasets(db: Database, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    rows = [_dataset(r) for r in await db.fetch(LIST_DATASETS, limit, offset)]
    if rows:
        return rows, int(rows[0]["total"])
    return rows, int(await db.fetchval(COUNT_DATASETS)) if offset else 0


async def delete_dataset(conn: asyncpg.Connection, name: str) -> tuple[str, str] | None:
    rec = await conn.fetchrow(DELETE_DATASET, name)
    return (rec["path"], rec["source_kind"]) if rec else None


REFRESH_DATASET = f"""
UPDATE analytics.datasets SET columns = $2::jsonb, row_count = $3, byte_size = $4, fingerprint = $5,
    profile = NULL, profile_fingerprint = NULL, updated_at = now()
WHERE name = $1 AND path = $6 RETURNING {_DATASET_COLS}
"""


async def refresh_dataset(
    db: Database, name: str, path: str, columns: list[dict[str, str]], rows: int, size: int, fp: str
) -> dict[str, Any] | None:
    rec = await db.fetchrow(REFRESH_DATASET, name, json.dumps(columns), rows, size, fp, path)
    return _dataset(rec) if rec else None


GET_PROFILE = "SELECT profile::text, profile_fingerprint FROM analytics.datasets WHERE name = $1"
SET_PROFILE = """
UPDATE analytics.datasets SET profile = $2::jsonb, profile_fingerprint = $3
WHERE name = $1 AND fingerprint = $3
"""


async def get_profile(db: Database, name: str) -> tuple[dict[str, Any] | None, str | None]:
    rec = await db.fetchrow(GET_PROFILE, name)
    if rec is None or rec["profile"] is None:
        return None, None
    return json.loads(rec["profile"]), rec["profile_fingerprint"]


async def set_profile(db: Database, name: str, profile: dict[str, Any], fp: str) -> None:
    await db.execute(SET_PROFILE, name, json.dumps(profile), fp)


# --- saved queries and history ---------------------------------------------------------------------

SAVE_QUERY = """
INSERT INTO analytics.saved_queries (name, sql, description) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE SET sql = EXCLUDED.sql, description = EXCLUDED.description, updated_at = now()
RETURNING name, sql, description, created_at, updated_at, (xmax = 0) AS created
"""
GET_QUERY = "SELECT name, sql, description, created_at, updated_at FROM analytics.saved_queries WHERE name = $1"
LIST_QUERIES = """
SELECT name, sql, description, created_at, updated_at, count(*) OVER () AS total
FROM analytics.saved_queries ORDER BY name LIMIT $1 OFFSET $2
"""
COUNT_QUERIES = "SELECT count(*) FROM analytics.saved_queries"
DELETE_QUERY = "DELETE FROM analytics.saved_queries WHERE name = $1 RETURNING name"


async def save_query(db: Database, name: str, sql: str, description: str) -> dict[str, Any]:
    rec = await db.fetchrow(SAVE_QUERY, name, sql, description)
    assert rec is not None
    return dict(rec)


async def get_query(db: Database, name: str) -> dict[str, Any] | None:
    return decoded(await db.fetchrow(GET_QUERY, name))


async def list_queries(db: Database, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    rows = [dict(r) for r in await db.fetch(LIST_QUERIES, limit, offset)]
    if rows:
        return rows, int(rows[0]["total"])
    return rows, int(await db.fetchval(COUNT_QUERIES)) if offset else 0


async def delete_query(db: Database, name: str) -> bool:
    return await db.fetchval(DELETE_QUERY, name) is not None


ADD_HISTORY = """
INSERT INTO analytics.query_history (sql, saved_name, ok, error, total_rows, elapsed_ms, at)
SELECT s, n, o, e, t, m, a
FROM unnest($1::text[], $2::text[], $3::bool[], $4::text[], $5::bigint[], $6::int[], $7::timestamptz[])
     WITH ORDINALITY AS u(s, n, o, e, t, m, a, i)
ORDER BY i
RETURNING id
"""
TRIM_HISTORY = "DELETE FROM analytics.query_history WHERE id <= $1"
LIST_HISTORY = """
SELECT id, sql, saved_name, ok, error, total_rows, elapsed_ms, at, count(*) OVER () AS total
FROM analytics.query_history ORDER BY id DESC LIMIT $1 OFFSET $2
"""
COUNT_HISTORY = "SELECT count(*) FROM analytics.query_history"


@dataclass(frozen=True)
class HistoryRow:
    """One run of a query, as the history keeps it."""

    sql: str
    saved: str | None
    ok: bool
    error: str | None
    total: int | None
    ms: int
    at: dt.datetime


async def add_history(db: Database, rows: Sequence[HistoryRow], keep: int) -> None:
    """Record queries in the order given and forget entries older than the newest ``keep``."""
    if not rows:
        return

    async def write(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            ids = await conn.fetch(
                ADD_HISTORY,
                [r.sql for r in rows],
                [r.saved for r in rows],
                [r.ok for r in rows],
                [r.error for r in rows],
                [r.total for r in rows],
                [r.ms for r in rows],
                [r.at for r in rows],
            )
            new_id = max(int(r["id"]) for r in ids)
            if new_id > keep:
                await conn.execute(TRIM_HISTORY, new_id - keep)

    await db.run(write)


async def list_history(db: Database, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    rows = [dict(r) for r in await db.fetch(LIST_HISTORY, limit, offset)]
    if rows:
        return rows, int(rows[0]["total"])
    return rows, int(await db.fetchval(COUNT_HISTORY)) if offset else 0


# --- charts ----------------------------------------------------------------------------------------

ADD_CHART = """
INSERT INTO analytics.charts (id, source, spec, png_path, svg_path, spec_path, description)
VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING
"""


async def add_chart(db: Database, c: dict[str, Any]) -> None:
    await db.execute(
        ADD_CHART,
        c["id"],
        c["source"],
        json.dumps(c["spec"]),
        c["png_path"],
        c["svg_path"],
        c["spec_path"],
        c["description"],
    )


# --- predictions -----------------------------------------------------------------------------------

ADD_PREDICTION = """
INSERT INTO analytics.predictions (source, task, model, target, features, parameters, data_fingerprint, metrics,
                                   predicted, notes)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8::jsonb, $9::jsonb, $10)
RETURNING id, created_at
"""
_PRED_COLS = """id, source, task, model, target, features, parameters::text, data_fingerprint, metrics::text,
notes, rescore::text, rescored_at, created_at, jsonb_array_length(predicted) AS n_predicted"""
GET_PREDICTION = f"SELECT {_PRED_COLS}, predicted::text FROM analytics.predictions WHERE id = $1"
LIST_PREDICTIONS = f"""
SELECT {_PRED_COLS}, count(*) OVER () AS total FROM analytics.predictions
WHERE ($1::text IS NULL OR source = $1) ORDER BY id DESC LIMIT $2 OFFSET $3
"""
COUNT_PREDICTIONS = "SELECT count(*) FROM analytics.predictions WHERE ($1::text IS NULL OR source = $1)"
SET_RESCORE = """
UPDATE analytics.predictions SET rescore = $2::jsonb, rescored_at = now() WHERE id = $1 RETURNING rescored_at
"""


def _prediction(rec: asyncpg.Record) -> dict[str, Any]:
    out = dict(rec)
    for key in ("parameters", "metrics", "rescore", "predicted"):
        if out.get(key) is not None:
            out[key] = json.loads(out[key])
    return out


async def add_prediction(db: Database, source: str, p: dict[str, Any]) -> dict[str, Any]:
    rec = await db.fetchrow(
        ADD_PREDICTION,
        source,
        p["task"],
        p["model"],
        p["target"],
        p["features"],
        json.dumps(p["parameters"]),
        p["data_fingerprint"],
        json.dumps(p["metrics"]),
        json.dumps(p["predicted"]),
        p["notes"],
    )
    assert rec is not None
    return dict(rec)


async def get_prediction(db: Database, pid: int) -> dict[str, Any] | None:
    rec = await db.fetchrow(GET_PREDICTION, pid)
    return _prediction(rec) if rec else None


async def list_predictions(
    db: Database, source: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    rows = [_prediction(r) for r in await db.fetch(LIST_PREDICTIONS, source, limit, offset)]
    if rows:
        return rows, int(rows[0]["total"])
    return rows, int(await db.fetchval(COUNT_PREDICTIONS, source)) if offset else 0


async def set_rescore(db: Database, pid: int, result: dict[str, Any]) -> Any:
    return await db.fetchval(SET_RESCORE, pid, json.dumps(result))


# --- patterns --------------------------------------------------------------------------------------

ADD_PATTERN = """
INSERT INTO analytics.patterns (source, data_fingerprint, kind, columns, statistic, strength, p_value, description,
                                details, sample, embedding, embedding_model)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb, $11, $12)
ON CONFLICT (source, data_fingerprint, kind, columns) DO UPDATE SET statistic = EXCLUDED.statistic,
    strength = EXCLUDED.strength, p_value = EXCLUDED.p_value, description = EXCLUDED.description,
    details = EXCLUDED.details, sample = EXCLUDED.sample, embedding = EXCLUDED.embedding,
    embedding_model = EXCLUDED.embedding_model
RETURNING id
"""


async def add_pattern(
    conn: asyncpg.Connection, source: str, fp: str, p: dict[str, Any], vector: Any, model: str
) -> int:
    pid: int = await conn.fetchval(
        ADD_PATTERN,
        source,
        fp,
        p["kind"],
        p["columns"],
        p["statistic"],
        p["strength"],
        p["p_value"],
        p["description"],
        json.dumps(p["details"]),
        json.dumps(p["sample"]),
        vector,
        model,
    )
    return pid


_PATTERN_COLS = "id, source, kind, columns, statistic, strength, p_value, description, details::text, created_at"
PATTERNS_BY_VECTOR = """
SELECT id FROM analytics.patterns
WHERE ($3::text IS NULL OR source = $3) AND embedding_model = $4
ORDER BY embedding <=> $1::vector LIMIT $2
"""
PATTERNS_BY_WORDS = """
SELECT id FROM analytics.patterns
WHERE ($3::text IS NULL OR source = $3) AND tsv @@ to_tsquery('english', $1)
ORDER BY ts_rank_cd(tsv, to_tsquery('english', $1)) DESC, id LIMIT $2
"""
PATTERNS_BY_ID = f"SELECT {_PATTERN_COLS} FROM analytics.patterns WHERE id = ANY($1::bigint[])"


async def patterns_by_vector(db: Database, vector: Any, limit: int, source: str | None, model: str) -> list[int]:
    return [r["id"] for r in await db.fetch(PATTERNS_BY_VECTOR, vector, limit, source, model)]


async def patterns_by_words(db: Database, tsquery: str, limit: int, source: str | None) -> list[int]:
    if not tsquery:
        return []
    return [r["id"] for r in await db.fetch(PATTERNS_BY_WORDS, tsquery, limit, source)]


async def patterns_by_id(db: Database, ids: list[int]) -> dict[int, dict[str, Any]]:
    out = {}
    for r in await db.fetch(PATTERNS_BY_ID, ids):
        row = dict(r)
        row["details"] = json.loads(row["details"])
        out[row["id"]] = row
    return out


# --- store model switch ----------------------------------------------------------------------------

OTHER_MODEL_PATTERNS = """
SELECT id, description FROM analytics.patterns WHERE embedding_model IS DISTINCT FROM $1 ORDER BY id LIMIT $2
"""
SET_PATTERN_VECTOR = "UPDATE analytics.patterns SET embedding = $2, embedding_model = $3 WHERE id = $1"


async def other_model_patterns(db: Database, model: str, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(OTHER_MODEL_PATTERNS, model, limit)]


async def set_pattern_vectors(db: Database, rows: list[tuple[int, Any]], model: str) -> None:
    await db.executemany(SET_PATTERN_VECTOR, [(pid, v, model) for pid, v in rows])
