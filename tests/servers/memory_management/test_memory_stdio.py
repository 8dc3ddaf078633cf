"""The memory server as real stdio processes: concurrency across processes, cross-process resource
notifications, and recall quality with the default embedding model."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from mcp import Client

from common.testing import call_ok as call
from common.testing import server_params as spawn_params
from tests.servers.memory_management import corpus

pytestmark = pytest.mark.anyio

PROCESSES = 4


def server_params(database_url: str, redis_url: str, redis_prefix: str, data_dir: Path, **env: str) -> Any:
    """This server over stdio with every tool exposed."""
    return spawn_params(
        "memory_management", database_url, redis_url, redis_prefix, data_dir, MEMORY_MANAGEMENT_TOOLS="all", **env
    )


async def test_four_processes_storing_and_updating_at_once_lose_nothing_and_duplicate_nothing(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    params = server_params(database_url, redis_url, redis_prefix, tmp_path, EMBEDDING_MODEL="hash-384")
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(params, read_timeout_seconds=120)) for _ in range(PROCESSES)]
        shared = await call(clients[0], "store_memory", {"content": "shared counter memory"})
        updates = 10

        async def worker(n: int, client: Client) -> None:
            for i in range(25):
                await call(client, "store_memory", {"content": f"process {n} fact {i}"})
                # The same ten texts from every process at once: each must exist exactly once.
                if i < 10:
                    await call(client, "store_memory", {"content": f"common fact {i}", "tags": [f"p{n}"]})
                if i < updates:
                    await call(client, "update_memory", {"id": shared["id"], "metadata": {"by": n, "i": i}})

        async with anyio.create_task_group() as tg:
            for n, client in enumerate(clients):
                tg.start_soon(worker, n, client)

    conn = await asyncpg.connect(database_url)
    try:
        total = await conn.fetchval("SELECT count(*) FROM memory_management.memories")
        distinct = await conn.fetchval("SELECT count(DISTINCT content_hash) FROM memory_management.memories")
        version = await conn.fetchval("SELECT version FROM memory_management.memories WHERE id = $1", shared["id"])
        history = await conn.fetchval("SELECT count(*) FROM memory_management.memory_history")
        tags = await conn.fetchval(
            "SELECT array_agg(DISTINCT t ORDER BY t) FROM memory_management.memories, unnest(tags) t "
            "WHERE content = 'common fact 0'"
        )
    finally:
        await conn.close()
    assert total == distinct == 1 + PROCESSES * 25 + 10
    assert version == 1 + PROCESSES * updates
    assert history == PROCESSES * updates
    assert tags == [f"p{n}" for n in range(PROCESSES)]


async def test_a_client_listening_on_one_process_hears_a_change_made_through_another(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    params = server_params(database_url, redis_url, redis_prefix, tmp_path, EMBEDDING_MODEL="hash-384")
    async with Client(params, read_timeout_seconds=120) as a, Client(params, read_timeout_seconds=120) as b:
        memory = await call(a, "store_memory", {"content": "watched memory"})
        uri = f"memory://memories/{memory['id']}"
        async with a.listen(resource_subscriptions=[uri]) as sub:
            await call(b, "update_memory", {"id": memory["id"], "content": "watched memory, changed"})
            with anyio.fail_after(15):
                async for event in sub:
                    if getattr(event, "uri", None) == uri:
                        break
        again = await a.read_resource(uri)
        assert "changed" in again.contents[0].text  # type: ignore[union-attr]


async def test_recall_at_5_over_stdio_with_the_default_model_and_hybrid_beats_semantic_only(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    facts = corpus.facts()
    questions = corpus.queries()
    assert len(facts) >= 300
    assert len(questions) >= 50
    params = server_params(database_url, redis_url, redis_prefix, tmp_path)
    async with Client(params, read_timeout_seconds=300) as client:
        ids: dict[str, str] = {}
        for start in range(0, len(facts), 100):
            batch = facts[start : start + 100]
            out = await call(
                client, "store_memories", {"items": [{"content": f.text} for f in batch], "workspace": "q"}
            )
            assert out["created"] == len(batch)
            ids.update({item["id"]: f.key for item, f in zip(out["items"], batch, strict=True)})

        async def recall_at_5(mode: str) -> float:
            found = 0
            for q in questions:
                hits = await call(client, "recall", {"query": q.text, "workspace": "q", "mode": mode, "limit": 5})
                found += any(ids[h["id"]] == q.target for h in hits["hits"])
            return found / len(questions)

        hybrid = await recall_at_5("hybrid")
        semantic = await recall_at_5("semantic")
    assert hybrid >= 0.9, f"recall@5 hybrid={hybrid:.3f}"
    assert hybrid >= semantic, f"recall@5 hybrid={hybrid:.3f} semantic={semantic:.3f}"
