"""Every SQL statement on schema ``code_quality``. Plain async functions on a connection or the Database."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import asyncpg

from common.db import Database
from common.rows import decoded
from servers.code_quality.runner import CacheKey

Conn = asyncpg.Connection | Database
SCHEMA = "code_quality"

# --- projects -------------------------------------------------------------------------------------

UPSERT_PROJECT = """
INSERT INTO code_quality.projects (root) VALUES ($1)
ON CONFLICT (root) DO UPDATE SET root = EXCLUDED.root RETURNING id
"""
LOCK_PROJECT = "SELECT id FROM code_quality.projects WHERE id = $1 FOR UPDATE"
PROJECT_BY_ROOT = "SELECT id, root, gate FROM code_quality.projects WHERE root = $1"
PROJECT_BY_ID = "SELECT id, root, gate FROM code_quality.projects WHERE id = $1"
SET_GATE = "UPDATE code_quality.projects SET gate = $2::jsonb WHERE id = $1"


async def upsert_project(conn: asyncpg.Connection, root: str) -> int:
    return int(await conn.fetchval(UPSERT_PROJECT, root))


async def lock_project(conn: asyncpg.Connection, project_id: int) -> None:
    await conn.fetchval(LOCK_PROJECT, project_id)


def _project(row: asyncpg.Record | None) -> dict[str, Any] | None:
    return decoded(row, "gate")


async def project_by_root(db: Database, root: str) -> dict[str, Any] | None:
    return _project(await db.fetchrow(PROJECT_BY_ROOT, root))


async def project_by_id(db: Database, project_id: int) -> dict[str, Any] | None:
    return _project(await db.fetchrow(PROJECT_BY_ID, project_id))


async def set_gate(db: Database, project_id: int, gate: dict[str, Any]) -> None:
    await db.execute(SET_GATE, project_id, json.dumps(gate))


# --- result cache ---------------------------------------------------------------------------------

CACHE_GET = """
SELECT c.analyzer, c.version, c.config_hash, c.content_hash, c.value::text AS value
FROM code_quality.result_cache c
JOIN unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS k(analyzer, version, config_hash, content_hash)
  USING (analyzer, version, config_hash, content_hash)
"""
CACHE_PUT = """
INSERT INTO code_quality.result_cache (analyzer, version, config_hash, content_hash, value)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::json[])
ON CONFLICT DO NOTHING
"""


PRUNE_CACHE = "DELETE FROM code_quality.result_cache WHERE created_at < now() - make_interval(days => $1)"


def _columns(keys: Sequence[CacheKey]) -> list[list[str]]:
    return [[k[i] for k in keys] for i in range(4)]


async def cache_get(db: Database, keys: Sequence[CacheKey]) -> dict[CacheKey, dict[str, Any]]:
    rows = await db.fetch(CACHE_GET, *_columns(keys))
    return {
        CacheKey(r["analyzer"], r["version"], r["config_hash"], r["content_hash"]): json.loads(r["value"]) for r in rows
    }


async def cache_put(db: Database, keys: Sequence[CacheKey], values: Sequence[str]) -> None:
    """Store ``values`` (JSON texts) under ``keys``, in the same order."""
    await db.execute(CACHE_PUT, *_columns(keys), list(values))


async def prune_cache(db: Database, max_age_days: int) -> int:
    status = await db.execute(PRUNE_CACHE, max_age_days)
    return int(status.split()[-1])


# --- runs -----------------------------------------------------------------------------------------

RUN_COLS = """r.id::text AS id, r.project_id, p.root, r.job_id::text AS job_id, r.seq, r.partial, r.git_commit,
r.branch, r.dirty, r.changed_since, r.analyzers, r.outcomes::text AS outcomes, r.skipped::text AS skipped,
r.gaps::text AS gaps, r.metrics::text AS metrics, r.coverage::text AS coverage, r.created_at"""
RUN_FROM = "FROM code_quality.runs r JOIN code_quality.projects p ON p.id = r.project_id"
RUN_FOR_JOB = "SELECT id::text FROM code_quality.runs WHERE job_id = $1::uuid"
NEXT_SEQ = "SELECT coalesce(max(seq), 0) + 1 FROM code_quality.runs WHERE project_id = $1"
INSERT_RUN = """
INSERT INTO code_quality.runs (project_id, job_id, seq, partial, git_commit, branch, dirty, changed_since, analyzers,
    outcomes, skipped, gaps, metrics, functions, duplication, coverage)
VALUES ($1, $2::uuid, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb, $12::jsonb, $13::jsonb, $14::json, $15::json,
    $16::jsonb)
RETURNING id::text
"""
GET_RUN = f"SELECT {RUN_COLS} {RUN_FROM} WHERE r.id = $1::uuid"
LATEST_RUN = f"SELECT {RUN_COLS} {RUN_FROM} WHERE r.project_id = $1 ORDER BY r.seq DESC LIMIT 1"
RUN_BEFORE = f"SELECT {RUN_COLS} {RUN_FROM} WHERE r.project_id = $1 AND r.seq < $2 ORDER BY r.seq DESC LIMIT 1"
RUN_DETAIL = (
    "SELECT functions::text AS functions, duplication::text AS duplication FROM code_quality.runs WHERE id = $1::uuid"
)
RUN_SERIES = """
SELECT seq, created_at, git_commit, metrics::text AS metrics FROM code_quality.runs
WHERE project_id = $1 ORDER BY seq DESC LIMIT $2
"""
LAST_RUN_WITH = f"""
SELECT {RUN_COLS} {RUN_FROM} JOIN code_quality.findings f ON f.run_id = r.id
WHERE r.project_id = $1 AND f.fingerprint = $2 ORDER BY r.seq DESC LIMIT 1
"""


def _run(row: asyncpg.Record | None) -> dict[str, Any] | None:
    if row is None:
        return None
    out = dict(row)
    for name in ("outcomes", "skipped", "gaps", "metrics"):
        out[name] = json.loads(out[name])
    if out.get("coverage") is not None:
        out["coverage"] = json.loads(out["coverage"])
    return out


async def run_for_job(conn: Conn, job_id: str) -> str | None:
    value: str | None = await conn.fetchval(RUN_FOR_JOB, job_id)
    return value


async def next_seq(conn: asyncpg.Connection, project_id: int) -> int:
    return int(await conn.fetchval(NEXT_SEQ, project_id))


async def insert_run(conn: asyncpg.Connection, values: Sequence[Any]) -> str:
    return str(await conn.fetchval(INSERT_RUN, *values))


async def get_run(conn: Conn, run_id: str) -> dict[str, Any] | None:
    return _run(await conn.fetchrow(GET_RUN, run_id))


async def latest_run(conn: Conn, project_id: int) -> dict[str, Any] | None:
    return _run(await conn.fetchrow(LATEST_RUN, project_id))


async def run_before(conn: Conn, project_id: int, seq: int) -> dict[str, Any] | None:
    return _run(await conn.fetchrow(RUN_BEFORE, project_id, seq))


async def last_run_with(db: Database, project_id: int, fingerprint: str) -> dict[str, Any] | None:
    return _run(await db.fetchrow(LAST_RUN_WITH, project_id, fingerprint))


async def run_detail(db: Database, run_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    row = await db.fetchrow(RUN_DETAIL, run_id)
    if row is None:
        return [], {}
    return json.loads(row["functions"]), json.loads(row["duplication"])


async def run_series(db: Database, project_id: int, limit: int) -> list[dict[str, Any]]:
    rows = await db.fetch(RUN_SERIES, project_id, limit)
    return [{**dict(r), "metrics": json.loads(r["metrics"])} for r in reversed(rows)]


# --- findings -------------------------------------------------------------------------------------

FINDING_COLS = """f.id, f.run_id::text AS run_id, f.fingerprint, f.analyzer, f.rule_id, f.severity, f.category, f.path,
f.line, f.end_line, f.col, f.message, f.context, f.symbol, f.signature, f.anchor"""
FINDING_COLUMNS = (
    "run_id",
    "fingerprint",
    "analyzer",
    "rule_id",
    "severity",
    "category",
    "path",
    "line",
    "end_line",
    "col",
    "message",
    "context",
    "symbol",
    "signature",
    "anchor",
)
METRIC_COLUMNS = (
    "run_id",
    "path",
    "lines",
    "code_lines",
    "functions",
    "max_complexity",
    "mean_complexity",
    "maintainability",
    "covered_lines",
    "coverable_lines",
    "covered",
    "uncovered",
)
RUN_FINDINGS = f"SELECT {FINDING_COLS} FROM code_quality.findings f WHERE f.run_id = $1::uuid ORDER BY f.path, f.line"
FINDING_BY_ID = f"""
SELECT {FINDING_COLS}, r.project_id, coalesce(s.status, 'open') AS status, s.actor, s.reason
FROM code_quality.findings f JOIN code_quality.runs r ON r.id = f.run_id
LEFT JOIN code_quality.finding_status s ON s.project_id = r.project_id AND s.fingerprint = f.fingerprint
WHERE f.id = $1
"""
_FILTER = """
FROM code_quality.findings f
LEFT JOIN code_quality.finding_status s ON s.project_id = $2 AND s.fingerprint = f.fingerprint
WHERE f.run_id = $1::uuid
  AND ($3::text IS NULL OR f.severity = $3) AND ($4::text IS NULL OR f.category = $4)
  AND ($5::text IS NULL OR coalesce(s.status, 'open') = $5) AND ($6::text IS NULL OR left(f.path, length($6)) = $6)
  AND ($7::text IS NULL OR f.analyzer = $7)
"""
LIST_FINDINGS = f"""
SELECT {FINDING_COLS}, coalesce(s.status, 'open') AS status, s.actor, s.reason, count(*) OVER () AS total {_FILTER}
ORDER BY CASE f.severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 WHEN 'low' THEN 2 ELSE 3 END, f.path, f.line, f.id
LIMIT $8 OFFSET $9
"""
COUNT_FINDINGS = f"SELECT count(*) {_FILTER}"


async def insert_findings(conn: asyncpg.Connection, run_id: str, rows: Sequence[Sequence[Any]]) -> None:
    await _copy(conn, "findings", FINDING_COLUMNS, run_id, rows)


async def insert_metrics(conn: asyncpg.Connection, run_id: str, rows: Sequence[Sequence[Any]]) -> None:
    await _copy(conn, "file_metrics", METRIC_COLUMNS, run_id, rows)


async def _copy(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], run_id: str, rows: Sequence[Sequence[Any]]
) -> None:
    # COPY: a run writes thousands of rows, which it loads faster than an INSERT of the same rows.
    run = UUID(run_id)
    records = [(run, *row) for row in rows]
    if records:
        await conn.copy_records_to_table(table, schema_name=SCHEMA, columns=list(columns), records=records)


async def run_findings(conn: Conn, run_id: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(RUN_FINDINGS, run_id)]


async def finding_by_id(db: Database, finding_id: int) -> dict[str, Any] | None:
    row = await db.fetchrow(FINDING_BY_ID, finding_id)
    return dict(row) if row else None


async def list_findings(
    db: Database, run_id: str, project_id: int, filters: Sequence[str | None], limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    rows = [dict(r) for r in await db.fetch(LIST_FINDINGS, run_id, project_id, *filters, limit, offset)]
    if rows:
        return rows, int(rows[0]["total"])
    return rows, int(await db.fetchval(COUNT_FINDINGS, run_id, project_id, *filters)) if offset else 0


# --- file metrics ---------------------------------------------------------------------------------

_LIST_FILE_METRICS = """
SELECT path, lines, code_lines, functions, max_complexity, mean_complexity, maintainability, covered_lines,
    coverable_lines, uncovered, count(*) OVER () AS total
FROM code_quality.file_metrics WHERE run_id = $1::uuid AND ($2::text IS NULL OR left(path, length($2)) = $2)
"""
LIST_FILE_METRICS = {
    "complexity": f"{_LIST_FILE_METRICS} ORDER BY max_complexity DESC, code_lines DESC, path LIMIT $3 OFFSET $4",
    # Least covered first (by share, then by lines left uncovered); files the report did not cover last.
    "coverage": f"""{_LIST_FILE_METRICS}
ORDER BY coverable_lines IS NULL OR coverable_lines = 0, covered_lines::float8 / nullif(coverable_lines, 0),
    coverable_lines - covered_lines DESC, path LIMIT $3 OFFSET $4""",
}
FILE_METRICS_OF = """
SELECT path, lines, code_lines, functions, max_complexity, mean_complexity, maintainability
FROM code_quality.file_metrics WHERE run_id = $1::uuid
"""


FILE_COVERAGE_OF = """
SELECT path, covered, uncovered FROM code_quality.file_metrics WHERE run_id = $1::uuid AND coverable_lines > 0
"""


async def list_file_metrics(
    db: Database, run_id: str, prefix: str | None, limit: int, offset: int, order: str = "complexity"
) -> tuple[list[dict[str, Any]], int]:
    rows = [dict(r) for r in await db.fetch(LIST_FILE_METRICS[order], run_id, prefix, limit, offset)]
    return rows, int(rows[0]["total"]) if rows else 0


async def file_metrics_of(db: Database, run_id: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(FILE_METRICS_OF, run_id)]


async def file_coverage_of(db: Database, run_id: str) -> dict[str, tuple[str, str]]:
    """Path -> (covered, uncovered) line ranges of the files the run's coverage report covered."""
    return {r["path"]: (r["covered"], r["uncovered"]) for r in await db.fetch(FILE_COVERAGE_OF, run_id)}


# --- statuses -------------------------------------------------------------------------------------

SET_STATUS = """
INSERT INTO code_quality.finding_status (project_id, fingerprint, status, actor, reason)
SELECT $1, fp, $3, $4, $5 FROM unnest($2::text[]) AS fp
ON CONFLICT (project_id, fingerprint) DO UPDATE
SET status = EXCLUDED.status, actor = EXCLUDED.actor, reason = EXCLUDED.reason, updated_at = now()
"""
MARK_FIXED = """
INSERT INTO code_quality.finding_status (project_id, fingerprint, status, actor, reason)
SELECT $1, fp, 'fixed', 'code_quality', $3 FROM unnest($2::text[]) AS fp
ON CONFLICT (project_id, fingerprint) DO UPDATE
SET status = 'fixed', actor = EXCLUDED.actor, reason = EXCLUDED.reason, updated_at = now()
WHERE code_quality.finding_status.status = 'open'
"""
REOPEN = """
UPDATE code_quality.finding_status SET status = 'open', actor = 'code_quality', reason = $3, updated_at = now()
WHERE project_id = $1 AND fingerprint = ANY($2::text[]) AND status = 'fixed'
"""
CARRY_STATUS = """
INSERT INTO code_quality.finding_status (project_id, fingerprint, status, actor, reason)
SELECT s.project_id, m.head, s.status, s.actor, s.reason
FROM unnest($2::text[], $3::text[]) AS m(head, base)
JOIN code_quality.finding_status s ON s.project_id = $1 AND s.fingerprint = m.base
ON CONFLICT (project_id, fingerprint) DO NOTHING
"""
STATUSES = """
SELECT fingerprint, status, actor, reason FROM code_quality.finding_status
WHERE project_id = $1 AND fingerprint = ANY($2::text[])
"""
KNOWN_FINGERPRINTS = """
SELECT DISTINCT f.fingerprint FROM code_quality.findings f JOIN code_quality.runs r ON r.id = f.run_id
WHERE r.project_id = $1 AND f.fingerprint = ANY($2::text[])
"""


async def set_status(
    conn: asyncpg.Connection, project_id: int, fingerprints: Sequence[str], status: str, actor: str, reason: str
) -> None:
    await conn.execute(SET_STATUS, project_id, list(fingerprints), status, actor, reason)


async def mark_fixed(conn: asyncpg.Connection, project_id: int, fingerprints: Sequence[str], reason: str) -> None:
    await conn.execute(MARK_FIXED, project_id, list(fingerprints), reason)


async def reopen(conn: asyncpg.Connection, project_id: int, fingerprints: Sequence[str], reason: str) -> None:
    await conn.execute(REOPEN, project_id, list(fingerprints), reason)


async def carry_status(conn: asyncpg.Connection, project_id: int, moved: Mapping[str, str]) -> None:
    await conn.execute(CARRY_STATUS, project_id, list(moved), list(moved.values()))


async def statuses(conn: Conn, project_id: int, fingerprints: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {r["fingerprint"]: dict(r) for r in await conn.fetch(STATUSES, project_id, list(fingerprints))}


async def known_fingerprints(conn: Conn, project_id: int, fingerprints: Sequence[str]) -> set[str]:
    return {r["fingerprint"] for r in await conn.fetch(KNOWN_FINGERPRINTS, project_id, list(fingerprints))}


# --- search texts ---------------------------------------------------------------------------------

ADD_TEXTS = """
INSERT INTO code_quality.finding_texts (project_id, fingerprint, text)
SELECT $1, * FROM unnest($2::text[], $3::text[]) ON CONFLICT DO NOTHING
"""
# The background embedder fills only texts that have no vector: changing the model of embedded ones is
# the store-model switch's job, which a lagging process must not undo with the model it last read.
UNEMBEDDED = """
SELECT fingerprint, text FROM code_quality.finding_texts WHERE project_id = $1 AND embedding IS NULL LIMIT $2
"""
UNEMBEDDED_PROJECTS = "SELECT DISTINCT project_id FROM code_quality.finding_texts WHERE embedding IS NULL"
SET_EMBEDDING = """
UPDATE code_quality.finding_texts SET embedding = $3, embedding_model = $4 WHERE project_id = $1 AND fingerprint = $2
"""
# Only a text still without a vector: a switch may have embedded it with its new model meanwhile.
FILL_EMBEDDING = f"{SET_EMBEDDING.strip()} AND embedding IS NULL"
# The newest occurrence of each fingerprint, for the hits of a search.
_LATEST = f"""
SELECT DISTINCT ON (t.project_id, t.fingerprint) t.project_id, {FINDING_COLS}, r.seq, p.root,
    coalesce(s.status, 'open') AS status, s.actor, s.reason
FROM code_quality.finding_texts t
JOIN code_quality.runs r ON r.project_id = t.project_id
JOIN code_quality.findings f ON f.run_id = r.id AND f.fingerprint = t.fingerprint
JOIN code_quality.projects p ON p.id = t.project_id
LEFT JOIN code_quality.finding_status s ON s.project_id = t.project_id AND s.fingerprint = t.fingerprint
WHERE (t.project_id, t.fingerprint) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))
ORDER BY t.project_id, t.fingerprint, r.seq DESC
"""
SEARCH_VECTOR = """
SELECT project_id, fingerprint FROM code_quality.finding_texts
WHERE ($2::bigint IS NULL OR project_id = $2) AND embedding IS NOT NULL AND embedding_model = $3
ORDER BY embedding <=> $1 LIMIT $4
"""
SEARCH_KEYWORD = """
SELECT project_id, fingerprint FROM code_quality.finding_texts
WHERE ($2::bigint IS NULL OR project_id = $2) AND search @@ to_tsquery('english', $1)
ORDER BY ts_rank(search, to_tsquery('english', $1)) DESC, fingerprint LIMIT $3
"""


async def add_texts(conn: asyncpg.Connection, project_id: int, texts: Mapping[str, str]) -> None:
    await conn.execute(ADD_TEXTS, project_id, list(texts), list(texts.values()))


async def unembedded(db: Database, project_id: int, limit: int) -> list[tuple[str, str]]:
    return [(r["fingerprint"], r["text"]) for r in await db.fetch(UNEMBEDDED, project_id, limit)]


async def unembedded_projects(db: Database) -> set[int]:
    return {r["project_id"] for r in await db.fetch(UNEMBEDDED_PROJECTS)}


async def fill_embeddings(
    db: Database, project_id: int, fingerprints: Sequence[str], vectors: Sequence[Any], model: str
) -> None:
    await db.executemany(
        FILL_EMBEDDING, [(project_id, fp, v, model) for fp, v in zip(fingerprints, vectors, strict=True)]
    )


async def search_vector(
    db: Database, vector: Any, project_id: int | None, model: str, limit: int
) -> list[tuple[int, str]]:
    return [
        (r["project_id"], r["fingerprint"]) for r in await db.fetch(SEARCH_VECTOR, vector, project_id, model, limit)
    ]


async def search_keyword(db: Database, tsquery: str, project_id: int | None, limit: int) -> list[tuple[int, str]]:
    return [(r["project_id"], r["fingerprint"]) for r in await db.fetch(SEARCH_KEYWORD, tsquery, project_id, limit)]


async def latest_occurrences(db: Database, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], dict[str, Any]]:
    rows = await db.fetch(_LATEST, [k[0] for k in keys], [k[1] for k in keys])
    return {(r["project_id"], r["fingerprint"]): dict(r) for r in rows}


# --- baselines, jobs ------------------------------------------------------------------------------

SET_BASELINE = """
INSERT INTO code_quality.baselines (project_id, name, run_id) VALUES ($1, $2, $3::uuid)
ON CONFLICT (project_id, name) DO UPDATE SET run_id = EXCLUDED.run_id, created_at = now()
"""
GET_BASELINE = "SELECT run_id::text FROM code_quality.baselines WHERE project_id = $1 AND name = $2"
LIVE_JOB = "SELECT id::text FROM code_quality.jobs WHERE kind = $1 AND key = $2 AND status = 'running'"


async def set_baseline(db: Database, project_id: int, name: str, run_id: str) -> None:
    await db.execute(SET_BASELINE, project_id, name, run_id)


async def get_baseline(db: Database, project_id: int, name: str) -> str | None:
    value: str | None = await db.fetchval(GET_BASELINE, project_id, name)
    return value


async def live_job(db: Database, kind: str, key: str) -> str | None:
    value: str | None = await db.fetchval(LIVE_JOB, kind, key)
    return value


# --- store model switch ---------------------------------------------------------------------------

OTHER_MODEL_TEXTS = """
SELECT project_id, fingerprint, text FROM code_quality.finding_texts
WHERE embedding_model IS DISTINCT FROM $1 ORDER BY project_id, fingerprint LIMIT $2
"""


async def other_model_texts(db: Database, model: str, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(OTHER_MODEL_TEXTS, model, limit)]


async def set_embedding_rows(db: Database, rows: Sequence[tuple[int, str, Any]], model: str) -> None:
    await db.executemany(SET_EMBEDDING, [(pid, fp, v, model) for pid, fp, v in rows])
