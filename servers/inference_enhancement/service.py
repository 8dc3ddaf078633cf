"""The knowledge-graph service: every operation of the graph server, with no MCP in sight.

The reference memory server's nine operations (entities, relations, observations; read, search,
open) plus import/export of its memory.jsonl, neighbourhoods, paths, relevant subgraphs, prompt
enrichment, passage ranking and provenance. Vectors are made in the background: a write returns once
its rows are committed and a :class:`~common.workers.Periodic` embedder is woken; a search never
waits for it (new entities are found by substring and keywords at once, by meaning once embedded).
The reference's MEMORY_FILE_PATH is imported on start and mirrored back after changes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote

import asyncpg
import numpy as np

from common import keywords
from common.concurrency import gather_all
from common.errors import Conflict, InvalidInput, NotFound
from common.logging import get_logger
from common.paging import decode_cursor, encode_cursor, fingerprint
from common.retrieval import check_dimension
from common.rows import model_of
from common.runtime import Deps
from common.safefiles import Roots
from common.table_stats import StatsRefresher
from common.timeutil import aware_utc
from common.workers import Periodic
from servers.inference_enhancement import checks, files, graph, jsonl, mirror, store, text
from servers.inference_enhancement.assemble import facts_block, graph_part, relation
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

if TYPE_CHECKING:
    from common.embeddings import Embedder

log = get_logger(__name__)

NAME = "inference_enhancement"
EMBEDDING_DIM = 384
EVENT = "graph.changed"
SUMMARY_URI = "graph://summary"
#: The reference server's one resource (the whole graph), kept so its clients' reads and subscriptions work.
GRAPH_URI = "memory://knowledge-graph"
#: Observations an entity's vector is made from (the model reads about 256 tokens anyway).
EMBED_OBSERVATIONS = 20
#: Entities embedded per batch when refreshing stale vectors.
REFRESH_BATCH = 256
#: Substring hits fetched per ranked candidate asked for (at least 200): they all rank first, so more
#: than a few pages of them only cost time; paging deeper raises the depth and with it this cap.
SUBSTRING_DEPTH = 4
#: Trigrams of a query looked up in the substring index (its rarest; strpos then checks exactly).
RARE_TRIGRAMS = 3
#: Entities embedded in one pass after which the entity indexes' pending lists are merged.
PENDING_FLUSH_AFTER = 64
#: How often the embedder looks for entities another process left without a current vector.
STALE_SWEEP_S = 30.0
#: How long a stopping process keeps embedding its last writes.
SHUTDOWN_DRAIN_S = 5.0
#: Longest the background embedder yields to this process's searches before its next text.
YIELD_TO_SEARCH_S = 0.5
#: How long a stopping process may take to bring the mirrored memory file up to date.
MIRROR_DRAIN_S = 30.0
#: Relations read with a page of entities (the character budget cuts the page first).
RELATIONS_CAP = 100_000
_REFUSED = "cursor is not a next_cursor of this call with these arguments; repeat the call without it."
T = TypeVar("T")


def entity_uri(name: str) -> str:
    """The resource URI of an entity; clients may subscribe to it."""
    return f"graph://entities/{quote(name, safe='')}"


def _after_id(cursor: str | None, fp: str) -> int:
    """The last entity id of the previous page (keyset cursor), 0 for the first page."""
    after = decode_cursor(cursor or None, fp).after
    if after is None:
        return 0
    if type(after) is not int or after < 0:
        raise InvalidInput(_REFUSED)
    return after


class GraphService:
    """The knowledge graph (see the module docstring); enter :meth:`open` to get a running one."""

    def __init__(self, deps: Deps, settings: Settings) -> None:
        self.deps = deps
        self.settings = settings
        self.roots = Roots(settings.file_roots, setting=files.ROOTS_SETTING)
        self._entity_words = keywords.KeywordPlanner("entities", scan_cap=settings.keyword_scan_cap)
        self._observation_words = keywords.KeywordPlanner("observations", scan_cap=settings.keyword_scan_cap)
        self._entity_grams = keywords.ElementStats("entities", "grams")
        self._observation_grams = keywords.ElementStats("observations", "grams")
        self.stats = StatsRefresher(deps.db, ["entities", "observations", "relations"])
        self.stats.on_refresh(self._forget_stats)
        #: Embeds stale entities when woken by a write, or every STALE_SWEEP_S (which also picks up
        #: what another process left behind when it stopped).
        self.embedder = Periodic("graph-embedder", self._embed_pass, interval_s=STALE_SWEEP_S)
        self._idle = asyncio.Event()  # set while this process has no write waiting for its vector
        self._idle.set()
        self._searching = 0
        self._no_search = asyncio.Event()  # set while no search of this process is running
        self._no_search.set()
        self._wakes = 0
        #: The reference server's memory file (MEMORY_FILE_PATH), imported on start and, unless
        #: INFERENCE_ENHANCEMENT_MIRROR is off, rewritten after changes; None when not configured.
        self.memory_file = (
            mirror.resolve(settings.memory_file_path, settings.data_dir) if settings.memory_file_path else None
        )
        self.mirror_loop = Periodic("graph-mirror", self._mirror_pass, interval_s=3_600)
        self._mirror_db: Any = None  # one connection of its own: it holds the file's session-level lock
        self._mirror_dirty = False
        #: Why the file is left alone (it could not be read or imported); None while all is well.
        self.mirror_broken: str | None = None

    @classmethod
    @asynccontextmanager
    async def open(cls, deps: Deps, settings: Settings) -> AsyncIterator[GraphService]:
        """The running service: its embedder runs until exit, which first embeds the last writes if quick."""
        svc = cls(deps, settings)
        try:
            async with svc.embedder:
                try:
                    if svc.memory_file is not None:
                        svc._mirror_db = await deps.db.open_background("mirror")
                        await svc.sync_memory_file()
                        svc.mirror_loop.start()
                    yield svc
                finally:
                    await svc._close_mirror()
                    await svc.vectors_ready(SHUTDOWN_DRAIN_S)
        finally:
            await svc.stats.close()

    # ----------------------------------------------------------------------------------- the memory file

    async def sync_memory_file(self) -> None:
        """Bring the graph and MEMORY_FILE_PATH together, one process at a time.

        A file that changed since this graph last imported or wrote it (another program edited it, or
        it is new) is merged in first; then, with the mirror on, the graph is written to it in the
        reference server's layout when that differs from what is there. The hash of the file's
        content is recorded either way, so an unchanged file is never imported twice and a deletion
        here is not undone by importing this server's own copy again.
        """
        path = self.memory_file
        if path is None or self.mirror_broken is not None:
            return
        key = str(path)
        max_bytes = self.settings.import_max_bytes

        async def sync(conn: asyncpg.Connection) -> None:
            await store.wait_without_timeout(conn)
            await store.lock_mirror(conn, key)
            try:
                try:
                    data = await asyncio.to_thread(mirror.read, path, max_bytes=max_bytes)
                except InvalidInput as exc:  # no folder, not a regular file, too large: say so, keep serving
                    self.mirror_broken = f"{mirror.SETTING} cannot be used: {str(exc)[:200]}"
                    log.error("memory_file_unusable", path=key[-200:], error=self.mirror_broken)
                    return
                if data is not None and mirror.digest(data) != await store.mirror_hash(conn, key):
                    try:
                        result = await self._import_text(data.decode("utf-8-sig"), f"import:{path.name}")
                    except (InvalidInput, UnicodeDecodeError) as exc:
                        # Rewriting a file that could not be read would lose what is in it.
                        self.mirror_broken = f"{mirror.SETTING} could not be imported: {str(exc)[:200]}"
                        log.error("memory_file_unreadable", path=key[-200:], error=self.mirror_broken)
                        return
                    log.info("memory_file_imported", path=key[-200:], **result.model_dump(exclude={"problems"}))
                    await store.set_mirror_hash(conn, key, mirror.digest(data))
                if not self.settings.mirror:
                    return
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    lines, _, _ = await self._export_lines(conn, None)
                out = jsonl.join(lines).encode("utf-8")
                if out != (data if data is not None else b""):
                    await asyncio.to_thread(mirror.write, path, out, max_bytes=max_bytes)
                await store.set_mirror_hash(conn, key, mirror.digest(out))
            finally:
                await store.unlock_mirror(conn, key)

        await self._mirror_db.run(sync, retry=False)

    async def _mirror_pass(self) -> None:
        """After a burst of changes (``mirror_delay_ms`` long): one rewrite of the memory file."""
        if not self._mirror_dirty:
            return
        await asyncio.sleep(self.settings.mirror_delay_ms / 1000)
        self._mirror_dirty = False
        try:
            await self.sync_memory_file()
        except BaseException:
            self._mirror_dirty = True  # tried again on the next change or at exit
            raise

    def _mirror_changed(self) -> None:
        if self.memory_file is not None and self.settings.mirror:
            self._mirror_dirty = True
            self.mirror_loop.wake()

    async def mirror_idle(self) -> None:
        """Write the memory file now if changes are waiting for the delay (tests, shutdown)."""
        if self._mirror_dirty:
            self._mirror_dirty = False
            await self.sync_memory_file()

    async def _close_mirror(self) -> None:
        """Stop the mirror loop and write the last changes (bounded), then close its connection."""
        await self.mirror_loop.stop()
        if self._mirror_db is None:
            return
        try:
            async with asyncio.timeout(MIRROR_DRAIN_S):
                await self.mirror_idle()
        except Exception as exc:  # a stopping process must stop; the next start writes the file
            log.warning("memory_file_not_written", error=str(exc)[:300] or type(exc).__name__)
        finally:
            await self._mirror_db.close()
            self._mirror_db = None

    # ----------------------------------------------------------------------------------- plumbing

    def _forget_stats(self) -> None:
        """After an ANALYZE: word and trigram frequencies are read again on the next search."""
        self._entity_words.forget_stats()
        self._observation_words.forget_stats()
        self._entity_grams.forget()
        self._observation_grams.forget()

    def _source(self, client: str | None) -> str:
        """The provenance of a write: the configured source, else the client's name."""
        return self.settings.source or (client or "mcp")[:100]

    async def _tx(self, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, transaction: bool = True) -> T:
        """One transaction per call (or one statement, atomic by itself); a deadlock (rare: lock order is
        fixed) is retried, a race with a delete reported."""
        db = self.deps.db
        for attempt in range(3):
            try:
                return await (db.run_in_transaction(fn) if transaction else db.run(fn))
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

    def _check_dim(self) -> None:
        check_dimension(self.deps.embedder, EMBEDDING_DIM, NAME)

    async def _embed(self, texts: list[str]) -> list[np.ndarray]:
        self._check_dim()
        return await self.deps.embedder.embed(texts) if texts else []

    def _wake(self, *, wait: bool = True) -> None:
        """New or changed entities need vectors: wake this process's embedder (and, with ``wait``, have a
        stopping process finish them first: :meth:`vectors_ready`)."""
        self._wakes += 1
        if wait:
            self._idle.clear()
        self.embedder.wake()

    @contextlib.asynccontextmanager
    async def _foreground(self) -> AsyncIterator[None]:
        """A search of this process is running: the background embedder waits for it (briefly)."""
        self._searching += 1
        self._no_search.clear()
        try:
            yield
        finally:
            self._searching -= 1
            if not self._searching:
                self._no_search.set()

    async def _searches_done(self) -> None:
        if not self._no_search.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._no_search.wait(), YIELD_TO_SEARCH_S)

    async def vectors_ready(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until this process's writes are embedded; true if they are."""
        if not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout_s)
        return self._idle.is_set()

    async def _embed_batch(self) -> int:
        """Embed one batch of entities whose content changed since their vector was made; how many.

        The version guard drops a vector made from text another call has changed since, so the last
        writer's text always wins (two processes may embed the same entity).
        """
        db = self.deps.db
        rows = await store.stale(db, None, REFRESH_BATCH)
        if not rows:
            return 0
        ids = [r["id"] for r in rows]
        obs = await store.first_observations(db, ids, EMBED_OBSERVATIONS)
        texts = [text.embedding_text(r["name"], r["entity_type"], obs.get(r["id"], [])) for r in rows]
        self._check_dim()
        vectors: list[np.ndarray] = []
        for t in texts:
            # One text at a time on one thread, after this process's searches: a search's query
            # embedding waits for one text at most, and a core stays free for searches and PostgreSQL.
            await self._searches_done()
            vectors.append(await self.deps.embedder.embed_one(t, beside_work=True))
        await store.set_embeddings(
            db,
            ids,
            [r["version"] for r in rows],
            [store.vector_text(v) for v in vectors],
            self.deps.embedder.model_name,
        )
        return len(rows)

    async def _embed_pass(self) -> None:
        """Embed stale entities until none are left (one pass of :attr:`embedder`)."""
        wakes = self._wakes
        try:
            embedded = await self._embed_batch()
            total = embedded
            while embedded >= REFRESH_BATCH:
                embedded = await self._embed_batch()
                total += embedded
            if total >= PENDING_FLUSH_AFTER:
                # Each vector written is a new row version, so its trigrams and words went to the GIN
                # indexes' pending lists, which every search then reads in full (up to 1 MB).
                await store.flush_entity_pending(self.deps.db)
        finally:
            if self._wakes == wakes:  # no write arrived meanwhile (else the woken loop runs again)
                self._idle.set()

    async def reembed_step(self, embedder: Embedder, limit: int) -> int:
        """One step of a switch of the store's model (``mcp-suite reembed``): re-embed at most ``limit``
        entities not yet embedded by ``embedder``'s model; how many it picked (0: none left)."""
        db = self.deps.db
        rows = await store.other_model(db, embedder.model_name, limit)
        if rows:
            check_dimension(embedder, EMBEDDING_DIM, NAME)
            ids = [r["id"] for r in rows]
            obs = await store.first_observations(db, ids, EMBED_OBSERVATIONS)
            texts = [text.embedding_text(r["name"], r["entity_type"], obs.get(r["id"], [])) for r in rows]
            vectors = await embedder.embed(texts)
            versions = [r["version"] for r in rows]
            await store.set_embeddings(db, ids, versions, [store.vector_text(v) for v in vectors], embedder.model_name)
        return len(rows)

    async def _changed(self, action: str, names: Sequence[str]) -> None:
        """After a write: fresher statistics in time, and the change event (sent after the answer)."""
        if names:
            self.stats.wrote(len(names))
            self.deps.background.batcher("graph-changed", self._announce).add([(action, list(names))])
            self._mirror_changed()

    async def _announce(self, changes: list[tuple[str, list[str]]]) -> None:
        """The domain event for other servers (one per action of a burst of writes), and resource updates
        for every process's subscribed clients (``subscriptions`` relays them through the event bus)."""
        by_action: dict[str, set[str]] = {}
        for action, names in changes:
            by_action.setdefault(action, set()).update(names)
        touched: set[str] = set()
        for action, named in by_action.items():
            await self.deps.events.publish(EVENT, {"action": action, "names": sorted(named)[:200]})
            touched.update(named)
        await self.deps.subscriptions.resources_updated(
            [SUMMARY_URI, GRAPH_URI, *(entity_uri(n) for n in sorted(touched))]
        )

    async def _assemble(
        self,
        conn: asyncpg.Connection,
        ids: Sequence[int],
        *,
        as_of: datetime | None,
        relations: Literal["from", "touching"],
        names_only: bool = False,
    ) -> tuple[list[Entity], list[store.Rel], int]:
        """Entities ``ids`` (in that order) with observations and relations, cut to the character budget."""
        docs = await store.entity_docs(conn, ids, as_of, names_only)
        present = [r["id"] for r in docs]
        rels: list[store.Rel] = []
        if present:
            read = store.relations_from if relations == "from" else store.relations_touching
            rels = await read(conn, present, as_of, RELATIONS_CAP)
        return graph_part(ids, docs, rels, relations, self.settings.result_char_budget)

    async def _assemble_on_two(self, ids: Sequence[int]) -> tuple[list[Entity], list[store.Rel], int]:
        """:meth:`_assemble` of the present graph with relations touching, its two statements on two pooled
        connections at once.

        A search answers a person waiting; the relations of an id that turns out absent come back
        empty (they cascade with the entity), so the second statement need not wait for the first.
        """
        db = self.deps.db
        if not ids:
            return graph_part(
                ids, await store.entity_docs(db, ids, None, False), [], "touching", self.settings.result_char_budget
            )
        docs, rels = await gather_all(
            store.entity_docs(db, ids, None, False), store.relations_touching(db, ids, None, RELATIONS_CAP)
        )
        return graph_part(ids, docs, rels, "touching", self.settings.result_char_budget)

    async def _search(self, query: str, depth: int) -> list[text.Fused]:
        """Hybrid ranking: substring hits (what the reference finds), then keyword and vector lists fused.

        The substring and keyword lists need no vector, so they run while the query is embedded.
        """
        if not query.strip():
            raise InvalidInput("query is empty; say what to look for.")
        if len(query) > 2_000:
            raise InvalidInput(f"query has {len(query)} characters; the limit is 2000.")
        async with self._foreground():
            return await self._ranked(query, depth)

    async def _ranked(self, query: str, depth: int) -> list[text.Fused]:
        d = self.deps
        lowered = query.lower()

        async def lexical(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            grams = text.trigrams(lowered)
            return await store.lexical_hits(
                conn,
                await self._entity_words.plan(conn, query),
                await self._observation_words.plan(conn, query),
                entity_grams=await self._entity_grams.rarest(conn, grams, RARE_TRIGRAMS),
                lowered=lowered,
                substring_cap=max(depth * SUBSTRING_DEPTH, 200),
                scan_cap=self.settings.keyword_scan_cap,
                depth=depth,
                observation_grams=await self._observation_grams.rarest(conn, grams, RARE_TRIGRAMS),
            )

        async def nearest() -> list[asyncpg.Record]:
            vector = await d.embedder.embed_one(query, beside_work=True)
            return await store.vector_search(d.db, vector, d.embedder.model_name, depth)

        # The vector list starts on its own connection as soon as the vector is there, beside the
        # lexical statement if that is still running.
        self._check_dim()
        rows, vec_rows = await gather_all(d.db.run(lexical), nearest())
        self._entity_words.learn_later(d.background, d.db)  # words met for the first time
        sub = [r["id"] for r in rows if r["list"] == "s"]
        kw = [r["id"] for r in rows if r["list"] == "k"]
        vec = [(r["id"], r["score"]) for r in vec_rows]
        return text.fuse(sub, kw, vec, min_similarity=self.settings.min_similarity)

    # ----------------------------------------------------------------------------------- the nine operations

    async def create_entities(self, entities: list[EntityIn], *, client: str | None = None) -> Entities:
        """Create entities with observations; those that were new (a name that exists is left alone)."""
        settings = self.settings
        checks.batch(settings, entities, "entities")
        unique: dict[str, EntityIn] = {}
        for e in entities:
            checks.name(e.name)
            checks.type_(e.entityType, f"entityType of {e.name!r}")
            e.observations = list(dict.fromkeys(checks.observation(settings, o, e.name) for o in e.observations))
            unique.setdefault(e.name, e)
        self._check_dim()
        source = self._source(client)
        model = self.deps.embedder.model_name

        # The caller's order when the names can be locked first; name order (no deadlock) for big batches.
        order = list(unique) if len(unique) <= store.MAX_KEY_LOCKS else sorted(unique)
        items = [unique[n] for n in order]
        obs_names = [e.name for e in items for _ in e.observations]
        obs = [o for e in items for o in e.observations]
        lcs = [text.entity_lc(e.name, e.entityType) for e in items]
        obs_lcs = [o.lower() for o in obs]
        sep, grams = text.joined_grams([*lcs, *obs_lcs])

        async def write(conn: asyncpg.Connection) -> list[EntityIn]:
            made = await store.create_entities(
                conn,
                order if len(order) <= store.MAX_KEY_LOCKS else [],
                order,
                [e.entityType for e in items],
                lcs,
                model,
                source,
                obs_names,
                obs,
                obs_lcs,
                grams[: len(lcs)],
                grams[len(lcs) :],
                sep,
            )
            return [e for e in unique.values() if e.name in made]

        made = await self._tx(write, transaction=False)
        if made:
            self._wake()
        await self._changed("created", [e.name for e in made])
        return Entities(
            entities=[Entity(name=e.name, entityType=e.entityType, observations=e.observations) for e in made]
        )

    async def create_relations(self, relations: list[RelationIn], *, client: str | None = None) -> Relations:
        """Relate entities; the relations that were new. An end naming no entity is stored dangling (as the
        reference does), or, with ``dangling_relations=refuse``, fails the whole call."""
        checks.batch(self.settings, relations, "relations")
        wanted: dict[tuple[str, str, str], RelationIn] = {}
        for r in relations:
            checks.name(r.from_, "from")
            checks.name(r.to, "to")
            checks.relation_type(r.relationType)
            r.validFrom, r.validTo = aware_utc(r.validFrom), aware_utc(r.validTo)
            if r.validFrom and r.validTo and r.validFrom >= r.validTo:
                raise InvalidInput(f"validFrom must be before validTo ({r.from_} {r.relationType} {r.to}).")
            wanted[(r.from_, r.to, r.relationType)] = r
        source = self._source(client)

        names = sorted({n for k in wanted for n in k[:2]})

        async def write(conn: asyncpg.Connection) -> list[tuple[str, str, str]]:
            ids = await store.existing(conn, names)
            if len(ids) < len(names):
                if self.settings.dangling_relations == "refuse":
                    raise NotFound(store.unknown_message([n for n in names if n not in ids]))
                # Exclusive: an entity of a missing name being created now is either seen by the second
                # look or attaches this relation itself (store.DANGLING_LOCK_CLASS).
                await store.lock_dangling(conn)
                ids = await store.existing(conn, names)
            locked = await store.lock_keys(conn, store.RELATION_LOCK_CLASS, ["\x1f".join(k) for k in wanted])
            keys = list(wanted) if locked else sorted(wanted)
            rows = await store.upsert_relations(
                conn, ids, keys, [wanted[k].validFrom for k in keys], [wanted[k].validTo for k in keys], source
            )
            made = {(r["from_name"], r["to_name"], r["relation_type"]) for r in rows if r["created"]}
            return [k for k in wanted if k in made]

        made = await self._tx(write)
        await self._changed("related", [n for k in made for n in k[:2]])
        return Relations(
            relations=[Relation.model_validate({"from": f, "to": t, "relationType": ty}) for f, t, ty in made]
        )

    async def add_observations(self, observations: list[ObservationsIn], *, client: str | None = None) -> AddedAll:
        """Add observations to existing entities; per item, the texts that were new."""
        checks.batch(self.settings, observations, "items")
        for o in observations:
            checks.name(o.entityName, "entityName")
            o.contents = [checks.observation(self.settings, c, o.entityName) for c in o.contents]
        source = self._source(client)

        async def write(conn: asyncpg.Connection) -> tuple[list[Added], list[int]]:
            ids = await store.existing(conn, [o.entityName for o in observations], lock="update")
            for o in observations:  # the reference's error, for the first unknown name in the caller's order
                if o.entityName not in ids:
                    raise NotFound(f"Entity with name {checks.clip(o.entityName)} not found")
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

        results, changed = await self._tx(write)
        if changed:
            self._wake()
        await self._changed("observed", [r.entityName for r in results if r.addedObservations])
        return AddedAll(results=results)

    async def delete_entities(self, names: list[str]) -> Done:
        """Delete entities and their relations (unknown names are ignored)."""
        checks.batch(self.settings, names, "names")

        async def write(conn: asyncpg.Connection) -> list[str]:
            return await store.delete_entities(conn, sorted(set(names)))

        gone = await self._tx(write)
        await self._changed("deleted", gone)
        return Done(success=True, message="Entities deleted successfully")

    async def delete_observations(self, deletions: list[DeletionIn]) -> Done:
        """Delete observations by exact text (unknown ones are ignored)."""
        checks.batch(self.settings, deletions, "items")
        names = [x.entityName for x in deletions for _ in x.observations]
        contents = [c for x in deletions for c in x.observations]

        async def write(conn: asyncpg.Connection) -> tuple[list[int], list[str]]:
            present = await store.lock_entities(conn, sorted(set(names)))
            if not present:
                return [], []
            rows = await store.delete_observations(conn, names, contents)
            ids = sorted({r["entity_id"] for r in rows})
            await store.bump_versions(conn, ids)
            return ids, sorted({r["name"] for r in rows})

        ids, changed = await self._tx(write)
        if ids:
            self._wake()
        await self._changed("unobserved", changed)
        return Done(success=True, message="Observations deleted successfully")

    async def delete_relations(self, relations: list[RelationKey]) -> Done:
        """Delete relations (unknown ones are ignored)."""
        checks.batch(self.settings, relations, "relations")

        async def write(conn: asyncpg.Connection) -> None:
            keys = sorted({(r.from_, r.to, r.relationType) for r in relations})
            await store.delete_relations(conn, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys])

        await self._tx(write)
        await self._changed("unrelated", [n for r in relations for n in (r.from_, r.to)])
        return Done(success=True, message="Relations deleted successfully")

    async def read_graph(
        self, *, limit: int = 200, cursor: str | None = None, names_only: bool = False, as_of: datetime | None = None
    ) -> Graph:
        """A page of the graph in creation order (relations with their source entity); next_cursor pages on."""
        as_of = aware_utc(as_of)
        fp = fingerprint("read_graph", names_only, str(as_of))
        after = _after_id(cursor, fp)

        async def read(conn: asyncpg.Connection) -> Graph:
            rows = await store.page_entities(conn, after, as_of, limit + 1)
            page = rows[:limit]
            entities, rels, kept = await self._assemble(
                conn, [r["id"] for r in page], as_of=as_of, relations="from", names_only=names_only
            )
            more = kept < len(page) or len(rows) > limit
            nxt = encode_cursor(fp, after=page[kept - 1]["id"]) if more else None
            if not more:  # relations from no entity belong to no page of entities: the last page lists them
                rels = sorted(
                    [*rels, *await store.relations_from_nobody(conn, as_of, RELATIONS_CAP)], key=lambda r: r.id
                )
            return Graph(entities=entities, relations=[relation(r) for r in rels], next_cursor=nxt)

        return await self.deps.db.run(read)

    async def search_nodes(self, query: str, *, limit: int = 10, cursor: str | None = None) -> Graph:
        """Entities by meaning, keywords and substrings, best first, with the relations touching them."""
        fp = fingerprint("search_nodes", query)
        offset = decode_cursor(cursor or None, fp).offset
        async with self._foreground():
            ranked = await self._search(query, max(self.settings.search_candidates, offset + limit))
            page = ranked[offset : offset + limit]
            more = len(ranked) > offset + limit
            entities, rels, _ = await self._assemble_on_two([f.id for f in page])
        return Graph(
            entities=entities,
            relations=[relation(r) for r in rels],
            next_cursor=encode_cursor(fp, offset=offset + limit) if more else None,
        )

    async def open_nodes(self, names: list[str]) -> Graph:
        """Entities by exact name (unknown names are left out), with the relations touching them."""
        checks.batch(self.settings, names, "names")
        rows = await store.entities_by_name(self.deps.db, list(dict.fromkeys(names)))
        entities, rels, _ = await self._assemble_on_two([r["id"] for r in rows])
        return Graph(entities=entities, relations=[relation(r) for r in rels])

    # ----------------------------------------------------------------------------------- import / export

    async def import_jsonl(self, *, path: str | None = None, content: str | None = None) -> Imported:
        """Merge a reference server's memory.jsonl (a file or its text) into the graph, all or nothing."""
        settings = self.settings
        raw = await asyncio.to_thread(files.read_source, path, content, self.roots, max_bytes=settings.import_max_bytes)
        return await self._import_text(raw, f"import:{FsPath(path).name if path else 'content'}")

    async def _import_text(self, raw: str, label: str) -> Imported:
        """Merge the text of a memory.jsonl into the graph (``label``: the provenance unless configured)."""
        settings = self.settings
        parsed = jsonl.parse(raw)
        problems: list[str] = []
        for e in parsed.entities:
            try:
                checks.name(e.name)
                checks.type_(e.entity_type, f"entityType of {e.name!r}")
                kept = [o for o in e.observations if o.strip()]
                if len(kept) < len(e.observations) and len(problems) < 20:
                    problems.append(f"empty observations of {e.name!r} skipped")
                e.observations = [checks.observation(settings, o, e.name) for o in kept]
            except InvalidInput as exc:
                raise InvalidInput(f"{exc} Nothing was imported.") from None
        for f, t, ty in parsed.relations:
            try:
                checks.name(f, "from")
                checks.name(t, "to")
                checks.relation_type(ty)
            except InvalidInput as exc:
                raise InvalidInput(f"{exc} Nothing was imported.") from None
        entities = parsed.entities
        source = settings.source or label
        self._check_dim()
        model = self.deps.embedder.model_name
        lcs = [text.entity_lc(e.name, e.entity_type) for e in entities]
        sep, grams = text.joined_grams(lcs)

        async def write(conn: asyncpg.Connection) -> Imported:
            names = [e.name for e in entities]
            made = await store.insert_entities_bulk(
                conn, names, [e.entity_type for e in entities], lcs, model, source, grams, sep
            )
            all_names = sorted({*names, *(n for rel in parsed.relations for n in rel[:2])})
            await store.lock_entities(conn, all_names)
            # Exclusive: this import both creates entities and may store dangling relations. Looked up again
            # once held, so an entity another call created meanwhile is not taken for a dangling end.
            await store.lock_dangling(conn)
            ids = await store.lock_entities(conn, all_names)
            await store.attach_relations(conn, sorted(made))
            pairs = [(ids[e.name], o) for e in entities for o in e.observations]
            inserted = await store.insert_observations(
                conn, [p[0] for p in pairs], [p[1] for p in pairs], [p[1].lower() for p in pairs], source
            )
            merged = sorted({eid for eid, _ in inserted} - set(made.values()))
            await store.bump_versions(conn, merged)
            # Relations naming no entity are kept, as the reference keeps them, and listed.
            loose = [r for r in parsed.relations if r[0] not in ids or r[1] not in ids]
            dangling = [
                f"{r[0][:80]!r} {r[2][:80]!r} {r[1][:80]!r}: no entity {(r[0] if r[0] not in ids else r[1])[:80]!r}"
                for r in loose[:20]
            ]
            n = len(parsed.relations)
            rows = await store.upsert_relations(conn, ids, parsed.relations, [None] * n, [None] * n, source)
            return Imported(
                entities_created=len(made),
                entities_merged=len(merged),
                observations_added=len(inserted),
                relations_created=sum(1 for r in rows if r["created"]),
                relations_dangling=len(loose),
                dangling=dangling,
                problems=problems,
            )

        result = await self._tx(write)
        if result.entities_created + result.observations_added + result.relations_created >= store.ANALYZE_AFTER:
            await store.flush_pending(self.deps.db)
            await store.analyze(self.deps.db)
            self._forget_stats()
        self._wake(wait=False)  # no read-your-writes wait: a big import is embedded over minutes
        await self._changed("imported", [e.name for e in entities][:200])
        log.info("graph_imported", **result.model_dump(exclude={"problems", "dangling"}))
        return result

    async def export_jsonl(self, *, path: str | None = None) -> Exported:
        """The graph in the reference server's memory.jsonl format: written to ``path``, or inline if small."""
        inline_max = self.settings.export_inline_max_chars
        if path is not None:
            self.roots.normalise(path)  # a refused path fails before the whole graph is read

        # One snapshot: entities and relations of the same moment, even while others write.
        async def snapshot(conn: asyncpg.Connection) -> tuple[list[str], int, int]:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                return await self._export_lines(conn, None if path is not None else inline_max)

        lines, n_entities, n_rel = await self.deps.db.run(snapshot)
        data = jsonl.join(lines)
        if path is None:
            return Exported(entities=n_entities, relations=n_rel, path=None, content=data)
        written = await asyncio.to_thread(
            files.write_export, path, data, self.roots, max_bytes=self.settings.import_max_bytes
        )
        return Exported(entities=n_entities, relations=n_rel, path=str(written), content=None)

    @staticmethod
    async def _export_lines(conn: asyncpg.Connection, inline_max: int | None) -> tuple[list[str], int, int]:
        """The graph's memory.jsonl lines (entities, then relations, each in creation order) and the counts;
        refused past ``inline_max`` characters when that is given. Run inside a snapshot transaction."""
        lines: list[str] = []
        size = 0
        after = 0
        n_entities = 0
        while True:
            rows = await store.export_entities(conn, after, 2_000)
            if not rows:
                break
            obs = await store.observations_of(conn, [r["id"] for r in rows])
            for r in rows:
                line = jsonl.entity_line(r["name"], r["entity_type"], obs[r["id"]])
                lines.append(line)
                size += len(line) + 1
            n_entities += len(rows)
            after = rows[-1]["id"]
            if inline_max is not None and size > inline_max:
                raise InvalidInput(
                    f"The graph is over {inline_max} characters as JSONL; pass path to write it to a file."
                )
        after = 0
        n_rel = 0
        while True:
            rrows = await store.export_relations(conn, after, 10_000)
            if not rrows:
                break
            for r in rrows:
                lines.append(jsonl.relation_line(r["from_name"], r["to_name"], r["relation_type"]))
                size += len(lines[-1]) + 1
            n_rel += len(rrows)
            after = rrows[-1]["id"]
        if inline_max is not None and size > inline_max:
            raise InvalidInput(f"The graph is {size} characters as JSONL; pass path to write it to a file.")
        return lines, n_entities, n_rel

    # ----------------------------------------------------------------------------------- retrieval

    @staticmethod
    def _stepper(conn: asyncpg.Connection, as_of: datetime | None, types: list[str] | None) -> graph.Step:
        async def step_fn(frontier: Sequence[int], limit: int, direction: str) -> list[store.Rel]:
            return await store.step(conn, frontier, as_of=as_of, limit=limit, direction=direction, types=types)

        return step_fn

    @staticmethod
    async def _start(conn: asyncpg.Connection, name: str, as_of: datetime | None, what: str) -> int:
        found = await store.entity_at(conn, name, as_of)
        if found is None:
            when = f" at {as_of.isoformat()}" if as_of else ""
            raise NotFound(f"No entity named {name[:80]!r}{when} ({what}). Use search_nodes to find the exact name.")
        return found

    async def neighbors(
        self,
        name: str,
        *,
        depth: int = 1,
        relation_types: list[str] | None = None,
        direction: Literal["out", "in", "both"] = "both",
        as_of: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Graph:
        """Entities within ``depth`` hops of one entity, nearest first, a page at a time."""
        as_of = aware_utc(as_of)
        fp = fingerprint("get_neighbors", name, depth, relation_types, direction, str(as_of))
        offset = decode_cursor(cursor or None, fp).offset

        async def read(conn: asyncpg.Connection) -> Graph:
            start = await self._start(conn, name, as_of, "name")
            walk = await graph.neighbourhood(
                start,
                depth,
                self._stepper(conn, as_of, relation_types),
                direction=direction,
                max_visited=self.settings.max_visited,
            )
            order = sorted(walk.depth, key=lambda i: (walk.depth[i], i))
            page_ids = order[offset : offset + limit]
            entities, _, kept = await self._assemble(conn, page_ids, as_of=as_of, relations="from")
            in_page = set(page_ids[:kept])
            rels = [r for r in walk.relations.values() if r.from_id in in_page or r.to_id in in_page]
            more = offset + kept < len(order)
            return Graph(
                entities=entities,
                relations=[relation(r) for r in sorted(rels, key=lambda r: r.id)],
                next_cursor=encode_cursor(fp, offset=offset + kept) if more else None,
            )

        return await self.deps.db.run(read)

    async def find_path(
        self,
        source: str,
        target: str,
        *,
        max_depth: int = 4,
        relation_types: list[str] | None = None,
        direction: Literal["out", "in", "both"] = "both",
        as_of: datetime | None = None,
    ) -> Path:
        """A shortest chain of relations between two entities, or found=False within ``max_depth`` hops."""
        as_of = aware_utc(as_of)

        async def read(conn: asyncpg.Connection) -> Path:
            a = await self._start(conn, source, as_of, "source")
            b = await self._start(conn, target, as_of, "target")
            res = await graph.shortest_path(
                a,
                b,
                max_depth,
                self._stepper(conn, as_of, relation_types),
                direction=direction,
                max_visited=self.settings.max_visited,
            )
            names = {r["id"]: r["name"] for r in await store.entities_by_id(conn, res.nodes)}
            return Path(
                found=res.found,
                names=[names[i] for i in res.nodes],
                relations=[relation(r) for r in res.relations],
                visited=res.visited,
            )

        return await self.deps.db.run(read)

    async def relevant_subgraph(self, query: str, *, seeds: int = 5, depth: int = 1, limit: int = 30) -> Graph:
        """The best ``seeds`` search hits expanded by ``depth`` hops, at most ``limit`` entities."""
        ranked = await self._search(query, self.settings.search_candidates)
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
            entities, rels, _ = await self._assemble(conn, list(order), as_of=None, relations="touching")
            kept = {e.name for e in entities}
            inside = [r for r in rels if r.from_name in kept and r.to_name in kept]
            return Graph(entities=entities, relations=[relation(r) for r in inside])

        return await self.deps.db.run(read)

    async def enhance_prompt(self, query: str, *, max_tokens: int = 800) -> Prompt:
        """Facts relevant to a query as a text block within a token budget, citing [entity]."""
        ranked = await self._search(query, self.settings.search_candidates)
        top = [f.id for f in ranked[:10]]
        tsq = text.keyword_query(query) or ""

        async def read(conn: asyncpg.Connection) -> tuple[list[asyncpg.Record], dict[int, list[str]], list[store.Rel]]:
            by_id = {r["id"]: r for r in await store.entities_by_id(conn, top)}
            rows = [by_id[i] for i in top if i in by_id]
            obs: dict[int, list[str]] = {i: [] for i in top}
            for r in await store.ranked_observations(conn, top, tsq):
                obs[r["entity_id"]].append(r["content"])
            rels = await store.relations_touching(conn, top, None, 200)
            return rows, obs, rels

        rows, obs, rels = await self.deps.db.run(read)
        return facts_block(query, rows, obs, rels, max_tokens)

    async def rank_passages(self, query: str, passages: list[str], *, limit: int = 20) -> Ranking:
        """Passages ordered by cosine similarity of their vectors to the query's, best first."""
        if not query.strip():
            raise InvalidInput("query is empty; say what the passages should answer.")
        if any(len(p) > self.settings.max_observation_chars for p in passages):
            raise InvalidInput(f"each passage may have at most {self.settings.max_observation_chars} characters.")
        vectors = await self._embed([query, *passages])
        q = vectors[0]
        scores = [float(np.dot(q, v)) for v in vectors[1:]]
        order = sorted(range(len(passages)), key=lambda i: (-scores[i], i))[:limit]
        return Ranking(ranked=[Ranked(index=i, score=round(scores[i], 4)) for i in order])

    async def provenance(self, name: str, *, limit: int = 100, cursor: str | None = None) -> Provenance:
        """When and by which source an entity, its observations and its relations were written."""
        fp = fingerprint("get_provenance", name)
        offset = decode_cursor(cursor or None, fp).offset

        async def read(conn: asyncpg.Connection) -> Provenance:
            e = await store.provenance_entity(conn, name)
            if e is None:
                raise NotFound(f"No entity named {name[:80]!r}. Use search_nodes to find the exact name.")
            obs = await store.provenance_observations(conn, e["id"], offset, limit + 1)
            rels = await store.provenance_relations(conn, e["id"], offset, limit + 1)
            more = len(obs) > limit or len(rels) > limit
            return model_of(
                Provenance,
                e,
                entityType=e["entity_type"],
                observations=[model_of(Fact, o, text=o["content"]) for o in obs[:limit]],
                relations=[
                    model_of(Fact, r, text=f"{r['from_name']} {r['relation_type']} {r['to_name']}")
                    for r in rels[:limit]
                ],
                next_cursor=encode_cursor(fp, offset=offset + limit) if more else None,
            )

        return await self.deps.db.run(read)

    # ----------------------------------------------------------------------------------- resources

    async def summary(self) -> dict[str, Any]:
        """Counts, the most common entity and relation types, and the last change."""

        async def read(conn: asyncpg.Connection) -> dict[str, Any]:
            s = await store.summary(conn)
            return {
                "entities": s["entities"],
                "observations": s["observations"],
                "relations": s["relations"],
                "updated_at": s["updated_at"].isoformat() if s["updated_at"] else None,
                "entity_types": await store.top_types(conn),
                "relation_types": await store.top_relation_types(conn),
            }

        return await self.deps.db.run(read)

    async def entity(self, name: str) -> Graph:
        """One entity by exact name with its observations and the relations touching it."""

        async def read(conn: asyncpg.Connection) -> Graph:
            rows = await store.entities_by_name(conn, [name])
            if not rows:
                raise NotFound(f"No entity named {name[:80]!r}.")
            entities, rels, _ = await self._assemble(conn, [rows[0]["id"]], as_of=None, relations="touching")
            return Graph(entities=entities, relations=[relation(r) for r in rels])

        return await self.deps.db.run(read)
