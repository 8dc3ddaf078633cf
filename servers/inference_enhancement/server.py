"""Wiring of the knowledge-graph server: the reference memory server's nine tools plus retrieval,
prompt enrichment, provenance and as-of-time queries, over store.py, graph.py and common/."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote, unquote

import asyncpg
import numpy as np
from mcp.server.mcpserver import Context, MCPServer

from common import keywords
from common.embeddings import require_dim
from common.errors import Conflict, InvalidInput, NotFound
from common.logging import get_logger
from common.runtime import DELETE, READ, WRITE, Deps, create_server, deps, server_deps, tool_registrar
from common.table_stats import StatsRefresher
from common.timeutil import aware_utc
from common.tool_schema import CursorArg, P, compact_tools
from servers.inference_enhancement import graph, jsonl, store, text
from servers.inference_enhancement.models import (
    Added,
    AddedAll,
    DeletionIn,
    Done,
    Entities,
    Entity,
    EntityIn,
    Exported,
    Fact,
    Graph,
    Imported,
    ObservationsIn,
    Path,
    Prompt,
    Provenance,
    Ranked,
    Ranking,
    Relation,
    RelationIn,
    RelationKey,
    Relations,
)
from servers.inference_enhancement.settings import Settings

log = get_logger(__name__)

NAME = "inference_enhancement"
EMBEDDING_DIM = 384
EVENT = "graph.changed"
SUMMARY_URI = "graph://summary"
MAX_NAME = 500
MAX_TYPE = 200
#: Observations an entity's vector is made from (the model reads about 256 tokens anyway).
EMBED_OBSERVATIONS = 20
#: Entities embedded per batch when refreshing stale vectors.
REFRESH_BATCH = 256
#: Hits of any-word keyword search ranked per table; common words would otherwise rank half the graph.
#: Substring hits fetched per ranked candidate asked for (at least 200): they all rank first, so more
#: than a few pages of them only cost time; paging deeper raises the depth and with it this cap.
SUBSTRING_DEPTH = 4
#: Trigrams of a query looked up in the substring index (its rarest; strpos then checks exactly).
RARE_TRIGRAMS = 3
#: Entities embedded in one pass after which the entity indexes' pending lists are merged.
PENDING_FLUSH_AFTER = 64
#: How often the embedder looks for entities another process left without a current vector.
STALE_SWEEP_S = 30.0
#: How long a search waits for this process's pending vectors (read your own writes by meaning).
SEARCH_WAIT_S = 2.0
#: How long a stopping process keeps embedding its last writes.
SHUTDOWN_DRAIN_S = 5.0
T = TypeVar("T")


Names = Annotated[list[str], P("Entity names.")]
AsOf = Annotated[datetime | None, P("Graph as of this time.")]
Types = Annotated[list[str] | None, P("Only these relation types.")]
Direction = Annotated[Literal["out", "in", "both"], P("Relation direction.")]


async def _no_rows() -> list[Any]:
    return []


def entity_uri(name: str) -> str:
    return f"graph://entities/{quote(name, safe='')}"


# ------------------------------------------------------------------------------------------- checks


def _name(value: str, what: str = "name") -> str:
    if not value.strip():
        raise InvalidInput(f"{what} is empty; give the entity's name. Nothing was written.")
    if len(value) > MAX_NAME:
        raise InvalidInput(f"{what} {value[:40]!r}... has {len(value)} characters; the limit is {MAX_NAME}.")
    return value


def _type(value: str, what: str) -> str:
    if len(value) > MAX_TYPE:
        raise InvalidInput(f"{what} has {len(value)} characters; the limit is {MAX_TYPE}. Nothing was written.")
    return value


def _batch(settings: Settings, items: Sequence[object], what: str) -> None:
    if len(items) > settings.max_batch:
        raise InvalidInput(f"{len(items)} {what} given; at most {settings.max_batch} per call. Split the call.")


def _observation(settings: Settings, value: str, entity: str) -> str:
    if not value.strip():
        raise InvalidInput(f"an observation of {entity!r} is empty; nothing was written.")
    if len(value) > settings.max_observation_chars:
        raise InvalidInput(
            f"an observation of {entity!r} has {len(value)} characters; the limit is "
            f"{settings.max_observation_chars}. Split it. Nothing was written."
        )
    return value


def _check_dim(d: Deps) -> None:
    require_dim(d.embedder, EMBEDDING_DIM, NAME)


def _relation(r: store.Rel) -> Relation:
    return Relation.model_validate({"from": r.from_name, "to": r.to_name, "relationType": r.relation_type})


# ------------------------------------------------------------------------------------------- build


def build(settings: Settings) -> MCPServer[Deps]:
    """The knowledge-graph server; its background work embeds new and changed entities."""

    # Vectors are made in the background: a write returns once its rows are committed, and a search of
    # this process waits (briefly) until its own writes are embedded.
    embed_wakeup = asyncio.Event()
    embed_idle = asyncio.Event()
    embed_idle.set()
    entity_words = keywords.KeywordPlanner("entities", scan_cap=settings.keyword_scan_cap)
    observation_words = keywords.KeywordPlanner("observations", scan_cap=settings.keyword_scan_cap)
    entity_grams = keywords.ElementStats("entities", "grams")
    observation_grams = keywords.ElementStats("observations", "grams")

    def forget_stats() -> None:
        """After an ANALYZE: word and trigram frequencies are read again on the next search."""
        entity_words.forget_stats()
        observation_words.forget_stats()
        entity_grams.forget()
        observation_grams.forget()

    refreshers: dict[str, StatsRefresher] = {}

    @asynccontextmanager
    async def background(d: Deps) -> AsyncIterator[None]:
        refresher = StatsRefresher(d.db, ["entities", "observations", "relations"])
        refresher.on_refresh(forget_stats)
        refreshers["graph"] = refresher
        worker = asyncio.create_task(_embed_worker(d), name="graph-embedder")
        try:
            yield
        finally:
            with contextlib.suppress(TimeoutError):  # vectors of the last writes, if quick
                await asyncio.wait_for(embed_idle.wait(), SHUTDOWN_DRAIN_S)
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            await refresher.close()

    server = create_server(
        NAME,
        settings,
        instructions=(
            "Knowledge graph of entities, relations and observations. search_nodes or enhance_prompt before "
            "answering about known people, projects or facts; create_entities/add_observations to remember."
        ),
        on_start=background,
    )

    # ----------------------------------------------------------------------------------- helpers

    def _source(ctx: Context) -> str:
        if settings.source:
            return settings.source
        try:
            params = ctx.session.client_params
            name = params.client_info.name if params is not None else None
        except Exception:  # no session (in-process tests) or an older handshake
            name = None
        return (name or "mcp")[:100]

    async def _tx(d: Deps, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, transaction: bool = True) -> T:
        """One transaction per call (or one statement, atomic by itself); a deadlock (rare: lock order is
        fixed) is retried, a race with a delete reported."""
        for attempt in range(3):
            try:
                return await (d.db.run_in_transaction(fn) if transaction else d.db.run(fn))
            except asyncpg.DeadlockDetectedError:
                if attempt == 2:
                    raise Conflict("The graph was busy (deadlock); nothing was written. Retry the call.") from None
            except asyncpg.ForeignKeyViolationError:
                raise Conflict(
                    "An entity was deleted by another call at the same moment; nothing was written. Retry the call."
                ) from None
            except asyncpg.CheckViolationError as exc:
                raise InvalidInput(f"A value is out of range ({exc.constraint_name}); nothing was written.") from None
        raise AssertionError("unreachable")

    async def _embed(d: Deps, texts: list[str]) -> list[np.ndarray]:
        _check_dim(d)
        return await d.embedder.embed(texts) if texts else []

    async def _refresh(d: Deps, ids: Sequence[int] | None, *, rounds: int = 1_000) -> int:
        """Re-embed entities whose content changed since their vector was made (all stale ones when ids is None).

        Runs after the write committed; the version guard drops a vector made from text another call
        has changed since, so the last writer's text always wins.
        """
        done = 0
        wanted = list(ids) if ids is not None else None
        for _ in range(rounds):
            rows = await d.db.fetch(store.STALE, wanted, REFRESH_BATCH)
            if not rows:
                break
            first = await d.db.fetch(store.FIRST_OBSERVATIONS, [r["id"] for r in rows], EMBED_OBSERVATIONS)
            obs: dict[int, list[str]] = {}
            for o in first:
                obs.setdefault(o["entity_id"], []).append(o["content"])
            texts = [text.embedding_text(r["name"], r["entity_type"], obs.get(r["id"], [])) for r in rows]
            vectors = await _embed(d, texts)
            model = d.embedder.model_name
            await d.db.execute(
                store.SET_EMBEDDINGS,
                [r["id"] for r in rows],
                [r["version"] for r in rows],
                [store.vector_text(v) for v in vectors],
                model,
            )
            done += len(rows)
            if len(rows) < REFRESH_BATCH:
                break
        return done

    async def _changed(d: Deps, action: str, names: Sequence[str]) -> None:
        """After a write: fresher statistics in time, and the change event (sent after the answer)."""
        if names:
            if "graph" in refreshers:
                refreshers["graph"].wrote(len(names))
            d.background.batcher("graph-changed", functools.partial(_announce, d)).add([(action, list(names))])

    async def _announce(d: Deps, changes: list[tuple[str, list[str]]]) -> None:
        """The domain event for other servers (one per action of a burst of writes), and resource updates
        for every process's subscribed clients (``d.subscriptions`` relays them through the event bus)."""
        by_action: dict[str, set[str]] = {}
        for action, names in changes:
            by_action.setdefault(action, set()).update(names)
        touched: set[str] = set()
        for action, named in by_action.items():
            await d.events.publish(EVENT, {"action": action, "names": sorted(named)[:200]})
            touched.update(named)
        await d.subscriptions.resources_updated([SUMMARY_URI, *(entity_uri(n) for n in sorted(touched))])

    async def _assemble(
        conn: asyncpg.Connection,
        ids: Sequence[int],
        *,
        as_of: datetime | None,
        relations: Literal["from", "touching"],
        names_only: bool = False,
    ) -> tuple[list[Entity], list[store.Rel], int]:
        """Entities ``ids`` (in that order) with observations and their relations, cut to the character budget.

        Returns the entities kept, their relations, and how many of ``ids`` were kept (at least one).
        """
        docs = await conn.fetch(store.ENTITY_DOCS, list(ids), as_of, names_only)
        present = [r["id"] for r in docs]
        sql = store.RELATIONS_FROM if relations == "from" else store.RELATIONS_TOUCHING
        rel_rows = await conn.fetch(sql, present, as_of, 100_000) if present else []
        return _assembled(ids, docs, rel_rows, relations)

    async def _assemble_on_two(
        d: Deps, ids: Sequence[int], *, relations: Literal["from", "touching"]
    ) -> tuple[list[Entity], list[store.Rel], int]:
        """:func:`_assemble` for the present graph, its two statements on two pooled connections at once.

        A search answers a person waiting; the relations of an id that turns out absent come back
        empty (they cascade with the entity), so the second statement need not wait for the first.
        """
        sql = store.RELATIONS_FROM if relations == "from" else store.RELATIONS_TOUCHING
        docs, rel_rows = await asyncio.gather(
            d.db.fetch(store.ENTITY_DOCS, list(ids), None, False),
            d.db.fetch(sql, list(ids), None, 100_000) if ids else _no_rows(),
        )
        return _assembled(ids, docs, rel_rows, relations)

    def _assembled(
        ids: Sequence[int], doc_rows: Sequence[Any], rel_records: Sequence[Any], relations: Literal["from", "touching"]
    ) -> tuple[list[Entity], list[store.Rel], int]:
        docs = {r["id"]: r for r in doc_rows}
        ids = [i for i in ids if i in docs]
        position = {i: n for n, i in enumerate(ids)}
        rel_rows = [rel for rel in store.rels(list(rel_records)) if rel.from_id in position or rel.to_id in position]
        by_entity: dict[int, list[store.Rel]] = {}
        for rel in rel_rows:
            if relations == "from":
                if rel.from_id not in position:
                    continue
                key = rel.from_id
            else:  # a relation between two listed entities belongs to the one listed first
                key = min((x for x in (rel.from_id, rel.to_id) if x in position), key=position.__getitem__)
            by_entity.setdefault(key, []).append(rel)
        kept: list[Entity] = []
        kept_rels: list[store.Rel] = []
        used = 0
        for i in ids:
            r = docs[i]
            entity = Entity(name=r["name"], entityType=r["entity_type"], observations=list(r["observations"]))
            mine = by_entity.get(i, [])
            cost = len(entity.model_dump_json()) + sum(
                60 + len(x.from_name) + len(x.to_name) + len(x.relation_type) for x in mine
            )
            if kept and used + cost > settings.result_char_budget:
                break
            used += cost
            kept.append(entity)
            kept_rels.extend(mine)
        kept_rels.sort(key=lambda x: x.id)
        return kept, kept_rels, len(kept)

    async def _search(d: Deps, query: str, depth: int) -> list[text.Fused]:
        """Hybrid ranking: substring hits (what the reference finds), then keyword and vector lists fused.

        The substring and keyword lists need no vector, so they run while the query is embedded.
        """
        if not query.strip():
            raise InvalidInput("query is empty; say what to look for.")
        if len(query) > 2_000:
            raise InvalidInput(f"query has {len(query)} characters; the limit is 2000.")
        if not embed_idle.is_set():  # read your own writes: wait for this process's pending vectors
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(embed_idle.wait(), SEARCH_WAIT_S)
        lowered = query.lower()

        async def lexical(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            plans = [await entity_words.plan(conn, query), await observation_words.plan(conn, query)]
            sql, _ = store.lexical_sql(*plans)
            pairs = [v for p in plans if p is not None for v in (p.match, p.rank)]
            grams = text.trigrams(lowered)
            return list(
                await conn.fetch(
                    sql,
                    await entity_grams.rarest(conn, grams, RARE_TRIGRAMS),
                    lowered,
                    max(depth * SUBSTRING_DEPTH, 200),
                    settings.keyword_scan_cap,
                    depth,
                    await observation_grams.rarest(conn, grams, RARE_TRIGRAMS),
                    *pairs,
                )
            )

        # The vector list starts on its own connection as soon as the vector is there, beside the
        # lexical statement if that is still running.
        tasks = [asyncio.create_task(d.db.run(lexical))]
        try:
            _check_dim(d)
            vector = await d.embedder.embed_one(query, beside_work=True)
            tasks.append(asyncio.create_task(d.db.fetch(store.VECTOR_SEARCH, vector, d.embedder.model_name, depth)))
            rows, vec_rows = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            raise
        entity_words.learn_later(d.background, d.db)  # words met for the first time
        sub = [r["id"] for r in rows if r["list"] == "s"]
        kw = [r["id"] for r in rows if r["list"] == "k"]
        vec = [(r["id"], r["score"]) for r in vec_rows]
        return text.fuse(sub, kw, vec, min_similarity=settings.min_similarity)

    def _kick() -> None:
        """New or changed entities need vectors: wake this process's embedder."""
        embed_idle.clear()
        embed_wakeup.set()

    async def _embed_worker(d: Deps) -> None:
        """Embed stale entities until none are left, when woken or every STALE_SWEEP_S (which also picks up
        what another process left behind when it stopped). Two processes may embed the same entity; the
        version guard keeps the result right."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(embed_wakeup.wait(), STALE_SWEEP_S)
            embed_wakeup.clear()
            try:
                embedded = await _refresh(d, None, rounds=1)
                total = embedded
                while embedded >= REFRESH_BATCH:
                    embedded = await _refresh(d, None, rounds=1)
                    total += embedded
                if total >= PENDING_FLUSH_AFTER:
                    # Each vector written is a new row version, so its trigrams and words went to the
                    # GIN indexes' pending lists, which every search then reads in full (up to 1 MB).
                    await d.db.execute(store.FLUSH_ENTITY_PENDING)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next round retries; embedding must never stop the server
                log.warning("graph_embedding_failed", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(1.0)
            finally:
                if not embed_wakeup.is_set():
                    embed_idle.set()

    # ----------------------------------------------------------------------------------- the nine tools

    async def create_entities(entities: Annotated[list[EntityIn], P("New entities.")], ctx: Context) -> Entities:
        """Create entities with observations; returns those that were new."""
        d = await deps(ctx)
        _batch(settings, entities, "entities")
        unique: dict[str, EntityIn] = {}
        for e in entities:
            _name(e.name)
            _type(e.entityType, f"entityType of {e.name!r}")
            e.observations = list(dict.fromkeys(_observation(settings, o, e.name) for o in e.observations))
            unique.setdefault(e.name, e)
        _check_dim(d)
        source = _source(ctx)
        model = d.embedder.model_name

        # The caller's order when the names can be locked first; name order (no deadlock) for big batches.
        order = list(unique) if len(unique) <= store.MAX_KEY_LOCKS else sorted(unique)
        items = [unique[n] for n in order]
        obs_names = [e.name for e in items for _ in e.observations]
        obs = [o for e in items for o in e.observations]

        lcs = [text.entity_lc(e.name, e.entityType) for e in items]
        obs_lcs = [o.lower() for o in obs]
        sep, grams = text.joined_grams([*lcs, *obs_lcs])

        async def write(conn: asyncpg.Connection) -> list[EntityIn]:
            rows = await conn.fetch(
                store.CREATE_ENTITIES,
                store.ENTITY_LOCK_CLASS,
                order if len(order) <= store.MAX_KEY_LOCKS else [],
                order,
                [e.entityType for e in items],
                lcs,
                [None] * len(items),  # vectors follow in the background
                model,
                source,
                obs_names,
                obs,
                obs_lcs,
                grams[: len(lcs)],
                grams[len(lcs) :],
                sep,
            )
            made = {r["name"] for r in rows}
            return [e for e in unique.values() if e.name in made]

        made = await _tx(d, write, transaction=False)
        if made:
            _kick()
        await _changed(d, "created", [e.name for e in made])
        return Entities(
            entities=[Entity(name=e.name, entityType=e.entityType, observations=e.observations) for e in made]
        )

    async def create_relations(
        relations: Annotated[list[RelationIn], P("Active voice; validFrom/To optional.")],
        ctx: Context,
    ) -> Relations:
        """Relate existing entities; returns the new relations."""
        d = await deps(ctx)
        _batch(settings, relations, "relations")
        wanted: dict[tuple[str, str, str], RelationIn] = {}
        for r in relations:
            _name(r.from_, "from")
            _name(r.to, "to")
            if not r.relationType.strip():
                raise InvalidInput("relationType is empty; say how the entities relate. Nothing was written.")
            _type(r.relationType, "relationType")
            r.validFrom, r.validTo = aware_utc(r.validFrom), aware_utc(r.validTo)
            if r.validFrom and r.validTo and r.validFrom >= r.validTo:
                raise InvalidInput(f"validFrom must be before validTo ({r.from_} {r.relationType} {r.to}).")
            wanted[(r.from_, r.to, r.relationType)] = r
        source = _source(ctx)

        async def write(conn: asyncpg.Connection) -> list[tuple[str, str, str]]:
            ids = await store.resolve(conn, [n for k in wanted for n in k[:2]])
            locked = await store.lock_keys(
                conn, store.RELATION_LOCK_CLASS, [f"{ids[k[0]]}:{ids[k[1]]}:{k[2]}" for k in wanted]
            )
            keys = list(wanted) if locked else sorted(wanted, key=lambda k: (ids[k[0]], ids[k[1]], k[2]))
            rows = await conn.fetch(
                store.UPSERT_RELATIONS,
                [ids[k[0]] for k in keys],
                [ids[k[1]] for k in keys],
                [k[2] for k in keys],
                [wanted[k].validFrom for k in keys],
                [wanted[k].validTo for k in keys],
                source,
            )
            names = {v: n for n, v in ids.items()}
            made = {(names[r["from_id"]], names[r["to_id"]], r["relation_type"]) for r in rows if r["created"]}
            return [k for k in wanted if k in made]

        made = await _tx(d, write)
        await _changed(d, "related", [n for k in made for n in k[:2]])
        return Relations(
            relations=[Relation.model_validate({"from": f, "to": t, "relationType": ty}) for f, t, ty in made]
        )

    async def add_observations(
        observations: Annotated[list[ObservationsIn], P("Texts per entity.")], ctx: Context
    ) -> AddedAll:
        """Add observations to existing entities; returns what was new."""
        d = await deps(ctx)
        _batch(settings, observations, "items")
        for o in observations:
            _name(o.entityName, "entityName")
            o.contents = [_observation(settings, c, o.entityName) for c in o.contents]
        source = _source(ctx)

        async def write(conn: asyncpg.Connection) -> tuple[list[Added], list[int]]:
            ids = await store.resolve(conn, [o.entityName for o in observations], lock="update")
            pairs = list(dict.fromkeys((ids[o.entityName], c) for o in observations for c in o.contents))
            inserted = set(
                await store.insert_observations(
                    conn, [p[0] for p in pairs], [p[1] for p in pairs], [p[1].lower() for p in pairs], source
                )
            )
            await store.bump_versions(conn, [i for i, _ in inserted])
            results = []
            for o in observations:
                eid = ids[o.entityName]
                added = []
                for c in dict.fromkeys(o.contents):
                    if (eid, c) in inserted:
                        inserted.discard((eid, c))  # a text repeated in a later item is not new there
                        added.append(c)
                results.append(Added(entityName=o.entityName, addedObservations=added))
            return results, sorted({ids[r.entityName] for r in results if r.addedObservations})

        results, changed = await _tx(d, write)
        if changed:
            _kick()
        await _changed(d, "observed", [r.entityName for r in results if r.addedObservations])
        return AddedAll(results=results)

    async def delete_entities(entityNames: Names, ctx: Context) -> Done:
        """Delete entities and their relations."""
        d = await deps(ctx)
        _batch(settings, entityNames, "names")

        async def write(conn: asyncpg.Connection) -> list[str]:
            return [r["name"] for r in await conn.fetch(store.DELETE_ENTITIES, sorted(set(entityNames)))]

        gone = await _tx(d, write)
        await _changed(d, "deleted", gone)
        return Done(success=True, message="Entities deleted successfully")

    async def delete_observations(deletions: Annotated[list[DeletionIn], P("Texts per entity.")], ctx: Context) -> Done:
        """Delete observations by exact text."""
        d = await deps(ctx)
        _batch(settings, deletions, "items")
        names = [x.entityName for x in deletions for _ in x.observations]
        contents = [c for x in deletions for c in x.observations]

        async def write(conn: asyncpg.Connection) -> tuple[list[int], list[str]]:
            present = await conn.fetch(store.LOCK_ENTITIES, sorted(set(names)))
            if not present:
                return [], []
            rows = await conn.fetch(store.DELETE_OBSERVATIONS, names, contents)
            ids = sorted({r["entity_id"] for r in rows})
            await store.bump_versions(conn, ids)
            return ids, sorted({r["name"] for r in rows})

        ids, changed = await _tx(d, write)
        if ids:
            _kick()
        await _changed(d, "unobserved", changed)
        return Done(success=True, message="Observations deleted successfully")

    async def delete_relations(relations: Annotated[list[RelationKey], P("Relations.")], ctx: Context) -> Done:
        """Delete relations."""
        d = await deps(ctx)
        _batch(settings, relations, "relations")

        async def write(conn: asyncpg.Connection) -> None:
            keys = sorted({(r.from_, r.to, r.relationType) for r in relations})
            await conn.fetch(store.DELETE_RELATIONS, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys])

        await _tx(d, write)
        await _changed(d, "unrelated", [n for r in relations for n in (r.from_, r.to)])
        return Done(success=True, message="Relations deleted successfully")

    async def read_graph(
        ctx: Context,
        limit: Annotated[int, P("Page size.", ge=1, le=1_000)] = 200,
        cursor: CursorArg = None,
        names_only: Annotated[bool, P("Omit observations.")] = False,
        as_of: AsOf = None,
    ) -> Graph:
        """Read the graph a page at a time; follow next_cursor."""
        d = await deps(ctx)
        as_of = aware_utc(as_of)
        after = text.decode_cursor(cursor, "graph", [names_only, str(as_of)])

        async def read(conn: asyncpg.Connection) -> Graph:
            rows = await conn.fetch(store.PAGE_ENTITIES, after, as_of, limit + 1)
            page = rows[:limit]
            entities, rels, kept = await _assemble(
                conn, [r["id"] for r in page], as_of=as_of, relations="from", names_only=names_only
            )
            more = kept < len(page) or len(rows) > limit
            nxt = text.encode_cursor("graph", page[kept - 1]["id"], [names_only, str(as_of)]) if more else None
            return Graph(entities=entities, relations=[_relation(r) for r in rels], next_cursor=nxt)

        return await d.db.run(read)

    async def search_nodes(
        query: Annotated[str, P("Words or a question.")],
        ctx: Context,
        limit: Annotated[int, P("Most entities.", ge=1, le=200)] = 10,
        cursor: CursorArg = None,
    ) -> Graph:
        """Find entities by meaning, keywords and substrings, best first; next_cursor pages on."""
        d = await deps(ctx)
        offset = text.decode_cursor(cursor, "search", query)
        ranked = await _search(d, query, max(settings.search_candidates, offset + limit))
        page = ranked[offset : offset + limit]
        more = len(ranked) > offset + limit

        entities, rels, _ = await _assemble_on_two(d, [f.id for f in page], relations="touching")
        return Graph(
            entities=entities,
            relations=[_relation(r) for r in rels],
            next_cursor=text.encode_cursor("search", offset + limit, query) if more else None,
        )

    async def open_nodes(names: Names, ctx: Context) -> Graph:
        """Read entities by exact name, with their relations."""
        d = await deps(ctx)
        _batch(settings, names, "names")

        rows = await d.db.fetch(store.ENTITIES_BY_NAME, list(dict.fromkeys(names)))
        entities, rels, _ = await _assemble_on_two(d, [r["id"] for r in rows], relations="touching")
        return Graph(entities=entities, relations=[_relation(r) for r in rels])

    # ----------------------------------------------------------------------------------- import / export

    async def import_memory_jsonl(
        ctx: Context,
        path: Annotated[str | None, P("memory.jsonl file to read.")] = None,
        content: Annotated[str | None, P("Or the file's text.")] = None,
    ) -> Imported:
        """Import a reference memory server's memory.jsonl, merging into the graph (all or nothing)."""
        d = await deps(ctx)
        raw = await asyncio.to_thread(_read_source, settings, path, content)
        parsed = jsonl.parse(raw)
        problems: list[str] = []
        for e in parsed.entities:
            try:
                _name(e.name)
                _type(e.entity_type, f"entityType of {e.name!r}")
                kept = [o for o in e.observations if o.strip()]
                if len(kept) < len(e.observations) and len(problems) < 20:
                    problems.append(f"empty observations of {e.name!r} skipped")
                e.observations = [_observation(settings, o, e.name) for o in kept]
            except InvalidInput as exc:
                raise InvalidInput(f"{exc} Nothing was imported.") from None
        entities = parsed.entities
        source = settings.source or f"import:{FsPath(path).name if path else 'content'}"
        _check_dim(d)
        model = d.embedder.model_name

        lcs = [text.entity_lc(e.name, e.entity_type) for e in entities]
        sep, grams = text.joined_grams(lcs)

        async def write(conn: asyncpg.Connection) -> tuple[Imported, list[int]]:
            names = [e.name for e in entities]
            made = {
                r["name"]: r["id"]
                for r in await conn.fetch(
                    store.INSERT_ENTITIES_BULK,
                    names,
                    [e.entity_type for e in entities],
                    lcs,
                    [None] * len(entities),  # vectors follow in the background
                    model,
                    source,
                    grams,
                    sep,
                )
            }
            all_names = sorted({*names, *(n for rel in parsed.relations for n in rel[:2])})
            ids = {r["name"]: r["id"] for r in await conn.fetch(store.LOCK_ENTITIES, all_names)}
            pairs = [(ids[e.name], o) for e in entities for o in e.observations]
            inserted = await store.insert_observations(
                conn, [p[0] for p in pairs], [p[1] for p in pairs], [p[1].lower() for p in pairs], source
            )
            merged = sorted({eid for eid, _ in inserted} - set(made.values()))
            await store.bump_versions(conn, merged)
            good = [r for r in parsed.relations if r[0] in ids and r[1] in ids]
            for r in parsed.relations:
                if (r[0] not in ids or r[1] not in ids) and len(problems) < 20:
                    missing = r[0] if r[0] not in ids else r[1]
                    problems.append(f"relation {r[0]!r} {r[2]!r} {r[1]!r} skipped: no entity {missing!r}")
            rows = await conn.fetch(
                store.UPSERT_RELATIONS,
                [ids[r[0]] for r in good],
                [ids[r[1]] for r in good],
                [r[2] for r in good],
                [None] * len(good),
                [None] * len(good),
                source,
            )
            result = Imported(
                entities_created=len(made),
                entities_merged=len(merged),
                observations_added=len(inserted),
                relations_created=sum(1 for r in rows if r["created"]),
                relations_skipped=len(parsed.relations) - len(good),
                problems=problems,
            )
            return result, [*made.values(), *merged]

        result, _ = await _tx(d, write)
        if result.entities_created + result.observations_added + result.relations_created >= store.ANALYZE_AFTER:
            await d.db.execute(store.FLUSH_PENDING)
            await d.db.execute(store.ANALYZE)
            forget_stats()
        embed_wakeup.set()  # no read-your-writes wait: a big import is embedded over minutes
        await _changed(d, "imported", [e.name for e in entities][:200])
        log.info("graph_imported", **result.model_dump(exclude={"problems"}))
        return result

    async def export_memory_jsonl(
        ctx: Context,
        path: Annotated[str | None, P("File to write; omitted: return the text.")] = None,
    ) -> Exported:
        """Export the graph in the reference server's memory.jsonl format (to a file or inline if small)."""
        d = await deps(ctx)

        async def read(conn: asyncpg.Connection) -> tuple[list[str], int, int]:
            lines: list[str] = []
            size = 0
            after = 0
            n_entities = 0
            while True:
                rows = await conn.fetch(store.EXPORT_ENTITIES, after, 2_000)
                if not rows:
                    break
                obs = await store.observations_of(conn, [r["id"] for r in rows])
                for r in rows:
                    line = jsonl.entity_line(r["name"], r["entity_type"], obs[r["id"]])
                    lines.append(line)
                    size += len(line) + 1
                n_entities += len(rows)
                after = rows[-1]["id"]
                if path is None and size > settings.export_inline_max_chars:
                    raise InvalidInput(
                        f"The graph is over {settings.export_inline_max_chars} characters as JSONL; pass path "
                        "to write it to a file."
                    )
            after = 0
            n_rel = 0
            while True:
                rrows = await conn.fetch(store.EXPORT_RELATIONS, after, 10_000)
                if not rrows:
                    break
                for r in rrows:
                    lines.append(jsonl.relation_line(r["from_name"], r["to_name"], r["relation_type"]))
                    size += len(lines[-1]) + 1
                n_rel += len(rrows)
                after = rrows[-1]["id"]
            if path is None and size > settings.export_inline_max_chars:
                raise InvalidInput(f"The graph is {size} characters as JSONL; pass path to write it to a file.")
            return lines, n_entities, n_rel

        # One snapshot: entities and relations of the same moment, even while others write.
        async def snapshot(conn: asyncpg.Connection) -> tuple[list[str], int, int]:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                return await read(conn)

        lines, n_entities, n_rel = await d.db.run(snapshot)
        data = jsonl.join(lines)
        if path is None:
            return Exported(entities=n_entities, relations=n_rel, path=None, content=data)
        written = await asyncio.to_thread(_write_atomic, FsPath(path), data)
        return Exported(entities=n_entities, relations=n_rel, path=str(written), content=None)

    # ----------------------------------------------------------------------------------- retrieval

    def _stepper(conn: asyncpg.Connection, as_of: datetime | None, types: list[str] | None) -> graph.Step:
        async def step_fn(frontier: Sequence[int], limit: int, direction: str) -> list[store.Rel]:
            return await store.step(conn, frontier, as_of=as_of, limit=limit, direction=direction, types=types)

        return step_fn

    async def _start(conn: asyncpg.Connection, name: str, as_of: datetime | None, what: str) -> int:
        row = await conn.fetchrow(store.ENTITY_AT, name, as_of)
        if row is None:
            when = f" at {as_of.isoformat()}" if as_of else ""
            raise NotFound(f"No entity named {name!r}{when} ({what}). Use search_nodes to find the exact name.")
        return int(row["id"])

    async def get_neighbors(
        name: Annotated[str, P("Start entity.")],
        ctx: Context,
        depth: Annotated[int, P("Hops, 1-3.", ge=1, le=3)] = 1,
        relation_types: Types = None,
        direction: Direction = "both",
        as_of: AsOf = None,
        limit: Annotated[int, P("Page size.", ge=1, le=500)] = 50,
        cursor: CursorArg = None,
    ) -> Graph:
        """Entities within 1-3 hops of one entity, nearest first."""
        d = await deps(ctx)
        as_of = aware_utc(as_of)
        key = [name, depth, relation_types, direction, str(as_of)]
        offset = text.decode_cursor(cursor, "nb", key)

        async def read(conn: asyncpg.Connection) -> Graph:
            start = await _start(conn, name, as_of, "name")
            walk = await graph.neighbourhood(
                start,
                depth,
                _stepper(conn, as_of, relation_types),
                direction=direction,
                max_visited=settings.max_visited,
            )
            order = sorted(walk.depth, key=lambda i: (walk.depth[i], i))
            page_ids = order[offset : offset + limit]
            entities, _, kept = await _assemble(conn, page_ids, as_of=as_of, relations="from")
            in_page = set(page_ids[:kept])
            rels = [r for r in walk.relations.values() if r.from_id in in_page or r.to_id in in_page]
            more = offset + kept < len(order)
            return Graph(
                entities=entities,
                relations=[_relation(r) for r in sorted(rels, key=lambda r: r.id)],
                next_cursor=text.encode_cursor("nb", offset + kept, key) if more else None,
            )

        return await d.db.run(read)

    async def find_path(
        source: Annotated[str, P("From entity.")],
        target: Annotated[str, P("To entity.")],
        ctx: Context,
        max_depth: Annotated[int, P("Most hops, 1-6.", ge=1, le=6)] = 4,
        relation_types: Types = None,
        direction: Direction = "both",
        as_of: AsOf = None,
    ) -> Path:
        """Shortest chain of relations between two entities."""
        d = await deps(ctx)
        as_of = aware_utc(as_of)

        async def read(conn: asyncpg.Connection) -> Path:
            a = await _start(conn, source, as_of, "source")
            b = await _start(conn, target, as_of, "target")
            res = await graph.shortest_path(
                a,
                b,
                max_depth,
                _stepper(conn, as_of, relation_types),
                direction=direction,
                max_visited=settings.max_visited,
            )
            names = {r["id"]: r["name"] for r in await conn.fetch(store.ENTITIES_BY_ID, res.nodes)}
            return Path(
                found=res.found,
                names=[names[i] for i in res.nodes],
                relations=[_relation(r) for r in res.relations],
                visited=res.visited,
            )

        return await d.db.run(read)

    async def get_relevant_subgraph(
        query: Annotated[str, P("What the subgraph should be about.")],
        ctx: Context,
        seeds: Annotated[int, P("Best search hits to start from.", ge=1, le=20)] = 5,
        depth: Annotated[int, P("Hops to expand, 0-2.", ge=0, le=2)] = 1,
        limit: Annotated[int, P("Most entities.", ge=1, le=200)] = 30,
    ) -> Graph:
        """The part of the graph most relevant to a query: best hybrid-search hits expanded by their relations."""
        d = await deps(ctx)
        ranked = await _search(d, query, settings.search_candidates)
        start = [f.id for f in ranked[:seeds]]

        async def read(conn: asyncpg.Connection) -> Graph:
            order: dict[int, int] = {i: 0 for i in start}
            frontier = list(start)
            for level in range(1, depth + 1):
                if not frontier or len(order) >= limit:
                    break
                found = await store.step(conn, frontier, as_of=None, limit=limit * 20, direction="both", types=None)
                nxt = []
                for rel in found:
                    for node in (rel.from_id, rel.to_id):
                        if node not in order and len(order) < limit:
                            order[node] = level
                            nxt.append(node)
                frontier = nxt
            entities, rels, _ = await _assemble(conn, list(order), as_of=None, relations="touching")
            kept = {e.name for e in entities}
            inside = [r for r in rels if r.from_name in kept and r.to_name in kept]
            return Graph(entities=entities, relations=[_relation(r) for r in inside])

        return await d.db.run(read)

    async def enhance_prompt(
        query: Annotated[str, P("The request.")],
        ctx: Context,
        max_tokens: Annotated[int, P("Token budget.", ge=50, le=8_000)] = 800,
    ) -> Prompt:
        """Facts relevant to a query as a text block within a token budget, citing [entity]."""
        d = await deps(ctx)
        ranked = await _search(d, query, settings.search_candidates)
        top = [f.id for f in ranked[:10]]
        tsq = text.keyword_query(query) or ""

        async def read(conn: asyncpg.Connection) -> tuple[list[asyncpg.Record], dict[int, list[str]], list[store.Rel]]:
            by_id = {r["id"]: r for r in await conn.fetch(store.ENTITIES_BY_ID, top)}
            rows = [by_id[i] for i in top if i in by_id]
            obs: dict[int, list[str]] = {i: [] for i in top}
            for r in await conn.fetch(store.RANKED_OBSERVATIONS, top, tsq):
                obs[r["entity_id"]].append(r["content"])
            rels = store.rels(await conn.fetch(store.RELATIONS_TOUCHING, top, None, 200))
            return rows, obs, rels

        rows, obs, rels = await d.db.run(read)
        header = f"Known facts (knowledge graph) for: {query[:200]}"
        lines = [header]
        used = text.estimate_tokens(header) + 1
        cited: list[str] = []
        for r in rows:
            own = [x for x in rels if r["id"] in (x.from_id, x.to_id)]
            candidates = [f"[{r['name']}] ({r['entity_type']})" + (f": {obs[r['id']][0]}" if obs[r["id"]] else "")]
            candidates += [f"[{r['name']}] {o}" for o in obs[r["id"]][1:]]
            candidates += [f"[{x.from_name}] {x.relation_type} [{x.to_name}]" for x in own]
            for i, line in enumerate(candidates):
                cost = text.estimate_tokens(line) + 1
                if used + cost > max_tokens:
                    if i == 0:
                        break
                    continue
                if line not in lines:
                    lines.append(line)
                    used += cost
                    if i == 0:
                        cited.append(r["name"])
        if not cited:
            return Prompt(text="", entities=[], tokens=0)
        block = "\n".join(lines)
        return Prompt(text=block, entities=cited, tokens=text.estimate_tokens(block))

    async def rank_passages(
        query: Annotated[str, P("What the passages should answer.")],
        passages: Annotated[list[str], P("Candidate texts.", min_length=1, max_length=200)],
        ctx: Context,
        limit: Annotated[int, P("Most passages returned.", ge=1, le=200)] = 20,
    ) -> Ranking:
        """Order candidate passages by semantic relevance to a query (embeddings, no LLM); scores are cosine."""
        d = await deps(ctx)
        if not query.strip():
            raise InvalidInput("query is empty; say what the passages should answer.")
        if any(len(p) > settings.max_observation_chars for p in passages):
            raise InvalidInput(f"each passage may have at most {settings.max_observation_chars} characters.")
        vectors = await _embed(d, [query, *passages])
        q = vectors[0]
        scores = [float(np.dot(q, v)) for v in vectors[1:]]
        order = sorted(range(len(passages)), key=lambda i: (-scores[i], i))[:limit]
        return Ranking(ranked=[Ranked(index=i, score=round(scores[i], 4)) for i in order])

    async def get_provenance(
        name: Annotated[str, P("Entity name.")],
        ctx: Context,
        limit: Annotated[int, P("Most observations and relations each.", ge=1, le=500)] = 100,
        cursor: CursorArg = None,
    ) -> Provenance:
        """When and by which source an entity, its observations and its relations were written, with validity."""
        d = await deps(ctx)
        offset = text.decode_cursor(cursor, "prov", name)

        async def read(conn: asyncpg.Connection) -> Provenance:
            e = await conn.fetchrow(store.PROVENANCE_ENTITY, name)
            if e is None:
                raise NotFound(f"No entity named {name!r}. Use search_nodes to find the exact name.")
            obs = await conn.fetch(store.PROVENANCE_OBSERVATIONS, e["id"], offset, limit + 1)
            rels = await conn.fetch(store.PROVENANCE_RELATIONS, e["id"], offset, limit + 1)
            more = len(obs) > limit or len(rels) > limit
            return Provenance(
                name=e["name"],
                entityType=e["entity_type"],
                source=e["source"],
                created_at=e["created_at"],
                updated_at=e["updated_at"],
                observations=[
                    Fact(text=o["content"], source=o["source"], created_at=o["created_at"]) for o in obs[:limit]
                ],
                relations=[
                    Fact(
                        text=f"{r['from_name']} {r['relation_type']} {r['to_name']}",
                        source=r["source"],
                        created_at=r["created_at"],
                        valid_from=r["valid_from"],
                        valid_to=r["valid_to"],
                    )
                    for r in rels[:limit]
                ],
                next_cursor=text.encode_cursor("prov", offset + limit, name) if more else None,
            )

        return await d.db.run(read)

    # ----------------------------------------------------------------------------------- registration

    reg = tool_registrar(server, settings)

    reg(create_entities, "Create entities", WRITE)
    reg(create_relations, "Create relations", WRITE)
    reg(add_observations, "Add observations", WRITE)
    reg(delete_entities, "Delete entities", DELETE)
    reg(delete_observations, "Delete observations", DELETE)
    reg(delete_relations, "Delete relations", DELETE)
    reg(read_graph, "Read graph", READ)
    reg(search_nodes, "Search nodes", READ)
    reg(open_nodes, "Open nodes", READ)
    reg(import_memory_jsonl, "Import memory.jsonl", WRITE)
    reg(export_memory_jsonl, "Export memory.jsonl", WRITE)
    reg(get_neighbors, "Neighbours", READ)
    reg(find_path, "Shortest path", READ)
    reg(get_relevant_subgraph, "Relevant subgraph", READ)
    reg(enhance_prompt, "Enhance prompt", READ)
    reg(rank_passages, "Rank passages", READ)
    reg(get_provenance, "Provenance", READ)
    compact_tools(server, lean=True)

    # ----------------------------------------------------------------------------------- resources

    @server.resource(SUMMARY_URI, name="graph-summary", mime_type="application/json")
    async def summary_resource() -> str:
        """Counts, the most common entity and relation types, and the last change."""
        d = await server_deps(server)

        async def read(conn: asyncpg.Connection) -> dict[str, Any]:
            s = await conn.fetchrow(store.SUMMARY)
            assert s is not None
            return {
                "entities": s["entities"],
                "observations": s["observations"],
                "relations": s["relations"],
                "updated_at": s["updated_at"].isoformat() if s["updated_at"] else None,
                "entity_types": {r["entity_type"]: r["n"] for r in await conn.fetch(store.TOP_TYPES)},
                "relation_types": {r["relation_type"]: r["n"] for r in await conn.fetch(store.TOP_RELATION_TYPES)},
            }

        return json.dumps(await d.db.run(read))

    @server.resource("graph://entities/{name}", name="entity", mime_type="application/json")
    async def entity_resource(name: str, ctx: Context) -> str:
        """One entity with its observations and relations (the same shape as open_nodes)."""
        d = await deps(ctx)
        real = unquote(name)

        async def read(conn: asyncpg.Connection) -> Graph:
            rows = await conn.fetch(store.ENTITIES_BY_NAME, [real])
            if not rows:
                raise NotFound(f"No entity named {real!r}.")
            entities, rels, _ = await _assemble(conn, [rows[0]["id"]], as_of=None, relations="touching")
            return Graph(entities=entities, relations=[_relation(r) for r in rels])

        result = await d.db.run(read)
        return result.model_dump_json(by_alias=True, exclude={"next_cursor"})

    return server


# ------------------------------------------------------------------------------------------- files


def _read_source(settings: Settings, path: str | None, content: str | None) -> str:
    if (path is None) == (content is None):
        raise InvalidInput("give exactly one of path (a memory.jsonl file) or content (its text).")
    if content is not None:
        return content
    assert path is not None
    file = FsPath(path).expanduser()
    if not file.is_file():
        raise NotFound(f"No file at {str(file)!r}; give the path of the reference server's memory.jsonl.")
    size = file.stat().st_size
    if size > settings.import_max_bytes:
        raise InvalidInput(
            f"{file} is {size} bytes; the limit is {settings.import_max_bytes} (INFERENCE_ENHANCEMENT_IMPORT_MAX_BYTES)."
        )
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{file} is not UTF-8 text; nothing was imported.") from None


def _write_atomic(path: FsPath, data: str) -> FsPath:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    target = path.expanduser().resolve()
    if not target.parent.is_dir():
        raise NotFound(f"Folder {str(target.parent)!r} does not exist; create it or choose another path.")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        FsPath(tmp).unlink(missing_ok=True)
        raise
    return target
