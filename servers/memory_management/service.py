"""The memory service: every operation of the memory server, with no MCP in sight.

It owns the transactions, the embedding, the change events and the background work: the expiry
sweep (a :class:`~common.workers.Periodic`), the background connection that puts deferred stores
into the HNSW graph, and the planner statistics refreshed after bulk writes. Annotations are strings
(``from __future__``) so numpy and asyncpg, which only annotations name, load with the connection
after the handshake instead of at start-up (common.runtime.DepsGate).
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from common import keywords
from common.background import Batcher
from common.concurrency import gather_all
from common.errors import Conflict, InvalidInput, NotFound
from common.jobs import Progress
from common.logging import get_logger
from common.paging import decode_cursor, fingerprint, keyset_page, page_of
from common.rows import model_of
from common.runtime import Deps
from common.safefiles import Roots
from common.table_stats import StatsRefresher
from common.timeutil import aware_utc
from common.workers import Periodic
from servers.memory_management import bridge, ranking, store, validate
from servers.memory_management.models import (
    Consolidation,
    Count,
    Group,
    Hit,
    Imported,
    Memory,
    MemoryIn,
    MemoryWithChildren,
    Node,
    Recall,
    Reembedded,
    Ref,
    Stats,
    Stored,
    Tree,
    Workspace,
    Workspaces,
)
from servers.memory_management.models import Context as ContextBlock
from servers.memory_management.settings import Settings

if TYPE_CHECKING:
    import asyncpg
    import numpy as np

    from common.db import Database
    from common.embeddings import Embedder

log = get_logger(__name__)

NAME = "memory_management"
#: The ``embedding`` column is vector(384): the dimension of the default model.
EMBEDDING_DIM = 384
SNIPPET = 160
#: Bounds of one reembed_memories call and the texts embedded per transaction it writes.
REEMBED_MAX = 20_000
REEMBED_BATCH = 64


@dataclass(frozen=True)
class Tuning:
    """Internal bounds of the background work (tests shrink them; nothing else needs to)."""

    #: A row still outside the HNSW graph this long after it was stored, by a process that died
    #: before its indexing batch went out, is indexed by the sweep.
    unindexed_grace_s: float = 30.0
    #: Stores indexed in the background between two merges of the GIN pending lists (see _index).
    pending_flush_every: int = 500
    #: Most single stores waiting for their HNSW insert at once (see _store).
    defer_max: int = 256
    #: How long a process trusts its check that no memory was embedded by another model.
    other_model_check_s: float = 10.0


def _ref(row: dict[str, Any]) -> Ref:
    return Ref(id=row["id"], version=row["version"], state=row["state"], created=bool(row.get("created")))


def _hit(s: ranking.Scored) -> Hit:
    r = s.row

    def rounded(value: Any, digits: int = 4) -> float | None:
        return None if value is None else round(float(value), digits)

    return model_of(
        Hit,
        r,
        score=round(s.score, 4),
        similarity=rounded(r["similarity"]),
        keyword_rank=rounded(r["kw_score"]),
        recency=round(s.recency, 4),
        importance=round(float(r["importance"]), 3),
    )


class MemoryService:
    """Store, recall, organise and consolidate memories (see the module docstring)."""

    def __init__(self, deps: Deps, settings: Settings, tuning: Tuning | None = None) -> None:
        self.deps = deps
        self.settings = settings
        self.tuning = tuning or Tuning()
        self.planner = keywords.KeywordPlanner("memories", scan_cap=settings.keyword_scan_cap)
        self.refresher = StatsRefresher(deps.db, ["memories"])
        self.refresher.on_refresh(self.planner.forget_stats)
        self.sweeper = Periodic("memory-sweep", self.sweep_once, interval_s=settings.sweep_interval_s)
        #: The connection of its own that puts stored vectors into the HNSW graph (while open).
        self.indexer: Database | None = None
        #: Stores indexed since the GIN pending lists were last merged.
        self._indexed_since_flush = 0
        #: When this process last checked for memories of another model, and whether it found any.
        self._other_model_checked_at = -float("inf")
        self._other_model_seen = False

    @classmethod
    @asynccontextmanager
    async def open(cls, deps: Deps, settings: Settings, tuning: Tuning | None = None) -> AsyncIterator[MemoryService]:
        """The running service: the indexer connection and the sweep are up until the block exits."""
        svc = cls(deps, settings, tuning)
        async with AsyncExitStack() as stack:  # closes in reverse order, each step even if one before failed
            svc.indexer = await deps.db.open_background("indexer")
            stack.push_async_callback(svc._close_indexer)
            stack.push_async_callback(svc.refresher.close)
            stack.push_async_callback(deps.background.drain)  # the vectors still waiting go in through the indexer
            svc.sweeper.start()
            stack.push_async_callback(svc.sweeper.stop)  # first: no sweep adds work once the drain began
            yield svc

    async def _close_indexer(self) -> None:
        indexer, self.indexer = self.indexer, None
        if indexer is not None:
            await indexer.close()

    # ------------------------------------------------------------------------------------- helpers

    def _check_dim(self) -> None:
        # common.retrieval imports numpy (common.embeddings), which loads after the handshake.
        from common.retrieval import check_dimension

        check_dimension(self.deps.embedder, EMBEDDING_DIM, NAME)

    async def _embed(self, texts: list[str]) -> list[np.ndarray]:
        self._check_dim()
        return await self.deps.embedder.embed(texts)

    def _workspace(self, given: str | None) -> str:
        return validate.one_workspace(given, self.settings.default_workspace)

    def _new(self, item: MemoryIn, workspace: str, scope: str) -> store.NewMemory:
        return store.NewMemory(
            workspace=workspace,
            scope=scope,
            parent_id=None,
            kind=validate.kind(item.kind),
            content=validate.content(item.content, self.settings.max_content_chars),
            tags=validate.tags(item.tags),
            metadata=validate.metadata(item.metadata),
            importance=item.importance,
            ttl_seconds=None,
        )

    async def _get(self, memory_id: str) -> dict[str, Any]:
        row = await store.get(self.deps.db, memory_id)
        if row is None:
            raise NotFound(f"No memory {memory_id} (unknown, purged or expired). Use recall to find memories.")
        return row

    # ------------------------------------------------------------------------------------- background

    async def sweep_once(self) -> int:
        """Hard-delete expired memories, a bounded number of batches per pass; index what a dead process left."""
        d, batch = self.deps, self.settings.sweep_batch
        for _ in range(20):
            left = await store.unindexed(d.db, self.tuning.unindexed_grace_s, batch)
            await store.index_vectors(d.db, left)
            if len(left) < batch:
                break
        removed = 0
        for _ in range(20):
            rows = await store.sweep_expired(d.db, batch)
            removed += len(rows)
            if rows:
                await bridge.publish(d, "expired", [r["id"] for r in rows], [r["workspace"] for r in rows])
            if len(rows) < batch:
                break
        if removed:
            log.info("memories_expired", removed=removed)
        return removed

    async def _index(self, ids: list[str]) -> None:
        """Put deferred stores into the HNSW graph; now and then merge the GIN pending lists too."""
        db = self.indexer or self.deps.db
        await store.index_vectors(db, ids)
        self._indexed_since_flush += len(ids)
        if self._indexed_since_flush >= self.tuning.pending_flush_every:
            self._indexed_since_flush = 0
            await store.flush_pending(db)

    # ------------------------------------------------------------------------------------- store

    @property
    def indexing(self) -> Batcher[str]:
        """Single stores waiting for their HNSW insert (flushed by the indexer after the answer)."""
        return self.deps.background.batcher("memory-index", self._index)

    async def _store(self, items: list[store.NewMemory]) -> list[dict[str, Any]]:
        d = self.deps
        vectors = await self._embed([m.content for m in items])
        model = d.embedder.model_name

        async def write(conn: asyncpg.Connection) -> list[dict[str, Any]]:
            out = []
            for item, vec in zip(items, vectors, strict=True):
                if item.parent_id is not None:
                    ws = await store.parent_workspace(conn, item.parent_id)
                    if ws is None:
                        raise NotFound(f"parent_id {item.parent_id} is not an active memory; nothing was stored.")
                    if ws != item.workspace:
                        raise InvalidInput(
                            f"parent_id {item.parent_id} is in workspace {ws!r}, not {item.workspace!r}."
                        )
                out.append(await store.insert(conn, item, vec, model))
            return out

        if len(items) == 1 and items[0].parent_id is None:  # one statement: atomic without BEGIN/COMMIT
            # Into the HNSW graph after the answer (migration 0004), unless stores come faster than
            # the graph takes them: past defer_max waiting rows a store pays its insert inline again,
            # so a steady stream of stores cannot pile up work (batches always pay it inline).
            indexing = self.indexing
            defer = indexing.backlog < self.tuning.defer_max
            rows = [await d.db.run(lambda conn: store.insert(conn, items[0], vectors[0], model, indexed=not defer))]
            if defer and rows[0]["created"]:
                indexing.add([rows[0]["id"]])
        else:
            rows = await d.db.run_in_transaction(write)
        created = [r["id"] for r in rows if r["created"]]
        self.refresher.wrote(len(created))
        await bridge.publish(d, "stored", created, sorted({i.workspace for i in items}))
        return rows

    async def store_one(
        self,
        content: str,
        *,
        workspace: str | None = None,
        scope: str = "project",
        parent_id: uuid.UUID | None = None,
        kind: str = "note",
        tags: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float = 0.5,
        ttl_seconds: int | None = None,
    ) -> Ref:
        """Store one memory; text already active in the workspace returns that memory (created=false)."""
        item = store.NewMemory(
            workspace=self._workspace(workspace),
            scope=scope,
            parent_id=str(parent_id) if parent_id else None,
            kind=validate.kind(kind),
            content=validate.content(content, self.settings.max_content_chars),
            tags=validate.tags(tags),
            metadata=validate.metadata(metadata),
            importance=importance,
            ttl_seconds=ttl_seconds,
        )
        return _ref((await self._store([item]))[0])

    async def store_many(
        self, items: Sequence[MemoryIn], *, workspace: str | None = None, scope: str = "project"
    ) -> Stored:
        """Store a batch in one transaction; one bad item stores nothing."""
        if len(items) > self.settings.store_batch_max:
            raise InvalidInput(f"{len(items)} items given; at most {self.settings.store_batch_max} per call.")
        ws = self._workspace(workspace)
        new = []
        for n, it in enumerate(items):
            try:
                new.append(self._new(it, ws, scope))
            except InvalidInput as exc:
                raise InvalidInput(f"items[{n}]: {exc} Nothing was stored.") from None
        refs = [_ref(r) for r in await self._store(new)]
        made = sum(r.created for r in refs)
        return Stored(items=refs, created=made, duplicates=len(refs) - made)

    # ------------------------------------------------------------------------------------- recall

    async def _rank(
        self,
        query: str,
        mode: str,
        flt: store.RecallFilter,
        *,
        depth: int,
        touch: Callable[[list[ranking.Scored]], list[str]],
    ) -> tuple[list[ranking.Scored], str | None]:
        """Rank memories for ``query``; the ones ``touch`` picks (those returned) count as accessed.

        The access counts are written after the answer has gone (common.background).
        """
        if not query.strip():
            raise InvalidInput("query is empty; say what to look for.")
        if flt.since and flt.until and flt.since >= flt.until:
            raise InvalidInput("since must be earlier than until.")
        if mode == "keyword" and not keywords.words(query):
            raise InvalidInput("query has no words to match; use mode=semantic or add words.")
        d, planner = self.deps, self.planner
        model = d.embedder.model_name
        hybrid = mode == "hybrid"
        wants_keywords = mode in ("hybrid", "keyword")
        wants_vector = mode in ("hybrid", "semantic")

        async def keyword_side(conn: asyncpg.Connection) -> tuple[bool, list[dict[str, Any]]]:
            plan = await planner.plan(conn, query)
            if plan is None or (hybrid and plan.only_common):  # only stop words, or only common words
                return False, []
            rows = await store.keyword_candidates(
                conn, flt, plan, depth=depth, scan_cap=planner.scan_cap, vectors=hybrid
            )
            return True, rows

        async def semantic_side(
            conn: asyncpg.Connection, vector: np.ndarray
        ) -> tuple[list[dict[str, Any]], dict[str, int]]:
            rows = await store.semantic_candidates(conn, flt, vector, model, depth=depth)
            return rows, await self._other_models(conn, flt, model)

        # The keyword list needs no vector: it runs while the query is embedded, and the vector
        # list starts beside it (on its own connection) as soon as the vector is there.
        if wants_vector:
            self._check_dim()

        async def vector_side() -> tuple[np.ndarray, tuple[list[dict[str, Any]], dict[str, int]]]:
            # hybrid: the keyword statement runs meanwhile, so the model takes one thread
            vec = await d.embedder.embed_one(query, beside_work=hybrid)
            return vec, await d.db.run(functools.partial(semantic_side, vector=vec))

        sides: list[Coroutine[Any, Any, Any]] = []
        if wants_keywords:
            sides.append(d.db.run(keyword_side))
        if wants_vector:
            sides.append(vector_side())
        results = await gather_all(*sides)
        used_keywords, keyword_rows = results[0] if wants_keywords else (False, [])
        vector, (semantic_rows, others) = results[-1] if wants_vector else (None, ([], {}))
        planner.learn_later(d.background, d.db)  # words met for the first time
        rows = store.merge(keyword_rows, semantic_rows, vector, model)
        scored = ranking.fuse(rows, max((vector is not None) + used_keywords, 1))
        accessed = touch(scored)
        if accessed:
            d.background.batcher("memory-touch", functools.partial(store.touch, d.db)).add(accessed)
        warning = None
        if others:
            listed = ", ".join(f"{n} by {m!r}" for m, n in others.items())
            warning = (
                f"Some memories were embedded with another model ({listed}); semantic search skips them "
                f"(keyword search still finds them). Call reembed_memories to embed them with {model!r}."
            )
        return scored, warning

    async def _other_models(self, conn: asyncpg.Connection, flt: store.RecallFilter, model: str) -> dict[str, int]:
        """Counts of memories embedded by other models; the cheap existence check is cached briefly."""
        now = time.monotonic()
        if now - self._other_model_checked_at > self.tuning.other_model_check_s:
            self._other_model_seen = await store.any_other_model(conn, model)
            self._other_model_checked_at = now
        return await store.other_models(conn, flt, model) if self._other_model_seen else {}

    async def recall(
        self,
        query: str,
        *,
        mode: str = "hybrid",
        workspace: str | None = None,
        scope: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        min_score: float = 0.0,
        limit: int = 10,
        cursor: str | None = None,
    ) -> Recall:
        """Memories relevant to ``query``, best first, a page at a time."""
        flt = store.RecallFilter(
            workspace=validate.workspace(workspace, self.settings.default_workspace, allow_all=True),
            scopes=list(scope) if scope else None,
            tags=validate.tags(tags) or None,
            kind=kind,
            since=aware_utc(since),
            until=aware_utc(until),
        )
        fp = fingerprint("recall", query, mode, flt.args(), min_score)
        offset = decode_cursor(cursor, fp).offset
        depth = min(max(self.settings.recall_candidates, offset + limit + 1), 1_000)

        def shown(scored: list[ranking.Scored]) -> list[str]:
            return [s.row["id"] for s in scored if s.score >= min_score][offset : offset + limit]

        scored, warning = await self._rank(query, mode, flt, depth=depth, touch=shown)
        scored = [s for s in scored if s.score >= min_score]
        page = page_of(scored[offset : offset + limit], total=len(scored), offset=offset, limit=limit, fp=fp)
        hits = [_hit(s) for s in page.items]
        return Recall(
            hits=hits, total=page.total, truncated=page.truncated, next_cursor=page.next_cursor, warning=warning
        )

    async def build_context(
        self,
        query: str,
        *,
        workspace: str | None = None,
        budget: int | None = None,
        tags: Sequence[str] | None = None,
    ) -> ContextBlock:
        """The most relevant memories as one text block within ``budget`` tokens."""
        from common.retrieval import pack  # loads numpy (see _check_dim); by now it has

        budget = budget or self.settings.default_token_budget
        if budget > self.settings.max_token_budget:
            raise InvalidInput(f"budget {budget} is above the limit {self.settings.max_token_budget}.")
        ws = validate.workspace(workspace, self.settings.default_workspace, allow_all=True)
        flt = store.RecallFilter(ws, None, validate.tags(tags) or None, None, None, None)
        packed: list[tuple[list[str], list[str], int, int]] = []

        def pack_best(scored: list[ranking.Scored]) -> list[str]:
            blocks = [
                (s.row["id"], f"[{s.row['id']}] ({s.row['kind']}, {s.row['created_at']:%Y-%m-%d}) {s.row['content']}")
                for s in scored[:100]
            ]
            packed.append(pack(blocks, budget))
            return packed[-1][1]

        await self._rank(query, "hybrid", flt, depth=self.settings.recall_candidates, touch=pack_best)
        texts, ids, used, omitted = packed[-1]
        return ContextBlock(text="\n".join(texts), ids=ids, tokens=used, budget=budget, omitted=omitted)

    # ------------------------------------------------------------------------------------- read / update

    async def get(self, memory_id: uuid.UUID, *, children: int = 0) -> MemoryWithChildren:
        """One memory, with up to ``children`` of its children."""
        row = await self._get(str(memory_id))
        kids: list[Node] = []
        total = 0
        if children:
            rows, total = await store.tree(self.deps.db, str(memory_id), None, 1, children + 1, SNIPPET)
            kids = [Node(**r) for r in rows if r["depth"] == 1]
            total -= 1
        return MemoryWithChildren(**row, children=kids, children_total=max(total, 0))

    async def memory(self, memory_id: str) -> Memory:
        """One memory by the id in a resource URI (NotFound for anything that is not a memory id)."""
        try:
            uuid.UUID(memory_id)
        except ValueError:
            raise NotFound(f"{memory_id[:80]!r} is not a memory id.") from None
        return Memory(**await self._get(memory_id))

    async def update(
        self,
        id: uuid.UUID,
        *,
        content: str | None = None,
        tags: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float | None = None,
        kind: str | None = None,
        ttl_seconds: int | None = None,
        expected_version: int | None = None,
    ) -> Ref:
        """Change a memory (new text is re-embedded); the old version goes to history."""
        d = self.deps
        mid = str(id)
        new_content = validate.content(content, self.settings.max_content_chars) if content is not None else None
        vector = (await self._embed([new_content]))[0] if new_content is not None else None
        new_tags = validate.tags(tags) if tags is not None else None
        new_meta = validate.metadata(metadata) if metadata is not None else None
        new_kind = validate.kind(kind) if kind is not None else None

        async def write(conn: asyncpg.Connection) -> dict[str, Any]:
            old = await store.get_for_update(conn, mid)
            if old is None or old["state"] != "active":
                raise NotFound(f"No active memory {mid}; restore_memory first if it was forgotten.")
            if expected_version is not None and old["version"] != expected_version:
                raise Conflict(
                    f"Memory {mid} is at version {old['version']}, not {expected_version}; re-read and retry."
                )
            same_text = new_content is None or new_content == old["content"]
            return await store.update(
                conn,
                old,
                content=old["content"] if new_content is None else new_content,
                tags=old["tags"] if new_tags is None else new_tags,
                metadata=old["metadata"] if new_meta is None else new_meta,
                importance=old["importance"] if importance is None else importance,
                kind=old["kind"] if new_kind is None else new_kind,
                vector=None if same_text else vector,
                model=old["embedding_model"] if same_text else d.embedder.model_name,
                ttl_seconds=ttl_seconds,
            )

        try:
            row = await d.db.run_in_transaction(write)
        except store.unique_violation():
            other = await store.same_text(d.db, mid, new_content or "")
            holder = f"Memory {other}" if other else "Another active memory in this workspace"
            raise Conflict(
                f"{holder} already has that text; update or forget that one, or forget {mid} instead."
            ) from None
        await bridge.publish(d, "updated", [row["id"]], [])
        return _ref(row)

    # ------------------------------------------------------------------------------------- forget / restore / purge

    async def _apply(self, target: store.Target, limit: int, dry_run: bool, action: str) -> Count:
        async def run(conn: asyncpg.Connection) -> list[dict[str, Any]]:
            if target.ids:
                missing = set(target.ids) - await store.existing_ids(conn, target.ids)
                if missing:
                    raise NotFound(f"Unknown memory ids: {', '.join(sorted(missing))}; nothing was changed.")
            rows = await store.select_targets(conn, target, limit, lock=not dry_run)
            if not dry_run and rows:
                ids = [r["id"] for r in rows]
                await (store.archive(conn, ids) if action == "forgotten" else store.purge(conn, ids))
            return rows

        rows = await self.deps.db.run_in_transaction(run)
        if not dry_run:
            await bridge.publish(self.deps, action, [r["id"] for r in rows], [r["workspace"] for r in rows])
        return Count(count=len(rows), ids=[r["id"] for r in rows[:20]], dry_run=dry_run)

    async def forget(
        self,
        *,
        ids: Sequence[uuid.UUID] | None = None,
        workspace: str | None = None,
        tags: Sequence[str] | None = None,
        kind: str | None = None,
        before: datetime | None = None,
        dry_run: bool = True,
    ) -> Count:
        """Archive memories by id or by filter (restorable); only counts when ``dry_run``."""
        if not ids and workspace is None and not (tags or kind or before):
            raise InvalidInput("Give ids, or a workspace (optionally with tags/kind/before) to forget by filter.")
        target = store.Target(
            state="active",
            ids=[str(i) for i in ids] if ids else None,
            workspace=self._workspace(workspace) if not ids or workspace else None,
            tags=validate.tags(tags) or None,
            kind=kind,
            before=aware_utc(before),
        )
        return await self._apply(target, 10_000, dry_run, "forgotten")

    async def restore(self, memory_id: uuid.UUID) -> Ref:
        """Bring back an archived memory (an active one is returned as it is)."""
        d = self.deps
        mid = str(memory_id)

        async def run(conn: asyncpg.Connection) -> dict[str, Any] | None:
            return await store.restore(conn, mid)

        try:
            row = await d.db.run_in_transaction(run)
        except store.unique_violation():
            raise Conflict(
                f"An active memory with the same text exists in the workspace; {mid} stays archived."
            ) from None
        if row is None:
            current = await store.get(d.db, mid)
            if current is not None and current["state"] == "active":
                return Ref(id=current["id"], version=current["version"], state="active", created=False)
            raise NotFound(f"No archived memory {mid} (unknown, purged or expired).")
        await bridge.publish(d, "restored", [row["id"]], [row["workspace"]])
        return _ref(row)

    async def purge(
        self,
        *,
        ids: Sequence[uuid.UUID] | None = None,
        workspace: str | None = None,
        archived_before: datetime | None = None,
        dry_run: bool = True,
        limit: int = 1_000,
    ) -> Count:
        """Delete archived memories for good; only counts when ``dry_run``."""
        target = store.Target(
            state="archived",
            ids=[str(i) for i in ids] if ids else None,
            workspace=self._workspace(workspace) if not ids or workspace else None,
            archived_before=aware_utc(archived_before),
        )
        return await self._apply(target, limit, dry_run, "purged")

    # ------------------------------------------------------------------------------------- tree

    async def tree(
        self, *, workspace: str | None = None, root_id: uuid.UUID | None = None, depth: int = 3, limit: int = 100
    ) -> Tree:
        """The parent/child outline of a workspace, or of the subtree under ``root_id``, depth first."""
        if root_id is not None:
            await self._get(str(root_id))
        ws = None if root_id is not None else self._workspace(workspace)
        rows, total = await store.tree(self.deps.db, str(root_id) if root_id else None, ws, depth, limit, SNIPPET)
        return Tree(nodes=[Node(**r) for r in rows], total=total, truncated=total > len(rows))

    async def move(self, memory_id: uuid.UUID, parent_id: uuid.UUID | None) -> Ref:
        """Put a memory under another parent in its workspace (None: a root); refuses cycles."""
        node, parent = str(memory_id), str(parent_id) if parent_id else None

        async def run(conn: asyncpg.Connection) -> dict[str, Any]:
            row = await store.get(conn, node)
            if row is None or row["state"] != "active":
                raise NotFound(f"No active memory {node}.")
            await store.lock_workspace_tree(conn, row["workspace"])
            if parent is not None:
                ws = await store.parent_workspace(conn, parent)
                if ws is None:
                    raise NotFound(f"parent_id {parent} is not an active memory.")
                if ws != row["workspace"]:
                    raise InvalidInput(f"parent_id {parent} is in workspace {ws!r}, not {row['workspace']!r}.")
                if await store.is_ancestor_or_self(conn, node, parent):
                    raise InvalidInput(
                        f"Moving {node} under {parent} would make a cycle ({parent} is {node} or lies below it). "
                        "Move the parent elsewhere first."
                    )
            return await store.move(conn, node, parent)

        row = await self.deps.db.run_in_transaction(run)
        await bridge.publish(self.deps, "moved", [row["id"]], [])
        return _ref(row)

    async def rate(self, memory_id: uuid.UUID, useful: bool) -> Ref:
        """Record whether a memory helped; the ranking's feedback boost."""
        row = await store.rate(self.deps.db, str(memory_id), useful)
        if row is None:
            raise NotFound(f"No active memory {memory_id}.")
        return _ref(row)

    # ------------------------------------------------------------------------------------- consolidate

    async def consolidate(
        self, *, workspace: str | None = None, threshold: float | None = None, merge: bool = False, limit: int = 20
    ) -> Consolidation:
        """Groups of near-duplicates in a workspace; with ``merge`` each folds into its best member."""
        d = self.deps
        self._check_dim()
        ws = self._workspace(workspace)
        cut = threshold if threshold is not None else self.settings.consolidate_threshold
        pairs = await store.near_duplicates(d.db, ws, cut, self.settings.consolidate_scan_max, d.embedder.model_name)
        groups = ranking.group_pairs(pairs)
        truncated = len(groups) > limit
        out: list[Group] = []
        merged = 0
        for members, sim in groups[:limit]:

            async def run(conn: asyncpg.Connection, members: list[str] = members) -> tuple[str, list[str]] | None:
                rows = await store.lock_for_merge(conn, members)
                if len(rows) < 2:
                    return None  # another process merged or forgot them meanwhile
                rows.sort(
                    key=lambda r: (-r["importance"], -(r["useful_count"] - r["not_useful_count"]), r["created_at"])
                )
                keeper, others = rows[0], rows[1:]
                if merge:
                    await store.merge_into(conn, keeper, others)
                return keeper["id"], [o["id"] for o in others]

            result = await d.db.run_in_transaction(run)
            if result is None:
                continue
            keeper_id, dups = result
            out.append(Group(keeper=keeper_id, duplicates=dups, similarity=round(sim, 4)))
            if merge:
                merged += len(dups)
                await bridge.publish(d, "merged", [keeper_id, *dups], [ws])
        return Consolidation(groups=out, merged=merged, truncated=truncated)

    # ------------------------------------------------------------------------------------- workspaces

    async def workspaces(self, *, limit: int = 50, cursor: str | None = None) -> Workspaces:
        """The workspaces that hold memories, by name, a page at a time."""
        fp = fingerprint("list_workspaces")
        after = decode_cursor(cursor, fp).after
        if after is not None and not isinstance(after, str):
            raise InvalidInput("cursor is not a next_cursor of list_workspaces; repeat the call without it.")
        rows, total = await store.workspaces(self.deps.db, after, limit + 1)
        page = keyset_page(rows, total=total, limit=limit, fp=fp, key=lambda r: r["name"])
        return Workspaces(
            workspaces=[Workspace(**r) for r in page.items],
            total=page.total,
            truncated=page.truncated,
            next_cursor=page.next_cursor,
        )

    async def workspace_listing(self, limit: int = 1_000) -> str:
        """Every workspace with its counts, as the JSON of the workspaces resource."""
        rows, total = await store.workspaces(self.deps.db, None, limit)
        return json.dumps({"workspaces": rows, "total": total}, default=str)

    async def stats(self, workspace: str | None = None) -> Stats:
        """Counts of one workspace by state, scope, kind, tag and embedding model."""
        ws = self._workspace(workspace)
        head, groups = await store.stats(self.deps.db, ws)
        by: dict[str, dict[str, int]] = {"scope": {}, "kind": {}, "tag": {}, "model": {}}
        for g in groups:
            by[g["g"]][g["k"]] = int(g["n"])
        return model_of(
            Stats, head, workspace=ws, by_scope=by["scope"], by_kind=by["kind"], top_tags=by["tag"], models=by["model"]
        )

    # ------------------------------------------------------------------------------------- re-embed

    async def reembed(
        self,
        *,
        workspace: str | None = None,
        dry_run: bool = True,
        max_items: int = 2_000,
        progress: Progress | None = None,
    ) -> Reembedded:
        """Embed memories another model embedded with the store's one, in bounded steps; counts when ``dry_run``."""
        d = self.deps
        ws = validate.workspace(workspace or "*", self.settings.default_workspace, allow_all=True)
        model = d.embedder.model_name
        stale = await store.count_stale_vectors(d.db, model, ws)
        total = sum(stale.values())
        if dry_run or not total:
            return Reembedded(dry_run=dry_run, model=model, stale=stale, reembedded=0, skipped=0, remaining=total)
        self._check_dim()
        done = skipped = 0
        rows = await store.stale_vectors(d.db, model, ws, max_items)
        for start in range(0, len(rows), REEMBED_BATCH):
            batch = rows[start : start + REEMBED_BATCH]
            vectors = await self._embed([r["content"] for r in batch])
            updates = [(r["id"], v, model, r["version"]) for r, v in zip(batch, vectors, strict=True)]
            # One transaction per batch: a stopped call keeps every finished batch, none half-written.
            written = await d.db.run_in_transaction(functools.partial(store.set_vectors, rows=updates))
            done += written
            skipped += len(batch) - written
            if progress is not None:
                await progress(start + len(batch), len(rows), f"{start + len(batch)} of {len(rows)} re-embedded")
            await bridge.publish(d, "reembedded", [r["id"] for r in batch], [])
        self._other_model_checked_at = -float("inf")  # the next recall checks again
        return Reembedded(
            dry_run=False,
            model=model,
            stale=stale,
            reembedded=done,
            skipped=skipped,
            remaining=max(total - done - skipped, 0),
        )

    async def reembed_step(self, embedder: Embedder, limit: int) -> int:
        """One step of a switch of the store's model (``mcp-suite reembed``): re-embed at most ``limit``
        memories not yet embedded by ``embedder``'s model with it; how many it picked (0: none left)."""
        from common.retrieval import check_dimension

        d, model = self.deps, embedder.model_name
        rows = await store.stale_vectors(d.db, model, None, limit)
        if rows:
            check_dimension(embedder, EMBEDDING_DIM, NAME)
            vectors = await embedder.embed([r["content"] for r in rows])
            updates = [(r["id"], v, model, r["version"]) for r, v in zip(rows, vectors, strict=True)]
            await d.db.run_in_transaction(functools.partial(store.set_vectors, rows=updates))
            await bridge.publish(d, "reembedded", [r["id"] for r in rows], [])
        self._other_model_checked_at = -float("inf")  # the next recall checks again
        return len(rows)

    # ------------------------------------------------------------------------------------- import

    async def import_qdrant(
        self,
        collection: str,
        *,
        qdrant_path: str | None = None,
        qdrant_url: str | None = None,
        workspace: str | None = None,
        kind: str = "note",
        progress: Progress | None = None,
    ) -> Imported:
        """Copy an mcp-server-qdrant collection into a workspace, re-embedded; re-running skips what is there."""
        # qdrant_client is heavy and only this call needs it.
        from servers.memory_management.qdrant_import import key_for, read_documents, storage_folder

        settings = self.settings
        ws = self._workspace(workspace)
        folder = None
        if qdrant_path is not None:
            roots = Roots(settings.import_roots, setting="MEMORY_MANAGEMENT_IMPORT_ROOTS")
            folder = await anyio.to_thread.run_sync(storage_folder, qdrant_path, roots)
        key = None
        if qdrant_url is not None:
            configured = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
            key = key_for(qdrant_url, settings.qdrant_url, configured)
        read = created = duplicates = skipped = 0
        async for page in read_documents(
            path=folder, url=qdrant_url, api_key=key, collection=collection, limit=settings.import_max
        ):
            read += len(page)
            items = []
            for doc in page:
                if doc is None or len(doc.text) > settings.max_content_chars:
                    skipped += 1
                    continue
                items.append(
                    store.NewMemory(
                        workspace=ws,
                        scope="project",
                        parent_id=None,
                        kind=validate.kind(kind),
                        content=doc.text.strip(),
                        tags=["imported"],
                        metadata={"source": f"qdrant:{collection}", **doc.metadata},
                        importance=0.5,
                        ttl_seconds=None,
                    )
                )
            if items:
                rows = await self._store(items)
                made = sum(1 for r in rows if r["created"])
                created += made
                duplicates += len(rows) - made
            if progress is not None:
                await progress(read, None, f"{read} points read")
        return Imported(read=read, created=created, duplicates=duplicates, skipped=skipped)
