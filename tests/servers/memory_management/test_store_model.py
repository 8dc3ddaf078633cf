"""One embedding model per store: processes configured with another model follow the store's (or
refuse), and ``mcp-suite reembed`` switches the store once, resumably, after which every process follows.

The second "model" is the hash embedder's variant ``hash-384:b``: same dimension, different vectors
for the same words, so a search that mixed the two models would find nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from common.embeddings import HashEmbedder, store_model
from common.embeddings.store_model import StoreEmbedder
from common.errors import Conflict
from common.testing import call_ok as call
from common.testing import server_env, wait_until
from servers.memory_management.models import MemoryIn
from servers.memory_management.service import NAME, MemoryService
from servers.memory_management.settings import Settings
from tests.servers.memory_management.conftest import OpenMemory
from tests.servers.memory_management.test_memory_stdio import server_params

pytestmark = pytest.mark.anyio

FACTS = [
    "The deploy window is Tuesday afternoon.",
    "Backups run nightly at two.",
    "The staging database is read only on Fridays.",
    "Release notes go to the changelog channel.",
    "The on-call rotation changes every Monday.",
]


def _other(make_settings: Callable[..., Any], **extra: Any) -> Settings:
    s: Settings = make_settings(Settings, embedding_model="hash-384:b", tools=["all"], **extra)
    return s


def _store_embedder(svc: MemoryService) -> StoreEmbedder:
    embedder = svc.deps.embedder
    assert isinstance(embedder, StoreEmbedder)
    return embedder


async def _fill(svc: MemoryService) -> None:
    await svc.store_many([MemoryIn(content=text) for text in FACTS])


async def test_the_first_process_records_its_model_and_one_with_another_model_recalls_with_it(
    open_memory: OpenMemory, make_settings: Callable[..., Any]
) -> None:
    async with open_memory() as first:
        await _fill(first)
        assert await store_model.read(first.deps.db, NAME) == store_model.StoreModel("hash-384")
        async with open_memory(_other(make_settings)) as second:
            assert second.deps.embedder.model_name == "hash-384"
            found = await second.recall("deploy window Tuesday", mode="semantic")
            assert found.hits[0].content == FACTS[0]
            assert found.warning is None
            await second.store_one("A fact the second process wrote.")
        stats = await first.stats()
        assert stats.models == {"hash-384": len(FACTS) + 1}


async def test_with_the_refuse_policy_a_process_of_another_model_is_told_both_models_and_the_switch_command(
    open_memory: OpenMemory, make_settings: Callable[..., Any]
) -> None:
    async with open_memory() as first:
        await _fill(first)
    async with open_memory(_other(make_settings, embedding_model_policy="refuse")) as refusing:
        with pytest.raises(Conflict) as err:
            await refusing.recall("deploy window", mode="semantic")
        message = str(err.value)
        assert "'hash-384'" in message
        assert "'hash-384:b'" in message
        assert "mcp-suite reembed memory_management --model hash-384:b" in message
        with pytest.raises(Conflict):
            await refusing.store_one("nothing is written with the wrong model")
        keyword = await refusing.recall("deploy window", mode="keyword")  # needs no vector
        assert keyword.hits[0].content == FACTS[0]
        assert (await refusing.stats()).models == {"hash-384": len(FACTS)}


async def test_after_a_switch_every_process_embeds_and_recalls_with_the_new_model(
    open_memory: OpenMemory, make_settings: Callable[..., Any]
) -> None:
    async with open_memory() as old, open_memory(_other(make_settings)) as new:
        await _fill(old)
        for svc in (old, new):
            _store_embedder(svc).recheck_s = 0.0
        done = await store_model.switch(old.deps.db, NAME, HashEmbedder(384, "b"), old.reembed_step, batch=2)
        assert (done.previous, done.model, done.reembedded) == ("hash-384", "hash-384:b", len(FACTS))
        for svc in (old, new):
            await _store_embedder(svc).begin_call()  # as each tool call does
            found = await svc.recall("backups nightly", mode="semantic")
            assert found.hits[0].content == FACTS[1]
            assert found.warning is None
            assert svc.deps.embedder.model_name == "hash-384:b"
        await old.store_one("Written by the process configured with the old model.")
        assert (await new.stats()).models == {"hash-384:b": len(FACTS) + 1}
        assert await store_model.read(old.deps.db, NAME) == store_model.StoreModel("hash-384:b")


async def test_an_interrupted_switch_keeps_the_old_model_until_it_is_resumed_and_refuses_a_third_model(
    open_memory: OpenMemory,
) -> None:
    target = HashEmbedder(384, "b")
    async with open_memory() as svc:
        await _fill(svc)
        _store_embedder(svc).recheck_s = 0.0
        steps = 0

        async def dies_on_the_second_step(embedder: Any, limit: int) -> int:
            nonlocal steps
            steps += 1
            if steps == 2:
                raise RuntimeError("process killed")
            return await svc.reembed_step(embedder, limit)

        with pytest.raises(RuntimeError):
            await store_model.switch(svc.deps.db, NAME, target, dies_on_the_second_step, batch=2)
        assert await store_model.read(svc.deps.db, NAME) == store_model.StoreModel("hash-384", "hash-384:b", 2)
        # Until the flip, the store's model is still the old one: the rows not yet re-embedded are found.
        assert (await svc.stats()).models == {"hash-384": len(FACTS) - 2, "hash-384:b": 2}
        tops = [(await svc.recall(text, mode="semantic")).hits[0].content for text in FACTS]
        assert sum(top == text for top, text in zip(tops, FACTS, strict=True)) == len(FACTS) - 2
        assert svc.deps.embedder.model_name == "hash-384"

        with pytest.raises(Conflict, match=r"hash-384:b.*under way"):
            await store_model.switch(svc.deps.db, NAME, HashEmbedder(384, "c"), svc.reembed_step)

        done = await store_model.switch(svc.deps.db, NAME, target, svc.reembed_step, batch=2)
        assert done.reembedded == len(FACTS) - 2  # only what the first run had not done
        assert (await svc.stats()).models == {"hash-384:b": len(FACTS)}
        await _store_embedder(svc).begin_call()
        assert (await svc.recall("deploy window", mode="semantic")).hits[0].content == FACTS[0]


async def test_a_cancelled_switch_leaves_the_store_on_its_model_and_the_rest_is_re_embedded_back(
    open_memory: OpenMemory,
) -> None:
    async with open_memory() as svc:
        await _fill(svc)

        async def one_step_then_die(embedder: Any, limit: int) -> int:
            if await store_model.read(svc.deps.db, NAME) != store_model.StoreModel("hash-384", "hash-384:b", 0):
                raise RuntimeError("process killed")
            return await svc.reembed_step(embedder, limit)

        with pytest.raises(RuntimeError):
            await store_model.switch(svc.deps.db, NAME, HashEmbedder(384, "b"), one_step_then_die, batch=2)
        assert await store_model.cancel_switch(svc.deps.db, NAME) == store_model.StoreModel("hash-384")
        found = await svc.recall("deploy window", mode="semantic")
        assert found.warning is not None
        assert "hash-384:b" in found.warning
        redo = await svc.reembed(dry_run=False)
        assert redo.reembedded == 2
        assert (await svc.stats()).models == {"hash-384": len(FACTS)}


async def test_two_server_processes_with_different_models_share_a_store_and_follow_the_reembed_command(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    old = server_params(database_url, redis_url, redis_prefix, tmp_path, EMBEDDING_MODEL="hash-384")
    new = server_params(database_url, redis_url, redis_prefix, tmp_path, EMBEDDING_MODEL="hash-384:b")
    async with Client(old, read_timeout_seconds=120) as a:
        await call(a, "store_memories", {"items": [{"content": text} for text in FACTS]})
        async with Client(new, read_timeout_seconds=120) as b:
            before = await call(b, "recall", {"query": "backups nightly", "mode": "semantic"})
            assert before["hits"][0]["content"] == FACTS[1]
            assert before["warning"] is None

            env = server_env(database_url, redis_url, redis_prefix, tmp_path, EMBEDDING_MODEL="hash-384:b")
            command = [sys.executable, "-m", "servers", "reembed", "memory_management", "--model", "hash-384:b"]
            with anyio.fail_after(120):
                done = await anyio.run_process(command, env=env, check=False)
            assert done.returncode == 0, done.stderr.decode()[-2000:]
            assert "hash-384:b" in done.stdout.decode()

            async def both_follow() -> bool:
                for client in (a, b):
                    found = await call(client, "recall", {"query": "backups nightly", "mode": "semantic"})
                    if not found["hits"] or found["hits"][0]["content"] != FACTS[1] or found["warning"] is not None:
                        return False
                return True

            await wait_until(both_follow, timeout_s=20, what="both processes recalling with the new model")
            await call(a, "store_memory", {"content": "Stored by the process configured with the old model."})
            stats = await call(b, "workspace_stats")
            assert stats["models"] == {"hash-384:b": len(FACTS) + 1}
