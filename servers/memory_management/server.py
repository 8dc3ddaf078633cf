"""Wiring of the memory server: thin tools over store.py, ranking.py and common/.

Annotations are strings (``from __future__``): ``add_tool`` resolves the tools' against this
module, and numpy and asyncpg, which only annotations name, load with the connection after the
handshake instead of before it (common.runtime.DepsGate).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, ConfigDict, Field

from common import keywords
from common.errors import Conflict, InvalidInput, NotFound
from common.logging import get_logger
from common.runtime import APPEND, DELETE, EXTERNAL, READ, WRITE, Deps, create_server, deps, server_deps, tool_registrar
from common.table_stats import StatsRefresher
from common.timeutil import aware_utc
from common.tool_schema import CursorArg, P, outline_outputs
from servers.memory_management import bridge, ranking, store
from servers.memory_management.models import (
    Consolidation,
    Count,
    Group,
    Hit,
    Imported,
    Memory,
    MemoryWithChildren,
    Mode,
    Node,
    Recall,
    Reembedded,
    Ref,
    Scope,
    Stats,
    Stored,
    Tree,
    Workspace,
    Workspaces,
    _strip_titles,
)
from servers.memory_management.models import Context as ContextBlock
from servers.memory_management.settings import Settings

if TYPE_CHECKING:
    import asyncpg
    import numpy as np

    from common.db import Database

log = get_logger(__name__)

NAME = "memory_management"
#: The ``embedding`` column is vector(384): the dimension of the default model.
EMBEDDING_DIM = 384
WORKSPACE_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9_.:/@-]{0,99}|\*)$"
MAX_TAGS = 20
MAX_METADATA_BYTES = 8_192
SNIPPET = 160
#: How long a process trusts its check that no memory was embedded by another model.
OTHER_MODEL_CHECK_S = 10.0
#: A row still outside the HNSW graph this long after its store was left by a process that died
#: before its batch went out; the sweep indexes it.
UNINDEXED_GRACE_S = 30.0
#: Stores indexed in the background between two merges of the GIN pending lists (see _index).
PENDING_FLUSH_EVERY = 500
#: Most single stores waiting for their HNSW insert at once (see _store).
DEFER_MAX = 256
#: Bounds of one reembed_memories call and the texts embedded per transaction it writes.
REEMBED_MAX = 20_000
REEMBED_BATCH = 64


WorkspaceArg = Annotated[str | None, P("Default from settings.")]
Id = Annotated[uuid.UUID, P("Memory id.")]
Tags = Annotated[list[str] | None, P("Labels.", max_length=MAX_TAGS)]


class MemoryIn(BaseModel):
    """One memory of a batch."""

    model_config = ConfigDict(json_schema_extra=_strip_titles)

    content: str
    kind: str = "note"
    tags: list[str] = []
    importance: float = Field(default=0.5, ge=0, le=1)
    metadata: dict[str, Any] = {}


# ------------------------------------------------------------------------------------------- helpers


def _workspace(settings: Settings, workspace: str | None, *, allow_all: bool = False) -> str | None:
    if workspace is not None and not re.match(WORKSPACE_PATTERN, workspace):
        raise InvalidInput(
            f"workspace {workspace!r} is not valid: use up to 100 letters, digits and _.:/@- (starting with a letter "
            "or digit)."
        )
    if workspace == "*":
        if not allow_all:
            raise InvalidInput("workspace '*' (all workspaces) is only valid for recall and build_context.")
        return None
    return workspace or settings.default_workspace


def _content(settings: Settings, content: str) -> str:
    if not content.strip():
        raise InvalidInput("content is empty; give the fact, decision or observation to remember.")
    if len(content) > settings.max_content_chars:
        raise InvalidInput(
            f"content has {len(content)} characters; the limit is {settings.max_content_chars}. "
            "Split it into several memories (store_memories) or summarise it."
        )
    return content.strip()


def _tags(tags: Sequence[str] | None) -> list[str]:
    out = []
    for tag in tags or []:
        tag = tag.strip()
        if not 1 <= len(tag) <= 50:
            raise InvalidInput(f"tag {tag!r} must be 1 to 50 characters.")
        out.append(tag)
    if len(out) > MAX_TAGS:
        raise InvalidInput(f"{len(out)} tags given; at most {MAX_TAGS}.")
    return list(dict.fromkeys(out))


def _kind(kind: str) -> str:
    kind = kind.strip()
    if not 1 <= len(kind) <= 50:
        raise InvalidInput("kind must be 1 to 50 characters, e.g. note, decision, preference, fact.")
    return kind


def _metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    metadata = metadata or {}
    size = len(json.dumps(metadata, default=str))
    if size > MAX_METADATA_BYTES:
        raise InvalidInput(f"metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}.")
    return json.loads(json.dumps(metadata, default=str))  # type: ignore[no-any-return]


def _check_dim(d: Deps) -> None:
    from common.embeddings import require_dim

    require_dim(d.embedder, EMBEDDING_DIM, NAME)


async def _embed(d: Deps, texts: list[str]) -> list[np.ndarray]:
    _check_dim(d)
    return await d.embedder.embed(texts)


def _ref(row: dict[str, Any]) -> Ref:
    return Ref(id=row["id"], version=row["version"], state=row["state"], created=bool(row.get("created")))


async def _sweep_once(d: Deps, settings: Settings) -> int:
    """Hard-delete expired memories, a bounded number of batches per pass; index what a dead process left."""
    for _ in range(20):
        left = await store.unindexed(d.db, UNINDEXED_GRACE_S, settings.sweep_batch)
        await store.index_vectors(d.db, left)
        if len(left) < settings.sweep_batch:
            break
    removed = 0
    for _ in range(20):
        rows = await store.sweep_expired(d.db, settings.sweep_batch)
        removed += len(rows)
        if rows:
            await bridge.publish(d, "expired", [r["id"] for r in rows], [r["workspace"] for r in rows])
        if len(rows) < settings.sweep_batch:
            break
    if removed:
        log.info("memories_expired", removed=removed)
    return removed


async def _sweep_loop(d: Deps, settings: Settings) -> None:
    while True:
        await asyncio.sleep(settings.sweep_interval_s)
        try:
            await _sweep_once(d, settings)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next pass retries; a sweep must never stop the server
            log.warning("memory_sweep_failed", error=str(exc) or type(exc).__name__)


# ------------------------------------------------------------------------------------------- build


def build(settings: Settings) -> MCPServer[Deps]:
    """The memory server; its background work is the expiry sweep."""

    planner = keywords.KeywordPlanner("memories", scan_cap=settings.keyword_scan_cap)
    refreshers: dict[str, StatsRefresher] = {}
    #: The connection that puts stored vectors into the HNSW graph, at low CPU priority (while running).
    indexers: list[Database] = []
    flipped = [0]  # stores indexed since the GIN pending lists were last merged
    other_model_seen = [-OTHER_MODEL_CHECK_S - 1.0, 0.0]  # [checked at (monotonic), any other model?]

    @asynccontextmanager
    async def background(d: Deps) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(_sweep_loop(d, settings), name="memory-sweep")
        refresher = StatsRefresher(d.db, ["memories"])
        refresher.on_refresh(planner.forget_stats)
        refreshers["memories"] = refresher
        indexer = await d.db.open_background("indexer")
        indexers.append(indexer)
        try:
            yield
        finally:
            await d.background.drain()  # the vectors still waiting go in through the indexer
            indexers.remove(indexer)
            await indexer.close()
            await refresher.close()
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    server = create_server(
        NAME,
        settings,
        instructions=(
            "Long-term memory. Call recall (or build_context) before answering questions about past work, "
            "and store_memory for durable facts, decisions and preferences worth keeping."
        ),
        on_start=background,
    )

    # ----------------------------------------------------------------------------------- store

    async def _index(d: Deps, ids: list[str]) -> None:
        """Put deferred stores into the HNSW graph; now and then merge the GIN pending lists too."""
        db = indexers[0] if indexers else d.db
        await store.index_vectors(db, ids)
        flipped[0] += len(ids)
        if flipped[0] >= PENDING_FLUSH_EVERY:
            flipped[0] = 0
            await db.execute(store.FLUSH_PENDING)

    async def _store(d: Deps, items: list[store.NewMemory]) -> list[dict[str, Any]]:
        vectors = await _embed(d, [m.content for m in items])

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
                out.append(await store.insert(conn, item, vec, d.embedder.model_name))
            return out

        if len(items) == 1 and items[0].parent_id is None:  # one statement: atomic without BEGIN/COMMIT
            # Into the HNSW graph after the answer (migration 0004), unless stores come faster than
            # the graph takes them: past DEFER_MAX waiting rows a store pays its insert inline again,
            # so a steady stream of stores cannot pile up work (batches always pay it inline).
            indexing = d.background.batcher("memory-index", functools.partial(_index, d))
            defer = indexing.backlog < DEFER_MAX
            rows = [
                await d.db.run(
                    lambda conn: store.insert(conn, items[0], vectors[0], d.embedder.model_name, indexed=not defer)
                )
            ]
            if defer and rows[0]["created"]:
                indexing.add([rows[0]["id"]])
        else:
            rows = await d.db.run_in_transaction(write)
        created = [r["id"] for r in rows if r["created"]]
        if "memories" in refreshers:
            refreshers["memories"].wrote(len(created))
        await bridge.publish(d, "stored", created, sorted({i.workspace for i in items}))
        return rows

    async def store_memory(
        content: Annotated[str, P("Self-contained text.")],
        ctx: Context,
        workspace: WorkspaceArg = None,
        scope: Annotated[Scope, P("global: recalled in every workspace.")] = "project",
        parent_id: Annotated[uuid.UUID | None, P("Parent memory.")] = None,
        kind: Annotated[str, P("e.g. note, decision, preference.")] = "note",
        tags: Tags = None,
        metadata: Annotated[dict[str, Any] | None, P("JSON object.")] = None,
        importance: Annotated[float, P("Ranking boost.", ge=0, le=1)] = 0.5,
        ttl_seconds: Annotated[int | None, P("Expire after.", ge=1, le=10 * 365 * 86_400)] = None,
    ) -> Ref:
        """Remember a durable fact, decision or preference. Text already stored returns the existing memory
        (created=false)."""
        d = await deps(ctx)
        ws = _workspace(settings, workspace)
        assert ws is not None
        item = store.NewMemory(
            workspace=ws,
            scope=scope,
            parent_id=str(parent_id) if parent_id else None,
            kind=_kind(kind),
            content=_content(settings, content),
            tags=_tags(tags),
            metadata=_metadata(metadata),
            importance=importance,
            ttl_seconds=ttl_seconds,
        )
        return _ref((await _store(d, [item]))[0])

    async def store_memories(
        items: Annotated[list[MemoryIn], P("Memories to store.", min_length=1)],
        ctx: Context,
        workspace: WorkspaceArg = None,
        scope: Annotated[Scope, P("Scope of all items.")] = "project",
    ) -> Stored:
        """Store many memories in one call (embedded in batches, written in one transaction). Use for imports
        and end-of-task summaries."""
        d = await deps(ctx)
        if len(items) > settings.store_batch_max:
            raise InvalidInput(f"{len(items)} items given; at most {settings.store_batch_max} per call.")
        ws = _workspace(settings, workspace)
        assert ws is not None
        new = []
        for n, it in enumerate(items):
            try:
                new.append(
                    store.NewMemory(
                        workspace=ws,
                        scope=scope,
                        parent_id=None,
                        kind=_kind(it.kind),
                        content=_content(settings, it.content),
                        tags=_tags(it.tags),
                        metadata=_metadata(it.metadata),
                        importance=it.importance,
                        ttl_seconds=None,
                    )
                )
            except InvalidInput as exc:
                raise InvalidInput(f"items[{n}]: {exc} Nothing was stored.") from None
        rows = await _store(d, new)
        refs = [_ref(r) for r in rows]
        made = sum(r.created for r in refs)
        return Stored(items=refs, created=made, duplicates=len(refs) - made)

    # ----------------------------------------------------------------------------------- recall

    async def _recall(
        d: Deps,
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
        model = d.embedder.model_name

        hybrid = mode == "hybrid"

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
            return rows, await _other_models(conn, flt, model)

        # The keyword list needs no vector: it runs while the query is embedded, and the vector
        # list starts beside it (on its own connection) as soon as the vector is there.
        tasks: list[asyncio.Task[Any]] = []
        try:
            if mode in ("hybrid", "keyword"):
                tasks.append(asyncio.create_task(d.db.run(keyword_side)))
            vector = None
            if mode in ("hybrid", "semantic"):
                _check_dim(d)
                # hybrid: the keyword statement runs meanwhile, so the model takes one thread
                vector = await d.embedder.embed_one(query, beside_work=hybrid)
            if vector is not None:
                tasks.append(asyncio.create_task(d.db.run(functools.partial(semantic_side, vector=vector))))
            results = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            raise
        planner.learn_later(d.background, d.db)  # words met for the first time
        used_keywords, keyword_rows = results[0] if mode in ("hybrid", "keyword") else (False, [])
        semantic_rows, others = results[-1] if vector is not None else ([], {})
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

    async def _other_models(conn: asyncpg.Connection, flt: store.RecallFilter, model: str) -> dict[str, int]:
        """Counts of memories embedded by other models; the cheap existence check is cached briefly."""
        now = time.monotonic()
        if now - other_model_seen[0] > OTHER_MODEL_CHECK_S:
            other_model_seen[:] = [now, float(await store.any_other_model(conn, model))]
        return await store.other_models(conn, flt, model) if other_model_seen[1] else {}

    def _hit(s: ranking.Scored) -> Hit:
        r = s.row
        return Hit(
            id=r["id"],
            content=r["content"],
            kind=r["kind"],
            tags=r["tags"],
            workspace=r["workspace"],
            created_at=r["created_at"],
            score=round(s.score, 4),
            similarity=None if r["similarity"] is None else round(float(r["similarity"]), 4),
            keyword_rank=None if r["kw_score"] is None else round(float(r["kw_score"]), 4),
            recency=round(s.recency, 4),
            importance=round(float(r["importance"]), 3),
        )

    async def recall(
        query: Annotated[str, P("What to look for.", max_length=2000)],
        ctx: Context,
        mode: Annotated[Mode, P("Ranking.")] = "hybrid",
        workspace: Annotated[str | None, P("Workspace; '*' for all.")] = None,
        scope: Annotated[list[Scope] | None, P("Only these scopes.")] = None,
        tags: Annotated[list[str] | None, P("Has all these.", max_length=MAX_TAGS)] = None,
        kind: Annotated[str | None, P("Only this kind.")] = None,
        since: Annotated[datetime | None, P("Created at or after.")] = None,
        until: Annotated[datetime | None, P("Created before.")] = None,
        min_score: Annotated[float, P("Minimum fused score.", ge=0, le=2)] = 0.0,
        limit: Annotated[int, P("Most hits.", ge=1, le=50)] = 10,
        cursor: CursorArg = None,
    ) -> Recall:
        """Find memories relevant to a query, best first. Use before answering from past work."""
        d = await deps(ctx)
        flt = store.RecallFilter(
            workspace=_workspace(settings, workspace, allow_all=True),
            scopes=list(scope) if scope else None,
            tags=_tags(tags) or None,
            kind=kind,
            since=aware_utc(since),
            until=aware_utc(until),
        )
        fp = ranking.query_fingerprint([query, mode, flt.args(), min_score])
        try:
            offset = ranking.decode_cursor(cursor, fp) if cursor else 0
        except ValueError as exc:
            raise InvalidInput(f"cursor: {exc}; repeat the call without it.") from None
        depth = min(max(settings.recall_candidates, offset + limit + 1), 1_000)

        def page_of(scored: list[ranking.Scored]) -> list[str]:
            return [s.row["id"] for s in scored if s.score >= min_score][offset : offset + limit]

        scored, warning = await _recall(d, query, mode, flt, depth=depth, touch=page_of)
        scored = [s for s in scored if s.score >= min_score]
        page = scored[offset : offset + limit]
        more = len(scored) > offset + limit
        return Recall(
            hits=[_hit(s) for s in page],
            total=len(scored),
            truncated=more,
            next_cursor=ranking.encode_cursor(offset + limit, fp) if more else None,
            warning=warning,
        )

    async def build_context(
        query: Annotated[str, P("Task or question.", max_length=2000)],
        ctx: Context,
        workspace: Annotated[str | None, P("Workspace; '*' for all.")] = None,
        budget: Annotated[int | None, P("Tokens (~4 chars).", ge=50)] = None,
        tags: Annotated[list[str] | None, P("Has all these.", max_length=MAX_TAGS)] = None,
    ) -> ContextBlock:
        """The most relevant memories as one text block within a token budget, to prime a task."""
        d = await deps(ctx)
        budget = budget or settings.default_token_budget
        if budget > settings.max_token_budget:
            raise InvalidInput(f"budget {budget} is above the limit {settings.max_token_budget}.")
        flt = store.RecallFilter(
            _workspace(settings, workspace, allow_all=True), None, _tags(tags) or None, None, None, None
        )
        packed: list[tuple[list[str], list[str], int, int]] = []

        def pack(scored: list[ranking.Scored]) -> list[str]:
            blocks = [
                (s.row["id"], f"[{s.row['id']}] ({s.row['kind']}, {s.row['created_at']:%Y-%m-%d}) {s.row['content']}")
                for s in scored[:100]
            ]
            packed.append(ranking.pack(blocks, budget))
            return packed[-1][1]

        await _recall(d, query, "hybrid", flt, depth=settings.recall_candidates, touch=pack)
        texts, ids, used, omitted = packed[-1]
        return ContextBlock(text="\n".join(texts), ids=ids, tokens=used, budget=budget, omitted=omitted)

    # ----------------------------------------------------------------------------------- read / update

    async def _get(d: Deps, memory_id: str) -> dict[str, Any]:
        row = await store.get(d.db, memory_id)
        if row is None:
            raise NotFound(f"No memory {memory_id} (unknown, purged or expired). Use recall to find memories.")
        return row

    async def get_memory(
        id: Id,
        ctx: Context,
        children: Annotated[int, P("Children to list.", ge=0, le=50)] = 0,
    ) -> MemoryWithChildren:
        """Read one memory, optionally with its children."""
        d = await deps(ctx)
        row = await _get(d, str(id))
        kids: list[Node] = []
        total = 0
        if children:
            rows, total = await store.tree(d.db, str(id), None, 1, children + 1, SNIPPET)
            kids = [Node(**r) for r in rows if r["depth"] == 1]
            total -= 1
        return MemoryWithChildren(**row, children=kids, children_total=max(total, 0))

    async def update_memory(
        id: Id,
        ctx: Context,
        content: Annotated[str | None, P("New text (re-embedded).")] = None,
        tags: Annotated[list[str] | None, P("Replace the tags.", max_length=MAX_TAGS)] = None,
        metadata: Annotated[dict[str, Any] | None, P("Replace the metadata.")] = None,
        importance: Annotated[float | None, P("0..1.", ge=0, le=1)] = None,
        kind: Annotated[str | None, P("New kind.")] = None,
        ttl_seconds: Annotated[int | None, P("Expire after; 0: never.", ge=0)] = None,
        expected_version: Annotated[int | None, P("Fail unless this version.")] = None,
    ) -> Ref:
        """Correct a memory; the old version is kept in history."""
        d = await deps(ctx)
        new_content = _content(settings, content) if content is not None else None
        vector = (await _embed(d, [new_content]))[0] if new_content is not None else None
        new_tags = _tags(tags) if tags is not None else None
        new_meta = _metadata(metadata) if metadata is not None else None
        new_kind = _kind(kind) if kind is not None else None

        async def write(conn: asyncpg.Connection) -> dict[str, Any]:
            old = await store.get_for_update(conn, str(id))
            if old is None or old["state"] != "active":
                raise NotFound(f"No active memory {id}; restore_memory first if it was forgotten.")
            if expected_version is not None and old["version"] != expected_version:
                raise Conflict(
                    f"Memory {id} is at version {old['version']}, not {expected_version}; re-read and retry."
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
            raise Conflict(
                f"Another active memory in this workspace already has that text; forget {id} instead."
            ) from None
        await bridge.publish(d, "updated", [row["id"]], [])
        return _ref(row)

    # ----------------------------------------------------------------------------------- forget / restore / purge

    async def _apply(d: Deps, target: store.Target, limit: int, dry_run: bool, action: str) -> Count:
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

        rows = await d.db.run_in_transaction(run)
        if not dry_run:
            await bridge.publish(d, action, [r["id"] for r in rows], [r["workspace"] for r in rows])
        return Count(count=len(rows), ids=[r["id"] for r in rows[:20]], dry_run=dry_run)

    async def forget(
        ctx: Context,
        ids: Annotated[list[uuid.UUID] | None, P("Memory ids.", max_length=1000)] = None,
        workspace: WorkspaceArg = None,
        tags: Annotated[list[str] | None, P("With all these tags.", max_length=MAX_TAGS)] = None,
        kind: Annotated[str | None, P("Of this kind.")] = None,
        before: Annotated[datetime | None, P("Created before.")] = None,
        dry_run: Annotated[bool, P("false: archive.")] = True,
    ) -> Count:
        """Archive memories by id or filter (restorable). Only counts unless dry_run=false."""
        d = await deps(ctx)
        if not ids and workspace is None and not (tags or kind or before):
            raise InvalidInput("Give ids, or a workspace (optionally with tags/kind/before) to forget by filter.")
        target = store.Target(
            state="active",
            ids=[str(i) for i in ids] if ids else None,
            workspace=_workspace(settings, workspace) if not ids or workspace else None,
            tags=_tags(tags) or None,
            kind=kind,
            before=aware_utc(before),
        )
        return await _apply(d, target, 10_000, dry_run, "forgotten")

    async def restore_memory(id: Id, ctx: Context) -> Ref:
        """Bring back a forgotten (archived) memory."""
        d = await deps(ctx)

        async def run(conn: asyncpg.Connection) -> dict[str, Any] | None:
            return await store.restore(conn, str(id))

        try:
            row = await d.db.run_in_transaction(run)
        except store.unique_violation():
            raise Conflict(
                f"An active memory with the same text exists in the workspace; {id} stays archived."
            ) from None
        if row is None:
            current = await store.get(d.db, str(id))
            if current is not None and current["state"] == "active":
                return Ref(id=current["id"], version=current["version"], state="active", created=False)
            raise NotFound(f"No archived memory {id} (unknown, purged or expired).")
        await bridge.publish(d, "restored", [row["id"]], [row["workspace"]])
        return _ref(row)

    async def purge_memories(
        ctx: Context,
        ids: Annotated[list[uuid.UUID] | None, P("Archived memories to delete.", max_length=1000)] = None,
        workspace: WorkspaceArg = None,
        archived_before: Annotated[datetime | None, P("Archived before.")] = None,
        dry_run: Annotated[bool, P("Only count (default); false deletes for good.")] = True,
        limit: Annotated[int, P("Most to delete per call.", ge=1, le=10_000)] = 1_000,
    ) -> Count:
        """Permanently delete archived memories (by id or workspace). Cannot be undone; counts only unless
        dry_run=false."""
        d = await deps(ctx)
        target = store.Target(
            state="archived",
            ids=[str(i) for i in ids] if ids else None,
            workspace=_workspace(settings, workspace) if not ids or workspace else None,
            archived_before=aware_utc(archived_before),
        )
        return await _apply(d, target, limit, dry_run, "purged")

    # ----------------------------------------------------------------------------------- tree

    async def memory_tree(
        ctx: Context,
        workspace: WorkspaceArg = None,
        root_id: Annotated[uuid.UUID | None, P("Subtree of this memory instead of the workspace.")] = None,
        depth: Annotated[int, P("Levels below the roots.", ge=0, le=5)] = 3,
        limit: Annotated[int, P("Most nodes.", ge=1, le=500)] = 100,
    ) -> Tree:
        """The parent/child outline of a workspace or of one memory, depth first."""
        d = await deps(ctx)
        if root_id is not None:
            await _get(d, str(root_id))
        ws = None if root_id is not None else _workspace(settings, workspace)
        rows, total = await store.tree(d.db, str(root_id) if root_id else None, ws, depth, limit, SNIPPET)
        return Tree(nodes=[Node(**r) for r in rows], total=total, truncated=total > len(rows))

    async def move_memory(
        id: Id,
        ctx: Context,
        parent_id: Annotated[uuid.UUID | None, P("New parent; omit to make it a root.")] = None,
    ) -> Ref:
        """Put a memory under another parent in its workspace (or make it a root). Refuses cycles."""
        d = await deps(ctx)
        node, parent = str(id), str(parent_id) if parent_id else None

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

        row = await d.db.run_in_transaction(run)
        await bridge.publish(d, "moved", [row["id"]], [])
        return _ref(row)

    async def rate_memory(
        id: Id,
        ctx: Context,
        useful: Annotated[bool, P("true if it helped, false if not.")],
    ) -> Ref:
        """Tell the ranking whether a recalled memory helped; useful ones rank higher later."""
        d = await deps(ctx)
        row = await store.rate(d.db, str(id), useful)
        if row is None:
            raise NotFound(f"No active memory {id}.")
        return _ref(row)

    # ----------------------------------------------------------------------------------- consolidate

    async def consolidate(
        ctx: Context,
        workspace: WorkspaceArg = None,
        threshold: Annotated[float | None, P("Cosine similarity for near-duplicates.", ge=0.5, le=1)] = None,
        merge: Annotated[bool, P("false previews (default); true merges, keeping history.")] = False,
        limit: Annotated[int, P("Most groups.", ge=1, le=100)] = 20,
    ) -> Consolidation:
        """Find near-duplicate memories in a workspace and, with merge=true, fold each group into its best member
        (others archived, history kept)."""
        d = await deps(ctx)
        _check_dim(d)
        ws = _workspace(settings, workspace)
        assert ws is not None
        cut = threshold if threshold is not None else settings.consolidate_threshold
        pairs = await store.near_duplicates(d.db, ws, cut, settings.consolidate_scan_max, d.embedder.model_name)
        groups = ranking.group_pairs(pairs)
        truncated = len(groups) > limit
        groups = groups[:limit]
        out: list[Group] = []
        merged = 0
        for members, sim in groups:

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

    # ----------------------------------------------------------------------------------- workspaces

    async def list_workspaces(
        ctx: Context,
        limit: Annotated[int, P("Most workspaces.", ge=1, le=200)] = 50,
        cursor: CursorArg = None,
    ) -> Workspaces:
        """The workspaces that hold memories, with active and archived counts."""
        d = await deps(ctx)
        rows, total = await store.workspaces(d.db, cursor, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return Workspaces(
            workspaces=[Workspace(**r) for r in rows],
            total=total,
            truncated=more,
            next_cursor=rows[-1]["name"] if more else None,
        )

    async def workspace_stats(ctx: Context, workspace: WorkspaceArg = None) -> Stats:
        """Counts of one workspace by state, scope, kind, tag and embedding model."""
        d = await deps(ctx)
        ws = _workspace(settings, workspace)
        assert ws is not None
        head, groups = await store.stats(d.db, ws)
        by: dict[str, dict[str, int]] = {"scope": {}, "kind": {}, "tag": {}, "model": {}}
        for g in groups:
            by[g["g"]][g["k"]] = int(g["n"])
        return Stats(
            workspace=ws,
            active=head["active"],
            archived=head["archived"],
            expiring=head["expiring"],
            by_scope=by["scope"],
            by_kind=by["kind"],
            top_tags=by["tag"],
            models=by["model"],
            oldest=head["oldest"],
            newest=head["newest"],
        )

    # ----------------------------------------------------------------------------------- re-embed

    async def reembed_memories(
        ctx: Context,
        workspace: Annotated[str | None, P("Workspace; '*' or unset for all.")] = None,
        dry_run: Annotated[bool, P("Only count.")] = True,
        max_items: Annotated[int, P("Most memories this call.", ge=1, le=REEMBED_MAX)] = 2_000,
    ) -> Reembedded:
        """After EMBEDDING_MODEL changed: embed memories that another model embedded with the current one, so
        semantic recall finds them again. Counts first (dry_run); call again while remaining > 0."""
        d = await deps(ctx)
        ws = _workspace(settings, workspace or "*", allow_all=True)
        model = d.embedder.model_name
        stale = await store.count_stale_vectors(d.db, model, ws)
        total = sum(stale.values())
        if dry_run or not total:
            return Reembedded(dry_run=dry_run, model=model, stale=stale, reembedded=0, skipped=0, remaining=total)
        _check_dim(d)
        done = skipped = 0
        rows = await store.stale_vectors(d.db, model, ws, max_items)
        for start in range(0, len(rows), REEMBED_BATCH):
            batch = rows[start : start + REEMBED_BATCH]
            vectors = await _embed(d, [r["content"] for r in batch])
            updates = [(r["id"], v, model, r["version"]) for r, v in zip(batch, vectors, strict=True)]
            # One transaction per batch: a stopped call keeps every finished batch, none half-written.
            written = await d.db.run_in_transaction(functools.partial(store.set_vectors, rows=updates))
            done += written
            skipped += len(batch) - written
            await ctx.report_progress(start + len(batch), len(rows), f"{start + len(batch)} of {len(rows)} re-embedded")
            await bridge.publish(d, "reembedded", [r["id"] for r in batch], [])
        other_model_seen[0] = -OTHER_MODEL_CHECK_S - 1.0  # the next recall checks again
        return Reembedded(
            dry_run=False,
            model=model,
            stale=stale,
            reembedded=done,
            skipped=skipped,
            remaining=max(total - done - skipped, 0),
        )

    # ----------------------------------------------------------------------------------- import

    async def import_qdrant(
        collection: Annotated[str, P("Collection name.", min_length=1, max_length=255)],
        ctx: Context,
        qdrant_path: Annotated[str | None, P("Local folder of mcp-server-qdrant.")] = None,
        qdrant_url: Annotated[str | None, P("Qdrant URL.")] = None,
        workspace: WorkspaceArg = None,
        kind: Annotated[str, P("Kind given to imported memories.")] = "note",
    ) -> Imported:
        """Copy the memories of an mcp-server-qdrant collection into a workspace, re-embedded with this server's
        model. Re-running it skips what was imported before."""
        from servers.memory_management.qdrant_import import read_documents

        d = await deps(ctx)
        ws = _workspace(settings, workspace)
        assert ws is not None
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        read = created = duplicates = skipped = 0
        async for page in read_documents(
            path=qdrant_path, url=qdrant_url, api_key=key, collection=collection, limit=settings.import_max
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
                        kind=_kind(kind),
                        content=doc.text.strip(),
                        tags=["imported"],
                        metadata={"source": f"qdrant:{collection}", **doc.metadata},
                        importance=0.5,
                        ttl_seconds=None,
                    )
                )
            if items:
                rows = await _store(d, items)
                made = sum(1 for r in rows if r["created"])
                created += made
                duplicates += len(rows) - made
            await ctx.report_progress(read, None, f"{read} points read")
        return Imported(read=read, created=created, duplicates=duplicates, skipped=skipped)

    # ----------------------------------------------------------------------------------- registration

    register = tool_registrar(server, settings)

    register(store_memory, "Store memory", WRITE)
    register(store_memories, "Store memories", WRITE)
    register(recall, "Recall memories", READ)
    register(build_context, "Build context", READ)
    register(get_memory, "Get memory", READ)
    register(update_memory, "Update memory", APPEND)
    register(forget, "Forget memories", WRITE)
    register(restore_memory, "Restore memory", WRITE)
    register(purge_memories, "Purge memories", DELETE)
    register(memory_tree, "Memory tree", READ)
    register(move_memory, "Move memory", WRITE)
    register(rate_memory, "Rate memory", APPEND)
    register(consolidate, "Consolidate memories", APPEND)
    register(list_workspaces, "List workspaces", READ)
    register(workspace_stats, "Workspace stats", READ)
    register(import_qdrant, "Import from Qdrant", EXTERNAL)
    register(reembed_memories, "Re-embed memories", WRITE)
    # The field names are advertised, their nesting is documented in the README: clients check
    # every result against the output schema, and ten full recall hits cost ~0.5 ms to check.
    outline_outputs(server)

    # ----------------------------------------------------------------------------------- resources and prompt

    @server.resource(bridge.WORKSPACES_URI, name="workspaces", mime_type="application/json")
    async def workspaces_resource() -> str:
        """Every workspace with its counts."""
        d = await server_deps(server)
        rows, total = await store.workspaces(d.db, None, 1_000)
        return json.dumps({"workspaces": rows, "total": total}, default=str)

    @server.resource("memory://memories/{memory_id}", name="memory", mime_type="application/json")
    async def memory_resource(memory_id: str, ctx: Context) -> str:
        """One memory."""
        try:
            uuid.UUID(memory_id)
        except ValueError:
            raise NotFound(f"{memory_id!r} is not a memory id.") from None
        row = await _get(await deps(ctx), memory_id)
        return Memory(**row).model_dump_json()

    @server.prompt(name="recall_then_answer", title="Recall, then answer")
    def recall_then_answer(question: str, workspace: str = "") -> str:
        """Answer with the help of long-term memory, then remember what was learned."""
        where = f' with workspace "{workspace}"' if workspace else ""
        return (
            f"Before answering, call recall{where} with the question in your own words (try a second phrasing "
            "if the first finds nothing useful). Base the answer on the memories found and cite their ids; say "
            "so when memory has nothing relevant. Call rate_memory on memories that helped or misled. Afterwards, "
            "store_memory any durable fact, decision or preference learned here (one self-contained statement "
            f"each), and update_memory any memory that turned out wrong.\n\nQuestion: {question}"
        )

    return server
