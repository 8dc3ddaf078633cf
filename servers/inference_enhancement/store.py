"""Every SQL statement on schema ``inference_enhancement``: plain async functions on a connection.

Writes lock rows in name order (entities) or key order (relations) so concurrent calls from several
processes wait for each other instead of deadlocking, and use ``ON CONFLICT`` so racing inserts of
the same entity, observation or relation keep exactly one copy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import numpy as np

from common.errors import NotFound
from common.keywords import KeywordPlan
from servers.inference_enhancement import text


class Queries(Protocol):
    """A pooled :class:`common.db.Database` or one ``asyncpg.Connection``: both run a statement."""

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None: ...

    async def execute(self, query: str, *args: Any) -> str: ...


#: A row is "as of" time t when it was written by then (NULL means no time filter).
_ENTITY_AT = "($2::timestamptz IS NULL OR e.created_at <= $2)"

LOCK_ENTITIES = """
SELECT id, name FROM inference_enhancement.entities WHERE name = ANY($1::text[]) ORDER BY name FOR UPDATE
"""
SHARE_ENTITIES = """
SELECT id, name FROM inference_enhancement.entities WHERE name = ANY($1::text[]) ORDER BY name FOR KEY SHARE
"""

#: Transaction-level advisory locks on keys (entity names, relation keys), taken in one fixed order, so
#: a call can then insert in the caller's order (the order the reference keeps) without deadlocking with
#: another call inserting the same keys in another order. Class ids keep these apart from other locks.
ENTITY_LOCK_CLASS = 7_401
RELATION_LOCK_CLASS = 7_402
#: One advisory key guarding dangling relation ends: a call storing a relation to an absent entity holds it
#: exclusively, a call creating entities holds it shared, so the creator's attach step (a later statement)
#: always sees the dangling relation, or the relation's writer sees the new entity.
DANGLING_LOCK_CLASS = 7_403
#: Session-level advisory lock per mirrored file (MEMORY_FILE_PATH): one process at a time reads,
#: imports or rewrites it.
MIRROR_LOCK_CLASS = 7_404
#: Above this many keys a call inserts in sorted order instead (the lock table is small and shared).
MAX_KEY_LOCKS = 100
KEY_LOCKS = """
SELECT count(pg_advisory_xact_lock($1::int, k))
FROM (SELECT DISTINCT hashtext(x) AS k FROM unnest($2::text[]) AS x ORDER BY 1) AS keys
"""

#: create_entities in one round trip, atomic without BEGIN/COMMIT (the function of migration 0006): lock the
#: names, insert the entities in the caller's order and the observations of those created, then link the
#: dangling relations they complete.
CREATE_ENTITIES = """
SELECT n AS name
FROM inference_enhancement.create_entities(
    $1::int, $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7, $8, $9::text[], $10::text[],
    $11::text[], $12::text[], $13::text[], $14, $15::int
) AS n
"""

#: Entities with their vectors in one statement (embedding before inserting spares every row a second
#: version, and with it a second round of index entries). Rows keep the file's order ($7 ordinals).
INSERT_ENTITIES_BULK = """
INSERT INTO inference_enhancement.entities (name, entity_type, lc, grams, embedding, embedding_model, embedded_version, source)
SELECT n, t, l, string_to_array(g, $8), v::vector, CASE WHEN v IS NULL THEN NULL ELSE $5 END,
       CASE WHEN v IS NULL THEN 0 ELSE 1 END, $6
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $7::text[]) WITH ORDINALITY AS u(n, t, l, v, g, ord)
ORDER BY ord
ON CONFLICT (name) DO NOTHING
RETURNING id, name
"""

INSERT_OBSERVATIONS = """
INSERT INTO inference_enhancement.observations (entity_id, content, lc, grams, source)
SELECT e, c, l, string_to_array(g, $6), $4
FROM unnest($1::bigint[], $2::text[], $3::text[], $5::text[]) WITH ORDINALITY AS u(e, c, l, g, ord)
ORDER BY ord
ON CONFLICT (entity_id, md5(content)) DO NOTHING
RETURNING entity_id, content
"""

BUMP_VERSIONS = """
UPDATE inference_enhancement.entities SET version = version + 1, updated_at = now() WHERE id = ANY($1::bigint[])
"""

#: A relation is its (from name, to name, type); an id is NULL while no entity has that name (dangling).
UPSERT_RELATIONS = """
INSERT INTO inference_enhancement.relations AS r (from_id, to_id, from_name, to_name, relation_type, valid_from, valid_to, source)
SELECT f, t, fn, tn, ty, vf, vt, $8
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[])
     WITH ORDINALITY AS u(f, t, fn, tn, ty, vf, vt, ord)
ORDER BY ord
ON CONFLICT (from_name, to_name, relation_type) DO UPDATE
    SET valid_from = COALESCE(EXCLUDED.valid_from, r.valid_from), valid_to = COALESCE(EXCLUDED.valid_to, r.valid_to)
    WHERE EXCLUDED.valid_from IS NOT NULL OR EXCLUDED.valid_to IS NOT NULL
RETURNING from_name, to_name, relation_type, (xmax = 0) AS created
"""

#: Dangling ends named like the entities just created now point at them (run after the insert, as its
#: own statement, while the shared dangling lock is held).
ATTACH_RELATIONS = """
UPDATE inference_enhancement.relations r SET
    from_id = COALESCE(r.from_id, (SELECT e.id FROM inference_enhancement.entities e WHERE e.name = r.from_name)),
    to_id = COALESCE(r.to_id, (SELECT e.id FROM inference_enhancement.entities e WHERE e.name = r.to_name))
WHERE (r.from_id IS NULL AND r.from_name = ANY($1::text[])) OR (r.to_id IS NULL AND r.to_name = ANY($1::text[]))
"""

#: Deleting by name also deletes the relations naming it, dangling ones included (as the reference does);
#: the relations of deleted entities cascade.
DELETE_ENTITIES = """
WITH loose AS (
    DELETE FROM inference_enhancement.relations r
    WHERE (r.from_id IS NULL AND r.from_name = ANY($1::text[])) OR (r.to_id IS NULL AND r.to_name = ANY($1::text[]))
)
DELETE FROM inference_enhancement.entities WHERE name = ANY($1::text[]) RETURNING name
"""

DELETE_OBSERVATIONS = """
DELETE FROM inference_enhancement.observations o
USING inference_enhancement.entities e, unnest($1::text[], $2::text[]) AS d(name, content)
WHERE e.name = d.name AND o.entity_id = e.id AND o.content = d.content
RETURNING o.entity_id, e.name
"""

DELETE_RELATIONS = """
DELETE FROM inference_enhancement.relations r
USING unnest($1::text[], $2::text[], $3::text[]) AS d(f, t, ty)
WHERE r.from_name = d.f AND r.to_name = d.t AND r.relation_type = d.ty
RETURNING r.id
"""

PAGE_ENTITIES = f"""
SELECT e.id, e.name, e.entity_type FROM inference_enhancement.entities e
WHERE e.id > $1 AND {_ENTITY_AT}
ORDER BY e.id LIMIT $3
"""

ENTITIES_BY_NAME = """
SELECT e.id, e.name, e.entity_type FROM inference_enhancement.entities e WHERE e.name = ANY($1::text[]) ORDER BY e.id
"""

ENTITIES_BY_ID = """
SELECT e.id, e.name, e.entity_type FROM inference_enhancement.entities e WHERE e.id = ANY($1::bigint[])
"""

OBSERVATIONS_OF = """
SELECT entity_id, content FROM inference_enhancement.observations
WHERE entity_id = ANY($1::bigint[]) AND ($2::timestamptz IS NULL OR created_at <= $2)
ORDER BY entity_id, id
"""

_RELATION_AT = """($2::timestamptz IS NULL OR (r.created_at <= $2 AND f.created_at <= $2 AND t.created_at <= $2
    AND (r.valid_from IS NULL OR r.valid_from <= $2) AND (r.valid_to IS NULL OR r.valid_to > $2)))"""
#: The same for relations whose ends may be dangling (a missing end is no reason to hide a relation).
_LOOSE_RELATION_AT = """($2::timestamptz IS NULL OR (r.created_at <= $2
    AND (r.from_id IS NULL OR (SELECT f.created_at FROM inference_enhancement.entities f WHERE f.id = r.from_id) <= $2)
    AND (r.to_id IS NULL OR (SELECT t.created_at FROM inference_enhancement.entities t WHERE t.id = r.to_id) <= $2)
    AND (r.valid_from IS NULL OR r.valid_from <= $2) AND (r.valid_to IS NULL OR r.valid_to > $2)))"""
#: A relation row as :class:`Rel` (an absent end's id is 0: identities start at 1).
_REL_COLUMNS = (
    "r.id, COALESCE(r.from_id, 0) AS from_id, COALESCE(r.to_id, 0) AS to_id, r.from_name, r.to_name, r.relation_type"
)

RELATIONS_FROM = f"""
SELECT {_REL_COLUMNS} FROM inference_enhancement.relations r
WHERE r.from_id = ANY($1::bigint[]) AND {_LOOSE_RELATION_AT}
ORDER BY r.id LIMIT $3
"""

#: Relations whose source entity does not exist (read_graph lists them on its last page), by id.
RELATIONS_FROM_NOBODY = f"""
SELECT {_REL_COLUMNS} FROM inference_enhancement.relations r
WHERE r.from_id IS NULL AND {_LOOSE_RELATION_AT}
ORDER BY r.id LIMIT $1
"""

RELATIONS_TOUCHING = f"""
SELECT {_REL_COLUMNS} FROM inference_enhancement.relations r
WHERE (r.from_id = ANY($1::bigint[]) OR r.to_id = ANY($1::bigint[])) AND {_LOOSE_RELATION_AT}
ORDER BY r.id LIMIT $3
"""

#: One breadth-first step: the relations leaving ($4 'out'), entering ('in') or touching ('both') a frontier
#: (between two existing entities: a walk has nowhere to go from a dangling end).
STEP = f"""
SELECT r.id, r.from_id, r.to_id, f.name AS from_name, t.name AS to_name, r.relation_type
FROM inference_enhancement.relations r JOIN inference_enhancement.entities f ON f.id = r.from_id JOIN inference_enhancement.entities t ON t.id = r.to_id
WHERE ((r.from_id = ANY($1::bigint[]) AND $4 <> 'in') OR (r.to_id = ANY($1::bigint[]) AND $4 <> 'out'))
  AND ($5::text[] IS NULL OR r.relation_type = ANY($5::text[]))
  AND {_RELATION_AT}
ORDER BY r.id LIMIT $3
"""

ENTITY_AT = (
    f"SELECT e.id, e.name, e.entity_type FROM inference_enhancement.entities e WHERE e.name = $1 AND {_ENTITY_AT}"
)

#: Entities by id with their observations (as of $2; none when $3), in one round trip.
ENTITY_DOCS = """
SELECT e.id, e.name, e.entity_type,
       CASE WHEN $3 THEN '{}'::text[] ELSE ARRAY(
           SELECT o.content FROM inference_enhancement.observations o
           WHERE o.entity_id = e.id AND ($2::timestamptz IS NULL OR o.created_at <= $2) ORDER BY o.id
       ) END AS observations
FROM inference_enhancement.entities e WHERE e.id = ANY($1::bigint[])
"""


def lexical_sql(entity_plan: KeywordPlan | None, observation_plan: KeywordPlan | None) -> tuple[str, int]:
    """Substring hits ('s', what the reference finds) and full-text hits ('k', by rank) in one statement.

    Neither needs the query's vector, so this runs while the query is embedded. Each table's
    keyword filter comes from its own common.keywords plan (rare words, or all words when every
    word is common) and hands at most ``$4`` rows to ranking; a name or type hit weighs twice an
    observation's. Parameters: $1 trigrams to look up in entities, $2 lower-cased query, $3 substring
    cap, $4 keyword scan cap, $5 depth, $6 trigrams to look up in observations, then match/rank pairs
    for the plans present (the substring part names $4 and $5 too, because PostgreSQL refuses a
    parameter no clause types). The trigram lists are each table's rarest few of the query's (a
    necessary condition; strpos is the exact test). Each side of the substring union stops at the
    cap (observations at twice it, as an entity's observations often match together), because a
    union reads both sides whole before its LIMIT applies.
    Returns the SQL and its parameter count.
    """
    parts = []
    n = 6
    if entity_plan is not None:
        parts.append(
            f"SELECT c.id, ts_rank(c.tsv, {entity_plan.sql(f'${n + 2}')}) * 2 AS rank FROM "
            f"(SELECT id, tsv FROM inference_enhancement.entities WHERE tsv @@ {entity_plan.sql(f'${n + 1}')} LIMIT $4) c"
        )
        n += 2
    if observation_plan is not None:
        parts.append(
            f"SELECT c.entity_id, ts_rank(c.tsv, {observation_plan.sql(f'${n + 2}')}) AS rank FROM "
            f"(SELECT entity_id, tsv FROM inference_enhancement.observations WHERE tsv @@ {observation_plan.sql(f'${n + 1}')} LIMIT $4) c"
        )
        n += 2
    keyword = (
        f"""
UNION ALL (
    SELECT 'k', id, max(rank)::float8 FROM ({" UNION ALL ".join(parts)}) hits
    GROUP BY id ORDER BY max(rank) DESC, id LIMIT $5
)"""
        if parts
        else ""
    )
    sql = f"""
(SELECT 's' AS list, sub.id, 0::float8 AS score FROM (
    (SELECT id FROM inference_enhancement.entities WHERE grams @> $1::text[] AND strpos(lc, $2) > 0 LIMIT $3)
    UNION
    (SELECT entity_id FROM inference_enhancement.observations WHERE grams @> $6::text[] AND strpos(lc, $2) > 0 LIMIT $3 * 2)
    LIMIT $3
) sub WHERE $4::int > 0 AND $5::int > 0){keyword}
"""
    return sql, n


#: Nearest entity vectors ('v', by cosine similarity).
VECTOR_SEARCH = """
SELECT 'v' AS list, id, 1 - (embedding <=> $1) AS score FROM inference_enhancement.entities
WHERE embedding IS NOT NULL AND embedding_model = $2
ORDER BY embedding <=> $1 LIMIT $3
"""

STALE = """
SELECT id, version, name, entity_type FROM inference_enhancement.entities
WHERE embedded_version < version AND ($1::bigint[] IS NULL OR id = ANY($1::bigint[]))
ORDER BY id LIMIT $2
"""

FIRST_OBSERVATIONS = """
SELECT entity_id, content FROM (
    SELECT entity_id, content, id, row_number() OVER (PARTITION BY entity_id ORDER BY id) AS n
    FROM inference_enhancement.observations WHERE entity_id = ANY($1::bigint[])
) o WHERE n <= $2 ORDER BY entity_id, id
"""

#: Vectors of a batch in one statement; a row whose text changed since (another version) keeps waiting.
SET_EMBEDDINGS = """
UPDATE inference_enhancement.entities e SET embedding = u.v::vector, embedding_model = $4, embedded_version = u.ver
FROM unnest($1::bigint[], $2::int[], $3::text[]) AS u(id, ver, v)
WHERE e.id = u.id AND e.version = u.ver
"""

RANKED_OBSERVATIONS = """
SELECT o.entity_id, o.content,
       CASE WHEN $2 = '' THEN 0 ELSE ts_rank(o.tsv, to_tsquery('english', $2)) END AS rank
FROM inference_enhancement.observations o WHERE o.entity_id = ANY($1::bigint[])
ORDER BY o.entity_id, rank DESC, o.id
"""

PROVENANCE_ENTITY = """
SELECT id, name, entity_type, source, created_at, updated_at FROM inference_enhancement.entities WHERE name = $1
"""
PROVENANCE_OBSERVATIONS = """
SELECT content, source, created_at FROM inference_enhancement.observations WHERE entity_id = $1 ORDER BY id OFFSET $2 LIMIT $3
"""
PROVENANCE_RELATIONS = """
SELECT r.from_name, r.to_name, r.relation_type, r.source, r.created_at, r.valid_from, r.valid_to
FROM inference_enhancement.relations r
WHERE r.from_id = $1 OR r.to_id = $1 ORDER BY r.id OFFSET $2 LIMIT $3
"""

SUMMARY = """
SELECT (SELECT count(*) FROM inference_enhancement.entities) AS entities,
       (SELECT count(*) FROM inference_enhancement.observations) AS observations,
       (SELECT count(*) FROM inference_enhancement.relations) AS relations,
       (SELECT max(updated_at) FROM inference_enhancement.entities) AS updated_at
"""
TOP_TYPES = (
    "SELECT entity_type, count(*) AS n FROM inference_enhancement.entities GROUP BY 1 ORDER BY n DESC, 1 LIMIT 20"
)
TOP_RELATION_TYPES = (
    "SELECT relation_type, count(*) AS n FROM inference_enhancement.relations GROUP BY 1 ORDER BY n DESC, 1 LIMIT 20"
)

#: After a bulk import the planner needs fresh statistics (the role owns its tables, so it may ANALYZE).
ANALYZE = "ANALYZE inference_enhancement.entities, inference_enhancement.observations, inference_enhancement.relations"
#: Imports at least this big refresh the statistics.
ANALYZE_AFTER = 1_000

#: Merges the pending entries of the GIN indexes after a bulk import, so searches need not scan them.
FLUSH_PENDING = """
SELECT gin_clean_pending_list(i::regclass) FROM unnest(ARRAY[
    'inference_enhancement.entities_grams_idx', 'inference_enhancement.entities_tsv_idx', 'inference_enhancement.observations_grams_idx', 'inference_enhancement.observations_tsv_idx'
]) AS i
"""

#: The same for the entity indexes alone, after the background embedder rewrote many entity rows.
FLUSH_ENTITY_PENDING = """
SELECT gin_clean_pending_list(i::regclass) FROM unnest(ARRAY['inference_enhancement.entities_grams_idx', 'inference_enhancement.entities_tsv_idx']) AS i
"""

EXPORT_ENTITIES = "SELECT id, name, entity_type FROM inference_enhancement.entities WHERE id > $1 ORDER BY id LIMIT $2"
NO_STATEMENT_TIMEOUT = "SET statement_timeout = 0"
MIRROR_LOCK = "SELECT pg_advisory_lock($1::int, hashtext($2))"
MIRROR_UNLOCK = "SELECT pg_advisory_unlock($1::int, hashtext($2))"
MIRROR_HASH = "SELECT sha256 FROM inference_enhancement.mirror_files WHERE path = $1"
SET_MIRROR_HASH = """
INSERT INTO inference_enhancement.mirror_files (path, sha256) VALUES ($1, $2)
ON CONFLICT (path) DO UPDATE SET sha256 = EXCLUDED.sha256, synced_at = now()
"""
EXPORT_RELATIONS = """
SELECT r.id, r.from_name, r.to_name, r.relation_type
FROM inference_enhancement.relations r
WHERE r.id > $1 ORDER BY r.id LIMIT $2
"""


@dataclass(frozen=True)
class Rel:
    """A relation; ``from_id``/``to_id`` are 0 when no entity has that name (a dangling end)."""

    id: int
    from_id: int
    to_id: int
    from_name: str
    to_name: str
    relation_type: str


def rels(rows: Sequence[asyncpg.Record]) -> list[Rel]:
    return [Rel(**dict(r)) for r in rows]


async def existing(conn: asyncpg.Connection, names: Sequence[str], *, lock: str = "share") -> dict[str, int]:
    """Ids of those of ``names`` that exist, locked against deletion (``share``) or change (``update``)."""
    rows = await conn.fetch(LOCK_ENTITIES if lock == "update" else SHARE_ENTITIES, sorted(set(names)))
    return {r["name"]: r["id"] for r in rows}


async def resolve(conn: asyncpg.Connection, names: Sequence[str], *, lock: str = "share") -> dict[str, int]:
    """Ids of ``names``, locked as :func:`existing` locks them; missing names fail the call."""
    found = await existing(conn, names, lock=lock)
    missing = [n for n in sorted(set(names)) if n not in found]
    if missing:
        raise NotFound(unknown_message(missing))
    return found


def unknown_message(missing: Sequence[str]) -> str:
    """The refusal of a write naming entities that do not exist (each name clipped)."""
    shown = ", ".join(repr(n[:80]) for n in missing[:20])
    more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
    return (
        f"Unknown entities: {shown}{more}. Create them first with create_entities (or check the spelling); "
        "nothing was written."
    )


async def lock_dangling(conn: asyncpg.Connection) -> None:
    """Hold the dangling-ends key exclusively until the transaction ends (see DANGLING_LOCK_CLASS)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1::int, 0)", DANGLING_LOCK_CLASS)


async def attach_relations(conn: Queries, names: Sequence[str]) -> None:
    """Point the dangling ends named ``names`` at the entities of those names (just created)."""
    if names:
        await conn.execute(ATTACH_RELATIONS, list(names))


async def insert_observations(
    conn: asyncpg.Connection, entity_ids: list[int], contents: list[str], lcs: list[str], source: str
) -> list[tuple[int, str]]:
    sep, grams = text.joined_grams(lcs)
    rows = await conn.fetch(INSERT_OBSERVATIONS, entity_ids, contents, lcs, source, grams, sep)
    return [(r["entity_id"], r["content"]) for r in rows]


async def bump_versions(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    if ids:
        await conn.execute(BUMP_VERSIONS, sorted(set(ids)))


async def observations_of(
    conn: asyncpg.Connection, ids: Sequence[int], as_of: datetime | None = None
) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {i: [] for i in ids}
    for r in await conn.fetch(OBSERVATIONS_OF, list(ids), as_of):
        out[r["entity_id"]].append(r["content"])
    return out


async def step(
    conn: asyncpg.Connection,
    frontier: Sequence[int],
    *,
    as_of: datetime | None,
    limit: int,
    direction: str,
    types: list[str] | None,
) -> list[Rel]:
    return rels(await conn.fetch(STEP, list(frontier), as_of, limit, direction, types))


async def lock_keys(conn: asyncpg.Connection, lock_class: int, keys: Sequence[str]) -> bool:
    """Take the advisory locks of ``keys`` in hash order; False (nothing locked) when there are too many."""
    if len(keys) > MAX_KEY_LOCKS:
        return False
    await conn.execute(KEY_LOCKS, lock_class, list(keys))
    return True


def vector_text(vec: np.ndarray | None) -> str | None:
    """pgvector's text form, so a batch of vectors travels as one text[] parameter."""
    if vec is None:
        return None
    return json.dumps(np.asarray(vec, dtype=np.float32).tolist(), separators=(",", ":"))  # C-speed float repr


# ------------------------------------------------------------------------------------------- writes


async def create_entities(
    conn: Queries,
    locked: Sequence[str],
    names: Sequence[str],
    types: Sequence[str],
    lcs: Sequence[str],
    model: str,
    source: str,
    obs_names: Sequence[str],
    obs: Sequence[str],
    obs_lcs: Sequence[str],
    grams: Sequence[str],
    obs_grams: Sequence[str],
    sep: str,
) -> set[str]:
    """Insert entities (in ``names`` order, after locking ``locked``) and their observations; the names created."""
    rows = await conn.fetch(
        CREATE_ENTITIES,
        ENTITY_LOCK_CLASS,
        list(locked),
        list(names),
        list(types),
        list(lcs),
        [None] * len(names),  # vectors follow in the background
        model,
        source,
        list(obs_names),
        list(obs),
        list(obs_lcs),
        list(grams),
        list(obs_grams),
        sep,
        DANGLING_LOCK_CLASS,
    )
    return {r["name"] for r in rows}


async def insert_entities_bulk(
    conn: Queries,
    names: Sequence[str],
    types: Sequence[str],
    lcs: Sequence[str],
    model: str,
    source: str,
    grams: Sequence[str],
    sep: str,
) -> dict[str, int]:
    """Insert entities without vectors (in the given order); the ids of those created, by name."""
    rows = await conn.fetch(
        INSERT_ENTITIES_BULK,
        list(names),
        list(types),
        list(lcs),
        [None] * len(names),  # vectors follow in the background
        model,
        source,
        list(grams),
        sep,
    )
    return {r["name"]: r["id"] for r in rows}


async def lock_entities(conn: Queries, names: Sequence[str]) -> dict[str, int]:
    """Ids of the entities named (locked for update, in name order); absent names are left out."""
    return {r["name"]: r["id"] for r in await conn.fetch(LOCK_ENTITIES, list(names))}


async def upsert_relations(
    conn: Queries,
    ids: dict[str, int],
    keys: Sequence[tuple[str, str, str]],
    valid_from: Sequence[datetime | None],
    valid_to: Sequence[datetime | None],
    source: str,
) -> list[asyncpg.Record]:
    """Insert relations ``(from, to, type)`` in order (or widen their validity); ``ids`` of the existing ends
    (an end missing from it is stored dangling). Rows of from_name, to_name, relation_type, created."""
    return await conn.fetch(
        UPSERT_RELATIONS,
        [ids.get(k[0]) for k in keys],
        [ids.get(k[1]) for k in keys],
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        list(valid_from),
        list(valid_to),
        source,
    )


async def delete_entities(conn: Queries, names: Sequence[str]) -> list[str]:
    """Delete entities (their observations and relations cascade); the names deleted."""
    return [r["name"] for r in await conn.fetch(DELETE_ENTITIES, list(names))]


async def delete_observations(conn: Queries, names: Sequence[str], contents: Sequence[str]) -> list[asyncpg.Record]:
    """Delete observations by (entity name, exact text) pairs; rows of entity_id, name."""
    return await conn.fetch(DELETE_OBSERVATIONS, list(names), list(contents))


async def delete_relations(conn: Queries, froms: Sequence[str], tos: Sequence[str], types: Sequence[str]) -> None:
    """Delete relations by (from name, to name, type)."""
    await conn.fetch(DELETE_RELATIONS, list(froms), list(tos), list(types))


# ------------------------------------------------------------------------------------------- vectors


async def stale(db: Queries, ids: Sequence[int] | None, limit: int) -> list[asyncpg.Record]:
    """Entities whose vector is older than their text (of ``ids``, or any), by id."""
    return await db.fetch(STALE, list(ids) if ids is not None else None, limit)


async def first_observations(db: Queries, ids: Sequence[int], per_entity: int) -> dict[int, list[str]]:
    """The first ``per_entity`` observations of each entity (entities without any are left out)."""
    obs: dict[int, list[str]] = {}
    for o in await db.fetch(FIRST_OBSERVATIONS, list(ids), per_entity):
        obs.setdefault(o["entity_id"], []).append(o["content"])
    return obs


async def set_embeddings(
    db: Queries, ids: Sequence[int], versions: Sequence[int], vectors: Sequence[str | None], model: str
) -> None:
    """Store vectors (pgvector text) made from the given versions; a row changed since keeps waiting."""
    await db.execute(SET_EMBEDDINGS, list(ids), list(versions), list(vectors), model)


async def flush_entity_pending(db: Queries) -> None:
    """Merge the entity GIN indexes' pending lists (after many vectors were written)."""
    await db.execute(FLUSH_ENTITY_PENDING)


async def flush_pending(db: Queries) -> None:
    """Merge every GIN index's pending list (after a bulk import)."""
    await db.execute(FLUSH_PENDING)


async def analyze(db: Queries) -> None:
    """Fresh planner statistics of the three tables."""
    await db.execute(ANALYZE)


# ------------------------------------------------------------------------------------------- reads


async def lexical_hits(
    conn: Queries,
    entity_plan: KeywordPlan | None,
    observation_plan: KeywordPlan | None,
    *,
    entity_grams: Sequence[str],
    observation_grams: Sequence[str],
    lowered: str,
    substring_cap: int,
    scan_cap: int,
    depth: int,
) -> list[asyncpg.Record]:
    """Rows of list ('s' substring, 'k' keyword), id, score: the statement of :func:`lexical_sql`."""
    sql, _ = lexical_sql(entity_plan, observation_plan)
    pairs = [v for p in (entity_plan, observation_plan) if p is not None for v in (p.match, p.rank)]
    return list(
        await conn.fetch(
            sql, list(entity_grams), lowered, substring_cap, scan_cap, depth, list(observation_grams), *pairs
        )
    )


async def vector_search(db: Queries, vector: np.ndarray, model: str, limit: int) -> list[asyncpg.Record]:
    """Rows of 'v', id, score: the entities nearest ``vector`` made by ``model``."""
    return await db.fetch(VECTOR_SEARCH, vector, model, limit)


async def entity_docs(
    conn: Queries, ids: Sequence[int], as_of: datetime | None, names_only: bool
) -> list[asyncpg.Record]:
    """Entities by id (any order) with their observations as of a time (none when ``names_only``)."""
    return await conn.fetch(ENTITY_DOCS, list(ids), as_of, names_only)


async def relations_from(conn: Queries, ids: Sequence[int], as_of: datetime | None, limit: int) -> list[Rel]:
    """Relations leaving the entities ``ids`` (as of a time), by id."""
    return rels(await conn.fetch(RELATIONS_FROM, list(ids), as_of, limit))


async def relations_from_nobody(conn: Queries, as_of: datetime | None, limit: int) -> list[Rel]:
    """Relations whose source entity does not exist (as of a time), by id."""
    return rels(await conn.fetch(RELATIONS_FROM_NOBODY, limit, as_of))


async def relations_touching(conn: Queries, ids: Sequence[int], as_of: datetime | None, limit: int) -> list[Rel]:
    """Relations leaving or entering the entities ``ids`` (as of a time), by id."""
    return rels(await conn.fetch(RELATIONS_TOUCHING, list(ids), as_of, limit))


async def page_entities(conn: Queries, after: int, as_of: datetime | None, limit: int) -> list[asyncpg.Record]:
    """Entities with an id above ``after`` (as of a time), by id."""
    return await conn.fetch(PAGE_ENTITIES, after, as_of, limit)


async def entities_by_name(conn: Queries, names: Sequence[str]) -> list[asyncpg.Record]:
    """Entities named ``names``, by id."""
    return await conn.fetch(ENTITIES_BY_NAME, list(names))


async def entities_by_id(conn: Queries, ids: Sequence[int]) -> list[asyncpg.Record]:
    """Entities by id (any order)."""
    return await conn.fetch(ENTITIES_BY_ID, list(ids))


async def entity_at(conn: Queries, name: str, as_of: datetime | None) -> int | None:
    """The id of the entity named ``name`` (as of a time), or None."""
    row = await conn.fetchrow(ENTITY_AT, name, as_of)
    return None if row is None else int(row["id"])


async def ranked_observations(conn: Queries, ids: Sequence[int], tsquery: str) -> list[asyncpg.Record]:
    """Observations of the entities, each entity's best match of ``tsquery`` first."""
    return await conn.fetch(RANKED_OBSERVATIONS, list(ids), tsquery)


async def provenance_entity(conn: Queries, name: str) -> asyncpg.Record | None:
    """The entity's source and times."""
    return await conn.fetchrow(PROVENANCE_ENTITY, name)


async def provenance_observations(conn: Queries, entity_id: int, offset: int, limit: int) -> list[asyncpg.Record]:
    """The entity's observations with source and time, by id."""
    return await conn.fetch(PROVENANCE_OBSERVATIONS, entity_id, offset, limit)


async def provenance_relations(conn: Queries, entity_id: int, offset: int, limit: int) -> list[asyncpg.Record]:
    """The entity's relations with source, time and validity, by id."""
    return await conn.fetch(PROVENANCE_RELATIONS, entity_id, offset, limit)


async def summary(conn: Queries) -> asyncpg.Record:
    """Counts of entities, observations and relations, and the last change."""
    row = await conn.fetchrow(SUMMARY)
    assert row is not None
    return row


async def top_types(conn: Queries) -> dict[str, int]:
    """The most common entity types and their counts."""
    return {r["entity_type"]: r["n"] for r in await conn.fetch(TOP_TYPES)}


async def top_relation_types(conn: Queries) -> dict[str, int]:
    """The most common relation types and their counts."""
    return {r["relation_type"]: r["n"] for r in await conn.fetch(TOP_RELATION_TYPES)}


async def export_entities(conn: Queries, after: int, limit: int) -> list[asyncpg.Record]:
    """Entities with an id above ``after``, by id."""
    return await conn.fetch(EXPORT_ENTITIES, after, limit)


async def export_relations(conn: Queries, after: int, limit: int) -> list[asyncpg.Record]:
    """Relations with an id above ``after`` with their entities' names, by id."""
    return await conn.fetch(EXPORT_RELATIONS, after, limit)


async def wait_without_timeout(conn: asyncpg.Connection) -> None:
    """No statement timeout on this (dedicated) connection: waiting for the mirror lock may take long."""
    await conn.execute(NO_STATEMENT_TIMEOUT)


async def lock_mirror(conn: asyncpg.Connection, path: str) -> None:
    """Wait for the session-level lock of the mirrored file ``path`` (a connection of its own holds it)."""
    await conn.execute(MIRROR_LOCK, MIRROR_LOCK_CLASS, path)


async def unlock_mirror(conn: asyncpg.Connection, path: str) -> None:
    await conn.execute(MIRROR_UNLOCK, MIRROR_LOCK_CLASS, path)


async def mirror_hash(conn: asyncpg.Connection, path: str) -> str | None:
    """The sha256 of ``path``'s content when the graph was last imported from or written to it."""
    value: str | None = await conn.fetchval(MIRROR_HASH, path)
    return value


async def set_mirror_hash(conn: Queries, path: str, sha256: str) -> None:
    await conn.execute(SET_MIRROR_HASH, path, sha256)


# ------------------------------------------------------------------------------------------- store model switch

OTHER_MODEL = """
SELECT id, version, name, entity_type FROM inference_enhancement.entities
WHERE embedding_model IS DISTINCT FROM $1 ORDER BY id LIMIT $2
"""


async def other_model(db: Queries, model: str, limit: int) -> list[asyncpg.Record]:
    """Entities whose vector another model made (or that have none), by id: what a model switch redoes."""
    return await db.fetch(OTHER_MODEL, model, limit)
