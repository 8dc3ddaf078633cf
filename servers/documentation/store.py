"""Every SQL statement on schema ``documentation``: $n parameters only, schema-qualified."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg
import numpy as np

from common.db import Database
from common.errors import NotFound, shown
from common.keywords import KeywordPlan
from common.rows import decoded

# ------------------------------------------------------------------------------------------- projects

CREATE_PROJECT = """
INSERT INTO documentation.projects (name, description) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET description = CASE WHEN $2 = '' THEN projects.description ELSE $2 END
RETURNING id, (xmax = 0) AS created
"""
ENSURE_VERSION = """
INSERT INTO documentation.versions (project_id, version) VALUES ($1, $2)
ON CONFLICT (project_id, version) DO UPDATE SET updated_at = versions.updated_at
RETURNING id
"""
PROJECT_ID = "SELECT id FROM documentation.projects WHERE name = $1"
VERSION_ID = """
SELECT v.id FROM documentation.versions v JOIN documentation.projects p ON p.id = v.project_id
WHERE p.name = $1 AND v.version = $2
"""
SCOPE = """
SELECT v.id FROM documentation.versions v JOIN documentation.projects p ON p.id = v.project_id
WHERE ($1::text IS NULL OR p.name = $1) AND ($2::text IS NULL OR v.version = $2)
"""
LIST_PROJECTS = """
SELECT p.name, p.description, p.created_at, count(*) OVER () AS total,
       coalesce(array_agg(v.version ORDER BY v.created_at) FILTER (WHERE v.id IS NOT NULL), '{}') AS versions
FROM documentation.projects p LEFT JOIN documentation.versions v ON v.project_id = p.id
GROUP BY p.id ORDER BY p.name LIMIT $1 OFFSET $2
"""
DESCRIBE_VERSIONS = """
SELECT v.version, v.needs_reembed,
       (SELECT count(*) FROM documentation.documents d WHERE d.version_id = v.id) AS documents,
       (SELECT count(*) FROM documentation.chunks c WHERE c.version_id = v.id) AS chunks,
       (SELECT count(*) FROM documentation.endpoints e WHERE e.version_id = v.id) AS endpoints,
       (SELECT coalesce(array_agg(DISTINCT c.embedding_model), '{}') FROM documentation.chunks c
         WHERE c.version_id = v.id) AS models
FROM documentation.versions v JOIN documentation.projects p ON p.id = v.project_id
WHERE p.name = $1 ORDER BY v.created_at
"""
DELETE_PROJECT = "DELETE FROM documentation.projects WHERE name = $1 RETURNING id"
DELETE_VERSION = """
DELETE FROM documentation.versions v USING documentation.projects p
WHERE p.id = v.project_id AND p.name = $1 AND v.version = $2 RETURNING v.id
"""
MARK_REEMBED = """
UPDATE documentation.versions v SET needs_reembed = EXISTS (
    SELECT 1 FROM documentation.chunks c WHERE c.version_id = v.id AND c.embedding_model <> $1
    UNION ALL
    SELECT 1 FROM documentation.endpoints e WHERE e.version_id = v.id AND e.embedding_model <> $1)
WHERE v.needs_reembed IS DISTINCT FROM EXISTS (
    SELECT 1 FROM documentation.chunks c WHERE c.version_id = v.id AND c.embedding_model <> $1
    UNION ALL
    SELECT 1 FROM documentation.endpoints e WHERE e.version_id = v.id AND e.embedding_model <> $1)
"""


PROJECT_DESCRIPTION = "SELECT description FROM documentation.projects WHERE name = $1"


async def project_description(db: Database, name: str) -> str | None:
    value: str | None = await db.fetchval(PROJECT_DESCRIPTION, name)
    return value


async def delete_project(db: Database, name: str) -> bool:
    """Whether the project existed (and is now gone with everything in it)."""
    return await db.fetchval(DELETE_PROJECT, name) is not None


async def delete_version(db: Database, project: str, version: str) -> bool:
    """Whether the version existed (and is now gone with everything in it)."""
    return await db.fetchval(DELETE_VERSION, project, version) is not None


async def create_project(conn: asyncpg.Connection, name: str, description: str) -> tuple[int, bool]:
    row = await conn.fetchrow(CREATE_PROJECT, name, description)
    assert row is not None
    return int(row["id"]), bool(row["created"])


async def ensure_version(conn: asyncpg.Connection, project_id: int, version: str) -> int:
    return int(await conn.fetchval(ENSURE_VERSION, project_id, version))


async def project_id(db: Database | asyncpg.Connection, name: str) -> int:
    value = await db.fetchval(PROJECT_ID, name)
    if value is None:
        raise NotFound(f"No project {shown(name)}. Create it with manage_project(action='create') or list projects.")
    return int(value)


async def version_id(db: Database | asyncpg.Connection, project: str, version: str) -> int:
    value = await db.fetchval(VERSION_ID, project, version)
    if value is None:
        await project_id(db, project)
        raise NotFound(
            f"Project {shown(project)} has no version {shown(version)}; manage_project(action='describe') lists them."
        )
    return int(value)


async def scope(db: Database, project: str | None, version: str | None) -> list[int]:
    if project is not None:
        await project_id(db, project)
    ids = [int(r["id"]) for r in await db.fetch(SCOPE, project, version)]
    if project is not None and version is not None and not ids:
        await version_id(db, project, version)
    return ids


async def list_projects(db: Database, limit: int, offset: int) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(LIST_PROJECTS, limit, offset)]


async def describe(db: Database, name: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(DESCRIBE_VERSIONS, name)]


async def mark_reembed(db: Database, model: str) -> None:
    await db.execute(MARK_REEMBED, model)


# ------------------------------------------------------------------------------------------- documents

DOC_STATE = """
SELECT path, content_hash, embedding_model FROM documentation.documents
WHERE version_id = $1 AND root = $2 AND source = 'folder'
"""
UPSERT_DOC = """
INSERT INTO documentation.documents
    (version_id, path, title, kind, source, root, content, content_hash, embedding_model, toc)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)
ON CONFLICT (version_id, path) DO UPDATE SET
    title = EXCLUDED.title, kind = EXCLUDED.kind, source = EXCLUDED.source, root = EXCLUDED.root,
    content = EXCLUDED.content, content_hash = EXCLUDED.content_hash,
    embedding_model = EXCLUDED.embedding_model, toc = EXCLUDED.toc, updated_at = now()
RETURNING id, (xmax = 0) AS created
"""
DELETE_CHUNKS = "DELETE FROM documentation.chunks WHERE document_id = $1"
INSERT_CHUNK = """
INSERT INTO documentation.chunks
    (document_id, version_id, ordinal, heading_path, heading, anchor, start_offset, end_offset, content,
     embedding, embedding_model, keys)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""
DELETE_DOCS = """
DELETE FROM documentation.documents WHERE version_id = $1 AND root = $2 AND source = 'folder' AND path = ANY($3::text[])
"""
DOC_COLUMNS = """d.id, d.path, d.title, d.kind, d.source, d.content_hash, d.toc, length(d.content) AS chars,
       d.updated_at, v.version, p.name AS project"""
DOC_FROM = """documentation.documents d JOIN documentation.versions v ON v.id = d.version_id
     JOIN documentation.projects p ON p.id = v.project_id"""
GET_DOC_BY_ID = f"SELECT {DOC_COLUMNS} FROM {DOC_FROM} WHERE d.id = $1"
GET_DOC_BY_PATH = f"SELECT {DOC_COLUMNS} FROM {DOC_FROM} WHERE p.name = $1 AND v.version = $2 AND d.path = $3"
DOC_TEXT = "SELECT substr(content, $2, $3) FROM documentation.documents WHERE id = $1"
LIST_DOCS = f"""
SELECT {DOC_COLUMNS}, count(*) OVER () AS total FROM {DOC_FROM}
WHERE d.version_id = $1 AND ($2::text IS NULL OR d.path LIKE $2 || '%')
ORDER BY d.path LIMIT $3 OFFSET $4
"""


ANALYZE_CHUNKS = "ANALYZE documentation.chunks"


async def analyze_chunks(db: Database) -> None:
    await db.execute(ANALYZE_CHUNKS)


async def doc_state(db: Database, version: int, root: str) -> dict[str, tuple[str, str]]:
    rows = await db.fetch(DOC_STATE, version, root)
    return {r["path"]: (r["content_hash"], r["embedding_model"]) for r in rows}


async def write_document(
    conn: asyncpg.Connection,
    *,
    version: int,
    path: str,
    title: str,
    kind: str,
    source: str,
    root: str | None,
    content: str,
    content_hash: str,
    model: str,
    toc: list[dict[str, Any]],
    chunks: Sequence[tuple[list[str], str, str, int, int, str, np.ndarray, str]],
) -> tuple[int, bool]:
    """Replace a document and all its chunks; call inside one transaction so nobody sees half of it."""
    row = await conn.fetchrow(
        UPSERT_DOC, version, path, title, kind, source, root, content, content_hash, model, json.dumps(toc)
    )
    assert row is not None
    doc_id = int(row["id"])
    await conn.execute(DELETE_CHUNKS, doc_id)
    if chunks:
        await conn.executemany(
            INSERT_CHUNK,
            [
                (doc_id, version, i, hp, heading, anchor, s, e, text, vec, model, keys)
                for i, (hp, heading, anchor, s, e, text, vec, keys) in enumerate(chunks)
            ],
        )
    return doc_id, bool(row["created"])


async def delete_documents(conn: asyncpg.Connection, version: int, root: str, paths: list[str]) -> int:
    result = await conn.execute(DELETE_DOCS, version, root, paths)
    return int(result.split()[-1])


async def get_document(db: Database, doc_id: int) -> dict[str, Any] | None:
    row = await db.fetchrow(GET_DOC_BY_ID, doc_id)
    return dict(row) if row else None


async def get_document_by_path(db: Database, project: str, version: str, path: str) -> dict[str, Any] | None:
    row = await db.fetchrow(GET_DOC_BY_PATH, project, version, path)
    return dict(row) if row else None


async def document_text(db: Database, doc_id: int, offset: int, length: int) -> str:
    value: str | None = await db.fetchval(DOC_TEXT, doc_id, offset + 1, length)
    return value or ""


async def list_documents(
    db: Database, version: int, prefix: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(LIST_DOCS, version, prefix, limit, offset)]


# ------------------------------------------------------------------------------------------- search

SEARCH = """
WITH vec AS (
    SELECT id, row_number() OVER (ORDER BY dist) AS r FROM (
        SELECT c.id, c.embedding <=> $1 AS dist FROM documentation.chunks c
        WHERE c.embedding_model = $2 AND c.version_id = ANY($3::bigint[])
        ORDER BY c.embedding <=> $1 LIMIT $5) v
), kw AS (
    -- $4 filters (the rarest words, or every word when all are common: common.keywords) and hands at
    -- most $8 rows to ranking by $9 (every word); the vector list carries meaning beyond them.
    SELECT id, row_number() OVER (ORDER BY rank DESC, id) AS r FROM (
        SELECT m.id, ts_rank(m.tsv, to_tsquery('english', $9)) AS rank FROM (
            SELECT c.id, c.tsv FROM documentation.chunks c
            WHERE $4 <> '' AND c.tsv @@ to_tsquery('english', $4) AND c.embedding_model = $2
              AND c.version_id = ANY($3::bigint[])
            LIMIT $8) m
        ORDER BY rank DESC LIMIT $5) k
), fused AS (
    SELECT id, sum(w) AS score FROM (
        SELECT id, $10::float8 / (60 + r) AS w FROM vec UNION ALL SELECT id, $11::float8 / (60 + r) FROM kw) u
    GROUP BY id
), grouped AS (
    -- $12: one hit per document (its best chunk, ranked by that chunk's score), else one per chunk.
    SELECT f.id, f.score, CASE WHEN $12 THEN -c.document_id ELSE c.id END AS grp,
           row_number() OVER (PARTITION BY CASE WHEN $12 THEN -c.document_id ELSE c.id END
                              ORDER BY f.score DESC, f.id) AS rn
    FROM fused f JOIN documentation.chunks c ON c.id = f.id
), page AS (
    SELECT g.id, g.grp, g.score, count(*) OVER () AS total FROM grouped g WHERE g.rn = 1
    ORDER BY g.score DESC, g.id LIMIT $6 OFFSET $7
)
SELECT c.id, pg.score::float8 AS score, pg.total, c.content, c.heading_path, c.anchor, c.keys,
       d.id AS document_id, d.path, d.title, v.version, p.name AS project,
       ARRAY(SELECT o.anchor || chr(31) || array_to_string(o.heading_path, chr(30)) FROM grouped k
             JOIN documentation.chunks o ON o.id = k.id
             WHERE k.grp = pg.grp AND k.rn > 1 ORDER BY k.rn LIMIT 8) AS others
FROM page pg
JOIN documentation.chunks c ON c.id = pg.id
JOIN documentation.documents d ON d.id = c.document_id
JOIN documentation.versions v ON v.id = c.version_id
JOIN documentation.projects p ON p.id = v.project_id
ORDER BY pg.score DESC, pg.id
"""
MODEL_STATE = """
SELECT EXISTS (SELECT 1 FROM documentation.chunks WHERE version_id = ANY($1::bigint[]) AND embedding_model = $2)
           AS has_current,
       -- < and > rather than <>: two range scans of chunks_version_idx instead of a walk over every
       -- chunk of the versions when all share the model (the usual case).
       (EXISTS (SELECT 1 FROM documentation.chunks WHERE version_id = ANY($1::bigint[]) AND embedding_model < $2)
        OR EXISTS (SELECT 1 FROM documentation.chunks WHERE version_id = ANY($1::bigint[]) AND embedding_model > $2))
           AS has_other
"""


async def search(
    db: Database,
    vector: np.ndarray,
    model: str,
    versions: list[int],
    keywords: KeywordPlan | None,
    candidates: int,
    limit: int,
    offset: int,
    pool: int = 500,
    weights: Sequence[float] = (1.0, 0.6),
    per_document: bool = True,
) -> list[dict[str, Any]]:
    """Hybrid search in one statement. The pool's sessions scan HNSW iteratively (common.db), so
    filtered vector search keeps going until enough rows pass the version/model filter, with
    pgvector's default ef_search (raising it to the depth makes PostgreSQL prefer an exact scan).

    ``weights``: the reciprocal-rank-fusion weights of the meaning and keyword lists."""
    match, rank = (keywords.match, keywords.rank) if keywords is not None else ("", "")
    w_vec, w_kw = weights
    rows = await db.fetch(
        SEARCH,
        vector,
        model,
        versions,
        match,
        candidates,
        limit,
        offset,
        pool,
        rank or None,
        w_vec,
        w_kw,
        per_document,
    )
    return [dict(r) for r in rows]


async def model_state(db: Database, versions: list[int], model: str) -> tuple[bool, bool]:
    """(any chunk of ``model`` in scope, any chunk of another model in scope): two index probes, no count."""
    row = await db.fetchrow(MODEL_STATE, versions, model)
    assert row is not None
    return bool(row["has_current"]), bool(row["has_other"])


# ------------------------------------------------------------------------------------------- jobs
# Jobs are created, run and managed by common.jobs; only the listing by project is particular here.

JOB_KIND = "ingest_folder"
LIST_JOBS = """
SELECT j.id, j.kind, j.key, j.params, j.status, j.cancel_requested, j.done, j.total, j.counts, j.errors,
       j.errors_total, j.state, j.message, j.attempts, j.owner, j.heartbeat_at, j.created_at, j.finished_at,
       count(*) OVER () AS total_rows
FROM documentation.jobs j
WHERE j.kind = $1 AND ($2::text IS NULL OR j.version_id IN (
    SELECT v.id FROM documentation.versions v JOIN documentation.projects p ON p.id = v.project_id WHERE p.name = $2))
ORDER BY j.created_at DESC, j.id LIMIT $3 OFFSET $4
"""


async def list_jobs(db: Database, project: str | None, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Ingest jobs (of one project, or all), newest first, as rows of the kit's columns; and the total."""
    rows = [dict(r) for r in await db.fetch(LIST_JOBS, JOB_KIND, project, limit, offset)]
    total = int(rows[0]["total_rows"]) if rows else 0
    for r in rows:
        del r["total_rows"]
    return rows, total


# ------------------------------------------------------------------------------------------- API specs

GET_SPEC = "SELECT id, title, spec_version, source, content_hash, document, imported_at FROM documentation.specs WHERE version_id = $1"
PREVIOUS_SPEC = """
SELECT s.id, v.version FROM documentation.specs s JOIN documentation.versions v ON v.id = s.version_id
WHERE v.project_id = (SELECT project_id FROM documentation.versions WHERE id = $1) AND s.version_id <> $1
ORDER BY s.imported_at DESC LIMIT 1
"""
FINGERPRINTS = "SELECT method || ' ' || path AS key, fingerprint FROM documentation.endpoints WHERE spec_id = $1"
UPSERT_SPEC = """
INSERT INTO documentation.specs (version_id, title, spec_version, source, content_hash, document)
VALUES ($1, $2, $3, $4, $5, $6::jsonb)
ON CONFLICT (version_id) DO UPDATE SET title = EXCLUDED.title, spec_version = EXCLUDED.spec_version,
    source = EXCLUDED.source, content_hash = EXCLUDED.content_hash, document = EXCLUDED.document, imported_at = now()
RETURNING id
"""
DELETE_ENDPOINTS = "DELETE FROM documentation.endpoints WHERE spec_id = $1"
INSERT_ENDPOINT = """
INSERT INTO documentation.endpoints (spec_id, version_id, method, path, operation_id, summary, description, tags,
    deprecated, parameters, request_body, responses, fingerprint, embedding, embedding_model)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb, $12::jsonb, $13, $14, $15)
"""
EP_COLUMNS = """e.id, e.method, e.path, e.operation_id, e.summary, e.description, e.tags, e.deprecated, e.parameters,
    e.request_body, e.responses, v.version, p.name AS project"""
EP_FROM = """documentation.endpoints e JOIN documentation.versions v ON v.id = e.version_id
    JOIN documentation.projects p ON p.id = v.project_id"""
LIST_ENDPOINTS = f"""
SELECT {EP_COLUMNS}, NULL::float8 AS score, count(*) OVER () AS total FROM {EP_FROM}
WHERE e.version_id = ANY($1::bigint[]) AND ($2::text IS NULL OR $2 = ANY(e.tags))
ORDER BY p.name, v.version, e.path, e.method LIMIT $3 OFFSET $4
"""
SEARCH_ENDPOINTS = f"""
WITH vec AS (
    SELECT id, row_number() OVER (ORDER BY dist) AS r FROM (
        SELECT e.id, e.embedding <=> $1 AS dist FROM documentation.endpoints e
        WHERE e.version_id = ANY($2::bigint[]) AND e.embedding_model = $3 AND ($4::text IS NULL OR $4 = ANY(e.tags))
        ORDER BY e.embedding <=> $1 LIMIT $5) x
), kw AS (
    SELECT id, row_number() OVER (ORDER BY rank DESC, id) AS r FROM (
        SELECT e.id, ts_rank_cd(e.tsv, q) AS rank FROM documentation.endpoints e, to_tsquery('english', $6) q
        WHERE $6 <> '' AND e.tsv @@ q AND e.version_id = ANY($2::bigint[]) AND e.embedding_model = $3
          AND ($4::text IS NULL OR $4 = ANY(e.tags))
        ORDER BY rank DESC LIMIT $5) k
), fused AS (
    SELECT id, sum(1.0 / (60 + r)) AS score FROM (SELECT * FROM vec UNION ALL SELECT * FROM kw) u GROUP BY id
)
SELECT {EP_COLUMNS}, f.score::float8 AS score, count(*) OVER () AS total FROM fused f
JOIN documentation.endpoints e ON e.id = f.id JOIN documentation.versions v ON v.id = e.version_id
JOIN documentation.projects p ON p.id = v.project_id
ORDER BY f.score DESC, e.id LIMIT $7 OFFSET $8
"""
GET_ENDPOINT = f"""
SELECT {EP_COLUMNS}, NULL::float8 AS score, 1 AS total FROM {EP_FROM}
WHERE e.version_id = $1 AND (($2::text IS NOT NULL AND e.method = upper($2) AND e.path = $3) OR e.operation_id = $4)
ORDER BY e.id LIMIT 1
"""
SPEC_ENDPOINTS = f"SELECT {EP_COLUMNS} FROM {EP_FROM} WHERE e.spec_id = $1 ORDER BY e.path, e.method"


def _ep(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    for k in ("parameters", "request_body", "responses"):
        if isinstance(out.get(k), str):
            out[k] = json.loads(out[k])
    return out


async def get_spec(db: Database | asyncpg.Connection, version: int) -> dict[str, Any] | None:
    return decoded(await db.fetchrow(GET_SPEC, version), "document")


async def previous_spec(conn: asyncpg.Connection, version: int) -> tuple[int, str] | None:
    row = await conn.fetchrow(PREVIOUS_SPEC, version)
    return (int(row["id"]), str(row["version"])) if row else None


async def fingerprints(conn: asyncpg.Connection, spec_id: int) -> dict[str, str]:
    return {r["key"]: r["fingerprint"] for r in await conn.fetch(FINGERPRINTS, spec_id)}


async def replace_spec(
    conn: asyncpg.Connection,
    version: int,
    title: str,
    spec_version: str,
    source: str,
    content_hash: str,
    document: dict[str, Any],
    rows: list[tuple[Any, ...]],
    model: str,
) -> int:
    spec_id = int(
        await conn.fetchval(UPSERT_SPEC, version, title, spec_version, source, content_hash, json.dumps(document))
    )
    await conn.execute(DELETE_ENDPOINTS, spec_id)
    await conn.executemany(
        INSERT_ENDPOINT,
        [(spec_id, version, *r, model) for r in rows],
    )
    return spec_id


async def list_endpoints(
    db: Database, versions: list[int], tag: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    return [_ep(r) for r in await db.fetch(LIST_ENDPOINTS, versions, tag, limit, offset)]


async def search_endpoints(
    db: Database,
    vector: np.ndarray,
    versions: list[int],
    model: str,
    tag: str | None,
    candidates: int,
    tsquery: str,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    async with db.transaction() as conn:
        await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        rows = await conn.fetch(SEARCH_ENDPOINTS, vector, versions, model, tag, candidates, tsquery, limit, offset)
    return [_ep(r) for r in rows]


async def get_endpoint(
    db: Database, version: int, method: str | None, path: str | None, operation_id: str | None
) -> dict[str, Any] | None:
    row = await db.fetchrow(GET_ENDPOINT, version, method, path, operation_id)
    return _ep(row) if row else None


async def spec_endpoints(db: Database, spec_id: int) -> list[dict[str, Any]]:
    return [_ep(r) for r in await db.fetch(SPEC_ENDPOINTS, spec_id)]


# ------------------------------------------------------------------------------------------- generated

UPSERT_GENERATED = """
INSERT INTO documentation.generated (version_id, document_id, spec_id, kind, provenance)
VALUES ($1, $2, $3, $4, $5::jsonb)
ON CONFLICT (document_id) DO UPDATE SET spec_id = EXCLUDED.spec_id, kind = EXCLUDED.kind,
    provenance = EXCLUDED.provenance, created_at = now()
RETURNING id, created_at
"""
LIST_GENERATED = """
SELECT g.id, g.kind, g.spec_id, g.provenance, g.created_at, d.id AS document_id, d.path, length(d.content) AS chars,
       v.version, p.name AS project, count(*) OVER () AS total
FROM documentation.generated g JOIN documentation.documents d ON d.id = g.document_id
JOIN documentation.versions v ON v.id = g.version_id JOIN documentation.projects p ON p.id = v.project_id
WHERE g.version_id = ANY($1::bigint[]) ORDER BY g.created_at DESC, g.id DESC LIMIT $2 OFFSET $3
"""


async def record_generated(
    conn: asyncpg.Connection, version: int, document_id: int, spec_id: int | None, kind: str, provenance: dict[str, Any]
) -> dict[str, Any]:
    row = await conn.fetchrow(UPSERT_GENERATED, version, document_id, spec_id, kind, json.dumps(provenance))
    assert row is not None
    return dict(row)


async def list_generated(db: Database, versions: list[int], limit: int, offset: int) -> list[dict[str, Any]]:
    rows = [dict(r) for r in await db.fetch(LIST_GENERATED, versions, limit, offset)]
    for r in rows:
        if isinstance(r["provenance"], str):
            r["provenance"] = json.loads(r["provenance"])
    return rows


# ------------------------------------------------------------------------------------------- re-embedding

STALE_CHUNKS = """
SELECT c.id, c.content, c.heading_path, c.keys, d.title FROM documentation.chunks c
JOIN documentation.documents d ON d.id = c.document_id
WHERE c.version_id = ANY($1::bigint[]) AND c.embedding_model <> $2 ORDER BY c.id LIMIT $3
"""
UPDATE_CHUNK_VECTOR = "UPDATE documentation.chunks SET embedding = $2, embedding_model = $3 WHERE id = $1"
STALE_ENDPOINTS = """
SELECT id, method, path, operation_id, summary, description, tags FROM documentation.endpoints
WHERE version_id = ANY($1::bigint[]) AND embedding_model <> $2 ORDER BY id LIMIT $3
"""
UPDATE_ENDPOINT_VECTOR = "UPDATE documentation.endpoints SET embedding = $2, embedding_model = $3 WHERE id = $1"
DOCS_MODEL = """
UPDATE documentation.documents d SET embedding_model = $2 WHERE d.version_id = ANY($1::bigint[])
AND NOT EXISTS (SELECT 1 FROM documentation.chunks c WHERE c.document_id = d.id AND c.embedding_model <> $2)
"""


async def stale_chunks(db: Database, versions: list[int], model: str, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(STALE_CHUNKS, versions, model, limit)]


async def stale_endpoints(db: Database, versions: list[int], model: str, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(STALE_ENDPOINTS, versions, model, limit)]


async def set_chunk_vectors(db: Database, rows: list[tuple[int, np.ndarray, str]]) -> None:
    await db.executemany(UPDATE_CHUNK_VECTOR, rows)


async def set_endpoint_vectors(db: Database, rows: list[tuple[int, np.ndarray, str]]) -> None:
    await db.executemany(UPDATE_ENDPOINT_VECTOR, rows)


async def settle_documents_model(db: Database, versions: list[int], model: str) -> None:
    await db.execute(DOCS_MODEL, versions, model)
