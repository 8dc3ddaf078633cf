"""MemoryService without MCP: its operations, its background work and the concurrency of recall."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from common.errors import Conflict, DimensionMismatch, InvalidInput, NotFound
from common.runtime import resolve_admin_url
from common.testing import gin_pending_tuples, wait_until
from servers.memory_management.models import MemoryIn
from servers.memory_management.service import MemoryService, Tuning
from servers.memory_management.settings import Settings
from tests.servers.memory_management.conftest import OpenMemory
from tests.servers.memory_management.sql import count_rows, execute

pytestmark = pytest.mark.anyio


class HeldEmbedder:
    """The hash embedder, except that embedding a query waits until the test releases it (or fails)."""

    def __init__(self, inner: Any, *, fail: BaseException | None = None) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.fail = fail
        self.release = asyncio.Event()
        self.holding = False
        self.beside_work: bool | None = None

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    @property
    def loaded(self) -> bool:
        return True

    async def embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        return list(await self.inner.embed(texts))

    async def embed_one(self, text: str, *, beside_work: bool = False) -> np.ndarray:
        self.beside_work = beside_work
        self.holding = True
        if self.fail is not None:
            raise self.fail
        await self.release.wait()
        vector: np.ndarray = await self.inner.embed_one(text)
        return vector


async def test_storing_the_same_text_again_returns_the_first_memory_with_both_tags(memory: MemoryService) -> None:
    first = await memory.store_one("The deploy window is Tuesday.", tags=["ops"])
    again = await memory.store_one("the  deploy window is TUESDAY.", tags=["x"])
    assert (first.created, again.created, again.id) == (True, False, first.id)
    got = await memory.get(uuid.UUID(first.id))
    assert got.tags == ["ops", "x"]
    assert got.content == "The deploy window is Tuesday."


async def test_a_batch_with_one_bad_item_names_it_and_stores_nothing(memory: MemoryService, settings: Settings) -> None:
    with pytest.raises(InvalidInput, match=r"items\[1\]: content is empty"):
        await memory.store_many([MemoryIn(content="fine"), MemoryIn(content="  ")], workspace="batch")
    assert await count_rows(settings) == 0
    out = await memory.store_many([MemoryIn(content=f"fact {i}") for i in range(3)] + [MemoryIn(content="fact 1")])
    assert (out.created, out.duplicates) == (3, 1)


async def test_recall_pages_with_a_cursor_that_only_the_same_query_accepts(memory: MemoryService) -> None:
    for i in range(5):
        await memory.store_one(f"the billing queue runs job {i}")
    first = await memory.recall("billing queue", mode="keyword", limit=2)
    assert (first.total, first.truncated, len(first.hits)) == (5, True, 2)
    assert first.next_cursor is not None
    second = await memory.recall("billing queue", mode="keyword", limit=2, cursor=first.next_cursor)
    assert not {h.id for h in first.hits} & {h.id for h in second.hits}
    last = await memory.recall("billing queue", mode="keyword", limit=2, cursor=second.next_cursor)
    assert (len(last.hits), last.truncated, last.next_cursor) == (1, False, None)
    with pytest.raises(InvalidInput, match="cursor"):
        await memory.recall("billing", mode="keyword", limit=2, cursor=first.next_cursor)
    with pytest.raises(InvalidInput, match="cursor"):
        await memory.recall("billing queue", mode="semantic", limit=2, cursor=first.next_cursor)
    with pytest.raises(InvalidInput, match="cursor"):
        await memory.recall("billing queue", mode="keyword", limit=2, cursor="b2Zmc2V0OjI")


async def test_hybrid_recall_runs_the_keyword_statement_while_the_query_is_embedded(
    open_memory: OpenMemory, fake_embedder: Any
) -> None:
    held = HeldEmbedder(fake_embedder)
    async with open_memory(embedder=held) as svc:
        await svc.store_many([MemoryIn(content="the deploy window is Tuesday"), MemoryIn(content="lunch at noon")])
        before = svc.deps.db.metrics().acquires
        recall = asyncio.create_task(svc.recall("deploy window"))
        await wait_until(lambda: held.holding, what="the query to be embedded")
        # The vector does not exist yet, so this connection can only be the keyword statement's.
        await wait_until(lambda: svc.deps.db.metrics().acquires > before, what="the keyword statement to start")
        held.release.set()
        found = await recall
    assert held.beside_work is True
    assert found.hits[0].content == "the deploy window is Tuesday"
    assert found.hits[0].keyword_rank is not None
    assert found.hits[0].similarity is not None


async def test_a_failing_embedder_fails_recall_with_its_own_error(open_memory: OpenMemory, fake_embedder: Any) -> None:
    held = HeldEmbedder(fake_embedder, fail=InvalidInput("the model is gone"))
    async with open_memory(embedder=held) as svc:
        with pytest.raises(InvalidInput, match="the model is gone"):
            await svc.recall("deploy window")
        # Keyword recall needs no vector and still works.
        assert (await svc.recall("deploy window", mode="keyword")).total == 0


async def test_expired_memories_are_never_recalled_and_the_sweep_deletes_them(
    open_memory: OpenMemory, make_settings: Any
) -> None:
    settings: Settings = make_settings(Settings, embedding_model="hash-384", sweep_interval_s=0.05)
    async with open_memory(settings) as svc:
        short = await svc.store_one("short lived secret", ttl_seconds=1)
        await svc.store_one("long lived secret")
        # Expire it now rather than waiting: recall must hide it even before the sweep runs.
        await execute(
            settings,
            "UPDATE memory_management.memories SET expires_at = now() - interval '1 second' WHERE id = $1",
            short.id,
        )
        hits = await svc.recall("secret", mode="keyword")
        assert [h.content for h in hits.hits] == ["long lived secret"]
        with pytest.raises(NotFound, match="No memory"):
            await svc.get(uuid.UUID(short.id))
        runs = svc.sweeper.runs
        await wait_until(lambda: svc.sweeper.runs >= runs + 2, what="a full sweep pass after the expiry")
        assert svc.sweeper.failures == 0
        assert await count_rows(settings) == 1


async def test_a_stored_memory_is_found_before_and_after_it_enters_the_vector_index(
    open_memory: OpenMemory, settings: Settings
) -> None:
    async with open_memory(tuning=Tuning(unindexed_grace_s=0.0)) as svc:
        first = await svc.store_one("The cache warms up at dawn.")
        await svc.store_many([MemoryIn(content=f"filler {i}") for i in range(30)])
        await wait_until(lambda: svc.indexing.backlog == 0, what="the deferred store to be indexed")
        # As if the process had died before its indexing batch went out.
        await execute(settings, "UPDATE memory_management.memories SET indexed = false WHERE id = $1", first.id)
        found = await svc.recall("The cache warms up at dawn.", mode="semantic", limit=1)
        assert found.hits[0].id == first.id  # the exact pass over unindexed rows
        assert found.hits[0].similarity == pytest.approx(1.0, abs=1e-3)
        assert await svc.sweep_once() == 0  # nothing expired, but the row goes into the graph
        assert await count_rows(settings, "NOT indexed") == 0
        again = await svc.recall("The cache warms up at dawn.", mode="semantic", limit=1)
        assert again.hits[0].id == first.id
        await svc.store_one("A second single store.")
    # Closing the service drained the indexing batch of the last store.
    assert await count_rows(settings, "NOT indexed") == 0
    assert await count_rows(settings) == 32


async def test_stores_pay_the_vector_index_inline_once_the_deferred_backlog_is_full(
    open_memory: OpenMemory, settings: Settings
) -> None:
    async with open_memory(tuning=Tuning(defer_max=0)) as svc:  # as if the backlog were full
        await svc.store_one("Inline into the graph.")
        # Checked before the 250 ms batch could have run: nothing was left for it.
        assert svc.indexing.backlog == 0
        assert await count_rows(settings, "NOT indexed") == 0
        assert await count_rows(settings, "indexed") == 1


async def test_the_background_indexer_merges_the_text_indexes_pending_entries(
    open_memory: OpenMemory, settings: Settings
) -> None:
    admin = resolve_admin_url(settings)
    async with open_memory(tuning=Tuning(pending_flush_every=2)) as svc:
        await svc.store_one("a first note that waits in the pending list")
        await wait_until(lambda: svc.indexing.flushes == 1 and svc.indexing.backlog == 0, what="the first batch")
        # Below pending_flush_every nothing is merged: the row's words wait in the pending list.
        assert await gin_pending_tuples(admin, "memory_management.memories_tsv_idx") > 0
        await svc.store_one("a second note; now two stores were indexed")
        await wait_until(lambda: svc.indexing.flushes == 2 and svc.indexing.backlog == 0, what="the second batch")
        assert await gin_pending_tuples(admin, "memory_management.memories_tsv_idx") == 0
        assert await gin_pending_tuples(admin, "memory_management.memories_tags_idx") == 0
        hits = await svc.recall("pending", mode="keyword")
        assert [h.content for h in hits.hits] == ["a first note that waits in the pending list"]


async def test_workspaces_page_by_name_and_refuse_a_cursor_of_another_call(memory: MemoryService) -> None:
    for ws in ("alpha", "beta", "gamma"):
        await memory.store_one(f"a note in {ws}", workspace=ws)
    first = await memory.workspaces(limit=2)
    assert [w.name for w in first.workspaces] == ["alpha", "beta"]
    assert (first.total, first.truncated) == (3, True)
    second = await memory.workspaces(limit=2, cursor=first.next_cursor)
    assert [w.name for w in second.workspaces] == ["gamma"]
    assert (second.truncated, second.next_cursor) == (False, None)
    recall_cursor = (await memory.recall("note", mode="keyword", workspace="*", limit=1)).next_cursor
    with pytest.raises(InvalidInput, match="cursor"):
        await memory.workspaces(limit=2, cursor=recall_cursor)
    listing = await memory.workspace_listing()
    assert '"total": 3' in listing


async def test_update_refuses_a_stale_version_and_a_text_another_memory_has(memory: MemoryService) -> None:
    m = await memory.store_one("The API key rotates monthly.")
    other = await memory.store_one("Backups run nightly.")
    up = await memory.update(uuid.UUID(m.id), content="The API key rotates weekly.", expected_version=1)
    assert up.version == 2
    with pytest.raises(Conflict, match="version 2"):
        await memory.update(uuid.UUID(m.id), importance=1, expected_version=1)
    with pytest.raises(Conflict, match=f"Memory {m.id} already has that text") as refused:
        await memory.update(uuid.UUID(other.id), content="The API key rotates weekly.")
    assert f"forget {other.id} instead" in str(refused.value)
    with pytest.raises(NotFound):
        await memory.update(uuid.uuid4(), content="x")


async def test_forget_restore_and_purge_by_filter(memory: MemoryService, settings: Settings) -> None:
    ids = [uuid.UUID((await memory.store_one(f"temp note {i}", tags=["tmp"])).id) for i in range(3)]
    await memory.store_one("permanent note")
    with pytest.raises(InvalidInput, match="Give ids"):
        await memory.forget()
    assert (await memory.forget(workspace="default", tags=["tmp"])).count == 3
    assert await count_rows(settings, "state = 'archived'") == 0  # a dry run changes nothing
    assert (await memory.forget(workspace="default", tags=["tmp"], dry_run=False)).count == 3
    assert (await memory.restore(ids[0])).state == "active"
    assert (await memory.purge(dry_run=False)).count == 2
    with pytest.raises(NotFound, match="No archived memory"):
        await memory.restore(ids[1])
    assert await count_rows(settings) == 2


async def test_move_refuses_cycles_and_a_parent_in_another_workspace(memory: MemoryService) -> None:
    root = await memory.store_one("Project Atlas")
    a = await memory.store_one("Atlas backend", parent_id=uuid.UUID(root.id))
    b = await memory.store_one("Atlas database", parent_id=uuid.UUID(a.id))
    with pytest.raises(InvalidInput, match="cycle"):
        await memory.move(uuid.UUID(root.id), uuid.UUID(b.id))
    elsewhere = await memory.store_one("elsewhere", workspace="w2")
    with pytest.raises(InvalidInput, match="workspace"):
        await memory.move(uuid.UUID(a.id), uuid.UUID(elsewhere.id))
    assert (await memory.move(uuid.UUID(b.id), uuid.UUID(root.id))).version == 2
    tree = await memory.tree()
    assert {(n.id, n.depth) for n in tree.nodes} == {(root.id, 0), (a.id, 1), (b.id, 1)}


async def test_reembed_reports_progress_after_each_batch(memory: MemoryService, settings: Settings) -> None:
    await memory.store_many([MemoryIn(content=f"alpha fact {i}") for i in range(70)], workspace="a")
    await execute(settings, "UPDATE memory_management.memories SET embedding_model = 'old-model', embedding = NULL")
    reports: list[tuple[float, float | None, str]] = []

    async def progress(done: float, total: float | None, message: str) -> None:
        reports.append((done, total, message))

    out = await memory.reembed(workspace="a", dry_run=False, progress=progress)
    assert (out.stale, out.reembedded, out.remaining) == ({"old-model": 70}, 70, 0)
    assert reports == [(64, 70, "64 of 70 re-embedded"), (70, 70, "70 of 70 re-embedded")]


async def test_the_memory_resource_refuses_what_is_not_a_memory_id(memory: MemoryService) -> None:
    with pytest.raises(NotFound, match="not a memory id"):
        await memory.memory("../etc/passwd")
    with pytest.raises(NotFound, match="No memory"):
        await memory.memory(str(uuid.uuid4()))
    m = await memory.store_one("resource check")
    assert (await memory.memory(m.id)).content == "resource check"


async def test_an_embedder_of_another_dimension_is_refused_before_anything_is_written(
    open_memory: OpenMemory, settings: Settings
) -> None:
    from common.embeddings import HashEmbedder

    async with open_memory(embedder=HashEmbedder(128)) as svc:
        with pytest.raises(DimensionMismatch, match="384-dimensional"):
            await svc.store_one("a memory")
        with pytest.raises(DimensionMismatch):
            await svc.recall("a memory", mode="semantic")
        assert (await svc.recall("a memory", mode="keyword")).total == 0
    assert await count_rows(settings) == 0


async def test_consolidate_previews_then_merges_near_duplicates(open_memory: OpenMemory, embedder: Any) -> None:
    async with open_memory(embedder=embedder) as svc:  # the real model: near-duplicate means similar meaning
        a = await svc.store_one("The staging database password rotates every 30 days.", tags=["a"])
        b = await svc.store_one("The staging database password is rotated every 30 days.", tags=["b"], importance=0.9)
        await svc.store_one("Our office plants are watered on Mondays.")
        preview = await svc.consolidate(threshold=0.9)
        assert (preview.merged, [(g.keeper, g.duplicates) for g in preview.groups]) == (0, [(b.id, [a.id])])
        assert (await svc.consolidate(threshold=0.9, merge=True)).merged == 1
        assert (await svc.get(uuid.UUID(b.id))).tags == ["a", "b"]
        assert (await svc.get(uuid.UUID(a.id))).state == "archived"
        assert (await svc.consolidate(threshold=0.9)).groups == []
