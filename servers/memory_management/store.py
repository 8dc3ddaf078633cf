"""Every SQL statement on schema ``memory_management``: constants with $n parameters, small functions.

Concurrency rests on PostgreSQL: the partial unique index on (workspace, content_hash) of active rows
makes concurrent stores of one text meet in ``ON CONFLICT``; updates lock their row; moves take a
per-workspace advisory lock so two concurrent moves cannot build a cycle between them.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from common.keywords import KeywordPlan
from common.rows import decoded

if TYPE_CHECKING:  # numpy and asyncpg load with the connection, after initialize (common.runtime.DepsGate)
    import asyncpg
    import numpy as np

    from common.db import Database

MEMORY_COLUMNS = """
m.id::text AS id, m.workspace, m.scope, m.parent_id::text AS parent_id, m.kind, m.content, m.tags, m.metadata,
m.importance, m.state, m.expires_at, m.access_count, m.useful_count, m.not_useful_count, m.created_at,
m.updated_at, m.version, m.embedding_model
"""

LIVE = "(m.expires_at IS NULL OR m.expires_at > now())"


def content_hash(content: str) -> str:
    """Dedupe key: the text with case and runs of whitespace ignored."""
    normal = " ".join(content.split()).casefold()
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()


def unique_violation() -> type[Exception]:
    """asyncpg's UniqueViolationError, for an ``except`` clause (asyncpg loads after the handshake)."""
    from asyncpg.exceptions import UniqueViolationError

    return UniqueViolationError


def _row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return decoded(record, "metadata")


# ------------------------------------------------------------------------------------------- writes


@dataclass(frozen=True)
class NewMemory:
    workspace: str
    scope: str
    parent_id: str | None
    kind: str
    content: str
    tags: list[str]
    metadata: dict[str, Any]
    importance: float
    ttl_seconds: int | None


INSERT = """
INSERT INTO memories AS m (workspace, scope, parent_id, kind, content, content_hash, tags, metadata, importance,
                           embedding, embedding_model, expires_at, indexed)
VALUES ($1, $2, $3::uuid, $4, $5, $6, $7, $8::jsonb, $9, $10, $11,
        CASE WHEN $12::int IS NULL THEN NULL ELSE now() + make_interval(secs => $12::int) END, $13)
ON CONFLICT (workspace, content_hash) WHERE state = 'active' DO UPDATE SET
    tags = ARRAY(SELECT DISTINCT t FROM unnest(m.tags || EXCLUDED.tags) AS t ORDER BY t),
    importance = GREATEST(m.importance, EXCLUDED.importance),
    expires_at = CASE WHEN m.expires_at IS NULL OR EXCLUDED.expires_at IS NULL THEN NULL
                      ELSE GREATEST(m.expires_at, EXCLUDED.expires_at) END
RETURNING m.id::text AS id, m.version, m.state, (m.xmax = 0) AS created
"""

PARENT_OF = (
    """
SELECT m.workspace FROM memories m WHERE m.id = $1::uuid AND m.state = 'active' AND """
    + LIVE
    + " FOR KEY SHARE"
)


async def parent_workspace(conn: asyncpg.Connection, parent_id: str) -> str | None:
    value: str | None = await conn.fetchval(PARENT_OF, parent_id)
    return value


async def insert(
    conn: asyncpg.Connection, new: NewMemory, vector: np.ndarray | None, model: str, *, indexed: bool = True
) -> dict[str, Any]:
    """Insert or merge into the active memory with the same text; ``indexed=False`` leaves the HNSW
    insert to :func:`index_vectors` (migration 0004)."""
    row = await conn.fetchrow(
        INSERT,
        new.workspace,
        new.scope,
        new.parent_id,
        new.kind,
        new.content,
        content_hash(new.content),
        new.tags,
        json.dumps(new.metadata),
        new.importance,
        vector,
        model,
        new.ttl_seconds,
        indexed,
    )
    assert row is not None
    return dict(row)


GET = f"SELECT {MEMORY_COLUMNS} FROM memories m WHERE m.id = $1::uuid AND {LIVE}"
GET_FOR_UPDATE = f"SELECT {MEMORY_COLUMNS} FROM memories m WHERE m.id = $1::uuid AND {LIVE} FOR UPDATE"
CHILDREN = f"""
SELECT m.id::text AS id, m.version, m.state, false AS created, count(*) OVER () AS total
FROM memories m WHERE m.parent_id = $1::uuid AND m.state = 'active' AND {LIVE}
ORDER BY m.created_at, m.id LIMIT $2
"""
EXISTING_IDS = "SELECT id::text FROM memories WHERE id = ANY($1::uuid[])"


async def get(db: Database | asyncpg.Connection, memory_id: str) -> dict[str, Any] | None:
    return _row(await db.fetchrow(GET, memory_id))


SAME_TEXT = """
SELECT m.id::text FROM memories m
WHERE m.workspace = (SELECT workspace FROM memories WHERE id = $1::uuid) AND m.content_hash = $2
  AND m.state = 'active' AND m.id <> $1::uuid
"""


async def same_text(db: Database, memory_id: str, content: str) -> str | None:
    """The other active memory of ``memory_id``'s workspace whose text is ``content`` (as deduplicated)."""
    value: str | None = await db.fetchval(SAME_TEXT, memory_id, content_hash(content))
    return value


async def get_for_update(conn: asyncpg.Connection, memory_id: str) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(GET_FOR_UPDATE, memory_id))


async def children(db: Database, memory_id: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    rows = [dict(r) for r in await db.fetch(CHILDREN, memory_id, limit)]
    total = int(rows[0].pop("total")) if rows else 0
    for r in rows[1:]:
        r.pop("total")
    return rows, total


async def existing_ids(conn: asyncpg.Connection | Database, ids: Sequence[str]) -> set[str]:
    return {r["id"] for r in await conn.fetch(EXISTING_IDS, list(ids))}


HISTORY = """
INSERT INTO memory_history (memory_id, version, action, content, tags, metadata, importance, parent_id, merged_into)
SELECT m.id, m.version, $2, m.content, m.tags, m.metadata, m.importance, m.parent_id, $3::uuid
FROM memories m WHERE m.id = ANY($1::uuid[])
"""


async def record_history(
    conn: asyncpg.Connection, ids: Sequence[str], action: str, merged_into: str | None = None
) -> None:
    await conn.execute(HISTORY, list(ids), action, merged_into)


UPDATE = """
UPDATE memories m SET content = $2, content_hash = $3, tags = $4, metadata = $5::jsonb, importance = $6, kind = $7,
    embedding = coalesce($8, m.embedding), embedding_model = $9,
    expires_at = CASE WHEN $10::int IS NULL THEN m.expires_at WHEN $10::int = 0 THEN NULL
                      ELSE now() + make_interval(secs => $10::int) END,
    version = m.version + 1, updated_at = now()
WHERE m.id = $1::uuid
RETURNING m.id::text AS id, m.version, m.state, false AS created
"""


async def update(
    conn: asyncpg.Connection,
    old: dict[str, Any],
    *,
    content: str,
    tags: list[str],
    metadata: dict[str, Any],
    importance: float,
    kind: str,
    vector: np.ndarray | None,
    model: str,
    ttl_seconds: int | None,
) -> dict[str, Any]:
    await record_history(conn, [old["id"]], "update")
    row = await conn.fetchrow(
        UPDATE,
        old["id"],
        content,
        content_hash(content),
        tags,
        json.dumps(metadata),
        importance,
        kind,
        vector,
        model,
        ttl_seconds,
    )
    assert row is not None
    return dict(row)


HISTORY_OF = """
SELECT version, action, content, tags, importance, parent_id::text AS parent_id, merged_into::text AS merged_into, at
FROM memory_history WHERE memory_id = $1::uuid ORDER BY id
"""


async def history(db: Database, memory_id: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(HISTORY_OF, memory_id)]


# ------------------------------------------------------------------------------------------- recall


@dataclass(frozen=True)
class RecallFilter:
    workspace: str | None
    scopes: list[str] | None
    tags: list[str] | None
    kind: str | None
    since: datetime | None
    until: datetime | None

    def args(self) -> tuple[Any, ...]:
        return (self.workspace, self.scopes, self.tags or None, self.kind, self.since, self.until)

    def sql(self, first: int) -> tuple[str, list[Any]]:
        """The active filters as SQL with parameters numbered from ``$first``, and their values.

        Only the filters in use appear: a query full of ``$n IS NULL OR ...`` branches is planned
        for the worst case (and re-planned on every call), one with plain predicates is planned
        once and can use the indexes.
        """
        parts = [f"m.state = 'active' AND {LIVE}"]
        values: list[Any] = []

        def add(template: str, value: Any) -> None:
            values.append(value)
            parts.append(template.replace("$?", f"${first + len(values) - 1}"))

        if self.workspace is not None:
            add("(m.workspace = $? OR m.scope = 'global')", self.workspace)
        if self.scopes:
            add("m.scope = ANY($?::text[])", self.scopes)
        if self.tags:
            add("m.tags @> $?::text[]", self.tags)
        if self.kind is not None:
            add("m.kind = $?", self.kind)
        if self.since is not None:
            add("m.created_at >= $?", self.since)
        if self.until is not None:
            add("m.created_at < $?", self.until)
        return " AND ".join(parts), values


#: The columns a recalled memory is shown and ranked with.
HIT_COLUMNS = """m.id::text AS id, m.content, m.kind, m.tags, m.workspace, m.created_at, m.importance,
       m.useful_count, m.not_useful_count, extract(epoch FROM now() - m.created_at)::float8 AS age_s"""


def keyword_sql(
    flt: RecallFilter, plan: KeywordPlan, *, depth: int, scan_cap: int, vectors: bool = False
) -> tuple[str, list[Any]]:
    """The keyword list: rows matching ``plan.match`` (at most ``scan_cap`` of them), ranked by ``plan.rank``.

    rank(), not row_number(): memories with equal keyword scores (often all that share just a name)
    share a rank, so an arbitrary tie order cannot lend one of them a fusion bonus. ``vectors`` adds
    each hit's vector and model: hybrid recall computes the similarity of keyword hits that the
    vector list did not reach from these, instead of asking PostgreSQL again.
    """
    where, values = flt.sql(5)
    extra = ", m.embedding, m.embedding_model" if vectors else ""
    sql = f"""
SELECT {HIT_COLUMNS}, k.kw_rank, k.kw_score{extra} FROM (
    SELECT c.id, c.r AS kw_score, rank() OVER (ORDER BY c.r DESC) AS kw_rank FROM (
        SELECT s.id, ts_rank_cd(s.tsv, {plan.sql("$2")}) AS r FROM (
            SELECT m.id, m.tsv FROM memories m WHERE m.tsv @@ {plan.sql("$1")} AND {where} LIMIT $4
        ) s ORDER BY r DESC LIMIT $3
    ) c
) k JOIN memories m ON m.id = k.id"""
    return sql, [plan.match, plan.rank, depth, scan_cap, *values]


def semantic_sql(flt: RecallFilter) -> str:
    """The nearest-vector list: the HNSW graph, plus an exact pass over rows not yet in it (0004).

    Parameters: $1 vector, $2 model, $3 depth, then the filters from $4.
    """
    where, _ = flt.sql(4)
    return f"""
SELECT {HIT_COLUMNS}, row_number() OVER (ORDER BY n.dist, n.id) AS sem_rank, 1 - n.dist AS similarity FROM (
    SELECT u.id, u.dist FROM (
        (SELECT m.id, m.embedding <=> $1::vector AS dist FROM memories m
         WHERE m.indexed AND m.embedding IS NOT NULL AND m.embedding_model = $2 AND {where}
         ORDER BY m.embedding <=> $1::vector LIMIT $3)
        UNION ALL
        (SELECT m.id, m.embedding <=> $1::vector AS dist FROM memories m
         WHERE NOT m.indexed AND m.embedding IS NOT NULL AND m.embedding_model = $2 AND {where}
         ORDER BY 2 LIMIT $3)
    ) u ORDER BY u.dist LIMIT $3
) n JOIN memories m ON m.id = n.id"""


async def keyword_candidates(
    conn: asyncpg.Connection, flt: RecallFilter, plan: KeywordPlan, *, depth: int, scan_cap: int, vectors: bool = False
) -> list[dict[str, Any]]:
    sql, values = keyword_sql(flt, plan, depth=depth, scan_cap=scan_cap, vectors=vectors)
    return [dict(r) for r in await conn.fetch(sql, *values)]


async def semantic_candidates(
    conn: asyncpg.Connection, flt: RecallFilter, vector: np.ndarray, model: str, *, depth: int
) -> list[dict[str, Any]]:
    """The rows nearest to ``vector`` (with ``sem_rank`` and ``similarity``)."""
    _, values = flt.sql(4)
    return [dict(r) for r in await conn.fetch(semantic_sql(flt), vector, model, depth, *values)]


def merge(
    keyword_rows: list[dict[str, Any]], semantic_rows: list[dict[str, Any]], vector: np.ndarray | None, model: str
) -> list[dict[str, Any]]:
    """One candidate per memory with ``sem_rank``, ``kw_rank``, ``kw_score`` and ``similarity``.

    A keyword hit outside the vector list gets its similarity from its own vector (when ``vector`` is
    given and the hit was embedded by ``model``); the vector itself is dropped from the row.
    """
    out: dict[str, dict[str, Any]] = {}
    for row in keyword_rows:
        emb, emb_model = row.pop("embedding", None), row.pop("embedding_model", None)
        similarity = None
        if vector is not None and emb is not None and emb_model == model:
            import numpy as np

            other = emb.to_numpy() if hasattr(emb, "to_numpy") else np.asarray(emb, dtype=np.float32)
            norm = float(np.linalg.norm(other)) * float(np.linalg.norm(vector))
            similarity = float(np.dot(other, vector)) / norm if norm else 0.0
        out[row["id"]] = {**row, "sem_rank": None, "similarity": similarity}
    for row in semantic_rows:
        known = out.get(row["id"])
        if known is not None:
            known["similarity"] = row["similarity"]
            known["sem_rank"] = row["sem_rank"]
        else:
            out[row["id"]] = {**row, "kw_rank": None, "kw_score": None}
    return list(out.values())


#: Memories whose vector another model made (or that have none), oldest first: what reembed redoes.
STALE_VECTORS = """
SELECT m.id::text AS id, m.content, m.version, m.embedding_model FROM memories m
WHERE (m.embedding_model < $1 OR m.embedding_model > $1 OR m.embedding IS NULL) AND ($2::text IS NULL OR m.workspace = $2)
ORDER BY m.created_at, m.id LIMIT $3
"""
COUNT_STALE_VECTORS = """
SELECT m.embedding_model, count(*) AS n FROM memories m
WHERE (m.embedding_model < $1 OR m.embedding_model > $1 OR m.embedding IS NULL) AND ($2::text IS NULL OR m.workspace = $2)
GROUP BY 1 ORDER BY 2 DESC
"""
#: Only a row still at the version that was read: an edit meanwhile re-embedded it already.
SET_VECTOR = """
UPDATE memories SET embedding = $2, embedding_model = $3 WHERE id = $1::uuid AND version = $4
"""


async def stale_vectors(db: Database, model: str, workspace: str | None, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(STALE_VECTORS, model, workspace, limit)]


async def count_stale_vectors(db: Database, model: str, workspace: str | None) -> dict[str, int]:
    return {r["embedding_model"]: int(r["n"]) for r in await db.fetch(COUNT_STALE_VECTORS, model, workspace)}


async def set_vectors(conn: asyncpg.Connection, rows: Sequence[tuple[str, np.ndarray, str, int]]) -> int:
    """Write (id, vector, model, version) rows; returns how many were still at that version."""
    done = 0
    for row in rows:
        done += (await conn.execute(SET_VECTOR, *row)) == "UPDATE 1"
    return done


#: Cheap on any size of store: two range scans of memories_model_idx, empty when every vector is current.
ANY_OTHER_MODEL = """
SELECT EXISTS (SELECT 1 FROM memories WHERE (embedding_model < $1 OR embedding_model > $1) AND state = 'active')
"""


async def any_other_model(conn: asyncpg.Connection, model: str) -> bool:
    return bool(await conn.fetchval(ANY_OTHER_MODEL, model))


async def other_models(conn: asyncpg.Connection, flt: RecallFilter, model: str) -> dict[str, int]:
    where, values = flt.sql(2)
    rows = await conn.fetch(
        f"""SELECT m.embedding_model, count(*) AS n FROM memories m
WHERE (m.embedding_model < $1 OR m.embedding_model > $1) AND {where} GROUP BY 1 ORDER BY 2 DESC LIMIT 3""",
        model,
        *values,
    )
    return {r["embedding_model"]: int(r["n"]) for r in rows}


def touch_sql(ids: Sequence[str]) -> str:
    """One round trip that counts the accesses of ``ids`` (an id may repeat) without waiting for the disk.

    A lost access count is harmless and recall should not pay for a WAL flush, so the update runs in
    its own transaction with synchronous_commit off. Simple-query protocol (no parameters) is what
    lets the four statements travel together, so the ids are inlined: each is parsed as a UUID
    first, so nothing but UUIDs reaches the text.
    """
    counts = Counter(str(uuid.UUID(i)) for i in ids)
    values = ",".join(f"('{i}'::uuid,{n})" for i, n in sorted(counts.items()))
    return (
        "BEGIN; SET LOCAL synchronous_commit = off; "
        "UPDATE memories m SET access_count = m.access_count + v.n, last_accessed_at = now() "
        f"FROM (VALUES {values}) AS v(id, n) WHERE m.id = v.id; COMMIT"
    )


async def touch(db: Database, ids: Sequence[str]) -> None:
    if ids:
        sql = touch_sql(ids)
        await db.run(lambda conn: conn.execute(sql))


RATE = (
    """
UPDATE memories m SET useful_count = useful_count + $2::int, not_useful_count = not_useful_count + $3::int
WHERE m.id = $1::uuid AND m.state = 'active' AND """
    + LIVE
    + """
RETURNING m.id::text AS id, m.version, m.state, false AS created
"""
)


async def rate(db: Database, memory_id: str, useful: bool) -> dict[str, Any] | None:
    row = await db.fetchrow(RATE, memory_id, int(useful), int(not useful))
    return dict(row) if row else None


# ------------------------------------------------------------------------------------------- forget / restore / purge

SELECT_TARGETS = """
SELECT m.id::text AS id, m.workspace FROM memories m
WHERE m.state = $1 AND ($2::uuid[] IS NULL OR m.id = ANY($2::uuid[]))
AND ($3::text IS NULL OR m.workspace = $3)
AND ($4::text[] IS NULL OR m.tags @> $4)
AND ($5::text IS NULL OR m.kind = $5)
AND ($6::text[] IS NULL OR m.scope = ANY($6))
AND ($7::timestamptz IS NULL OR m.created_at < $7)
AND ($8::timestamptz IS NULL OR coalesce(m.archived_at, m.updated_at) < $8)
ORDER BY m.id LIMIT $9
"""


@dataclass(frozen=True)
class Target:
    state: str
    ids: list[str] | None = None
    workspace: str | None = None
    tags: list[str] | None = None
    kind: str | None = None
    scopes: list[str] | None = None
    before: datetime | None = None
    archived_before: datetime | None = None

    def args(self) -> tuple[Any, ...]:
        return (
            self.state,
            self.ids,
            self.workspace,
            self.tags or None,
            self.kind,
            self.scopes,
            self.before,
            self.archived_before,
        )


async def select_targets(
    conn: asyncpg.Connection | Database, target: Target, limit: int, *, lock: bool = False
) -> list[dict[str, Any]]:
    sql = SELECT_TARGETS + (" FOR UPDATE" if lock else "")
    return [dict(r) for r in await conn.fetch(sql, *target.args(), limit)]


ARCHIVE = """
UPDATE memories SET state = 'archived', archived_at = now(), updated_at = now(), version = version + 1
WHERE id = ANY($1::uuid[]) AND state = 'active'
"""
RESTORE = """
UPDATE memories m SET state = 'active', archived_at = NULL, updated_at = now(), version = m.version + 1
WHERE m.id = $1::uuid AND m.state = 'archived'
RETURNING m.id::text AS id, m.version, m.state, false AS created, m.workspace
"""
PURGE = "DELETE FROM memories WHERE id = ANY($1::uuid[]) AND state = 'archived'"


async def archive(conn: asyncpg.Connection, ids: Sequence[str]) -> None:
    await record_history(conn, ids, "archive")
    await conn.execute(ARCHIVE, list(ids))


async def restore(conn: asyncpg.Connection, memory_id: str) -> dict[str, Any] | None:
    await record_history(conn, [memory_id], "restore")
    row = await conn.fetchrow(RESTORE, memory_id)
    return dict(row) if row else None


async def purge(conn: asyncpg.Connection, ids: Sequence[str]) -> None:
    await conn.execute(PURGE, list(ids))


#: Put rows stored with indexed = false into the HNSW graph (one UPDATE; asynchronous commit: a
#: lost flip is redone by the sweep, and recall finds unindexed rows meanwhile).
INDEX_VECTORS = """
BEGIN; SET LOCAL synchronous_commit = off;
UPDATE memories SET indexed = true WHERE id = ANY('{ids}'::uuid[]) AND NOT indexed; COMMIT"""
#: Rows a process stored but never indexed (it died first): the oldest, a batch at a time.
UNINDEXED = "SELECT id::text FROM memories WHERE NOT indexed AND created_at < now() - $1 * interval '1 second' ORDER BY created_at LIMIT $2"


async def index_vectors(db: Database, ids: Sequence[str]) -> None:
    if ids:
        literal = ",".join(sorted({str(uuid.UUID(i)) for i in ids}))
        sql = INDEX_VECTORS.format(ids="{" + literal + "}")
        await db.run(lambda conn: conn.execute(sql))


#: Merge the text and tag indexes' pending entries (each stored or flipped row adds some, and every
#: keyword search reads the whole pending list, so a long one slows every lookup).
FLUSH_PENDING = """
SELECT gin_clean_pending_list(i::regclass) FROM unnest(ARRAY['memories_tsv_idx', 'memories_tags_idx']) AS i
"""


async def flush_pending(db: Database) -> None:
    await db.execute(FLUSH_PENDING)


async def unindexed(db: Database, older_than_s: float, limit: int) -> list[str]:
    return [r["id"] for r in await db.fetch(UNINDEXED, older_than_s, limit)]


SWEEP = """
DELETE FROM memories WHERE id IN (
    SELECT id FROM memories WHERE expires_at <= now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
) RETURNING id::text AS id, workspace
"""


async def sweep_expired(db: Database, batch: int) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(SWEEP, batch)]


# ------------------------------------------------------------------------------------------- tree

TREE = f"""
WITH RECURSIVE t AS (
    SELECT m.id, m.parent_id, 0 AS depth, m.kind, m.content,
           ARRAY[to_char(m.created_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') || m.id::text] AS path
    FROM memories m
    WHERE m.state = 'active' AND {LIVE} AND (
        ($1::uuid IS NOT NULL AND m.id = $1::uuid)
        OR ($1::uuid IS NULL AND m.workspace = $2 AND (m.parent_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM memories p WHERE p.id = m.parent_id AND p.state = 'active'
            AND (p.expires_at IS NULL OR p.expires_at > now()))))
    )
    UNION ALL
    SELECT m.id, m.parent_id, t.depth + 1, m.kind, m.content,
           t.path || (to_char(m.created_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') || m.id::text)
    FROM memories m JOIN t ON m.parent_id = t.id
    WHERE t.depth < $3 AND m.state = 'active' AND {LIVE}
)
SELECT id::text AS id, parent_id::text AS parent_id, depth, kind, left(content, $5) AS snippet, count(*) OVER () AS total
FROM t ORDER BY path LIMIT $4
"""


async def tree(
    db: Database, root_id: str | None, workspace: str | None, depth: int, limit: int, snippet: int
) -> tuple[list[dict[str, Any]], int]:
    rows = [dict(r) for r in await db.fetch(TREE, root_id, workspace, depth, limit, snippet)]
    total = int(rows[0]["total"]) if rows else 0
    for r in rows:
        r.pop("total")
    return rows, total


WORKSPACE_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('memory_management.tree:' || $1, 0))"
IS_ANCESTOR = """
WITH RECURSIVE up AS (
    SELECT id, parent_id, 0 AS n FROM memories WHERE id = $1::uuid
    UNION ALL
    SELECT m.id, m.parent_id, up.n + 1 FROM memories m JOIN up ON m.id = up.parent_id WHERE up.n < 100000
)
SELECT EXISTS (SELECT 1 FROM up WHERE id = $2::uuid)
"""
MOVE = """
UPDATE memories m SET parent_id = $2::uuid, version = m.version + 1, updated_at = now() WHERE m.id = $1::uuid
RETURNING m.id::text AS id, m.version, m.state, false AS created
"""


async def lock_workspace_tree(conn: asyncpg.Connection, workspace: str) -> None:
    await conn.execute(WORKSPACE_LOCK, workspace)


async def is_ancestor_or_self(conn: asyncpg.Connection, node: str, of: str) -> bool:
    """Whether ``node`` is ``of`` or one of its ancestors."""
    return bool(await conn.fetchval(IS_ANCESTOR, of, node))


async def move(conn: asyncpg.Connection, memory_id: str, parent_id: str | None) -> dict[str, Any]:
    await record_history(conn, [memory_id], "move")
    row = await conn.fetchrow(MOVE, memory_id, parent_id)
    assert row is not None
    return dict(row)


# ------------------------------------------------------------------------------------------- consolidate

NEAR_DUPLICATES = """
WITH recent AS (
    SELECT m.id, m.embedding, m.embedding_model FROM memories m
    WHERE m.workspace = $1 AND m.state = 'active' AND (m.expires_at IS NULL OR m.expires_at > now())
      AND m.embedding IS NOT NULL AND m.embedding_model = $4
    ORDER BY m.created_at DESC LIMIT $3
)
SELECT a.id::text AS a, b.id::text AS b, b.sim FROM recent a
CROSS JOIN LATERAL (
    SELECT o.id, 1 - (o.embedding <=> a.embedding) AS sim FROM recent o
    WHERE o.id <> a.id ORDER BY o.embedding <=> a.embedding LIMIT 3
) b
WHERE b.sim >= $2 AND a.id < b.id
"""

MERGE_CANDIDATES = f"""
SELECT {MEMORY_COLUMNS} FROM memories m WHERE m.id = ANY($1::uuid[]) AND m.state = 'active' ORDER BY m.id FOR UPDATE
"""
MERGE_INTO = """
UPDATE memories m SET tags = $2, importance = $3, metadata = $4::jsonb, access_count = m.access_count + $5,
    useful_count = m.useful_count + $6, not_useful_count = m.not_useful_count + $7,
    version = m.version + 1, updated_at = now()
WHERE m.id = $1::uuid
"""
REPARENT = "UPDATE memories SET parent_id = $2::uuid WHERE parent_id = ANY($1::uuid[]) AND id <> $2::uuid"


async def near_duplicates(
    db: Database, workspace: str, threshold: float, scan: int, model: str
) -> list[tuple[str, str, float]]:
    rows = await db.fetch(NEAR_DUPLICATES, workspace, threshold, scan, model)
    return [(r["a"], r["b"], float(r["sim"])) for r in rows]


async def lock_for_merge(conn: asyncpg.Connection, ids: Sequence[str]) -> list[dict[str, Any]]:
    return [r for r in (_row(x) for x in await conn.fetch(MERGE_CANDIDATES, list(ids))) if r is not None]


async def merge_into(conn: asyncpg.Connection, keeper: dict[str, Any], others: list[dict[str, Any]]) -> None:
    other_ids = [o["id"] for o in others]
    await record_history(conn, [keeper["id"]], "merge")
    await record_history(conn, other_ids, "merge", merged_into=keeper["id"])
    tags = sorted({t for m in [keeper, *others] for t in m["tags"]})
    metadata: dict[str, Any] = {}
    for m in [*others, keeper]:  # the keeper's values win
        metadata.update(m["metadata"])
    await conn.execute(
        MERGE_INTO,
        keeper["id"],
        tags,
        max(m["importance"] for m in [keeper, *others]),
        json.dumps(metadata),
        sum(o["access_count"] for o in others),
        sum(o["useful_count"] for o in others),
        sum(o["not_useful_count"] for o in others),
    )
    await conn.execute(REPARENT, other_ids, keeper["id"])
    await conn.execute(ARCHIVE, other_ids)


# ------------------------------------------------------------------------------------------- workspaces

WORKSPACES = f"""
SELECT m.workspace AS name,
       count(*) FILTER (WHERE m.state = 'active' AND {LIVE}) AS active,
       count(*) FILTER (WHERE m.state = 'archived') AS archived,
       max(m.updated_at) AS last_updated
FROM memories m WHERE ($1::text IS NULL OR m.workspace > $1)
GROUP BY m.workspace ORDER BY m.workspace LIMIT $2
"""
WORKSPACE_TOTAL = "SELECT count(DISTINCT workspace) FROM memories"


async def workspaces(db: Database, after: str | None, limit: int) -> tuple[list[dict[str, Any]], int]:
    rows = [dict(r) for r in await db.fetch(WORKSPACES, after, limit)]
    total = int(await db.fetchval(WORKSPACE_TOTAL))
    return rows, total


STATS = f"""
SELECT count(*) FILTER (WHERE m.state = 'active' AND {LIVE}) AS active,
       count(*) FILTER (WHERE m.state = 'archived') AS archived,
       count(*) FILTER (WHERE m.state = 'active' AND m.expires_at > now()) AS expiring,
       min(m.created_at) AS oldest, max(m.created_at) AS newest
FROM memories m WHERE m.workspace = $1
"""
STATS_GROUPS = f"""
SELECT 'scope' AS g, m.scope AS k, count(*) AS n FROM memories m WHERE m.workspace = $1 AND m.state = 'active' AND {LIVE}
GROUP BY m.scope
UNION ALL
(SELECT 'kind', m.kind, count(*) FROM memories m WHERE m.workspace = $1 AND m.state = 'active' AND {LIVE}
 GROUP BY m.kind ORDER BY 3 DESC, 2 LIMIT 20)
UNION ALL
(SELECT 'tag', t, count(*) FROM memories m, unnest(m.tags) AS t WHERE m.workspace = $1 AND m.state = 'active' AND {LIVE}
 GROUP BY t ORDER BY 3 DESC, 2 LIMIT 20)
UNION ALL
SELECT 'model', m.embedding_model, count(*) FROM memories m WHERE m.workspace = $1 GROUP BY m.embedding_model
"""


async def stats(db: Database, workspace: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    head = await db.fetchrow(STATS, workspace)
    assert head is not None
    return dict(head), [dict(r) for r in await db.fetch(STATS_GROUPS, workspace)]
