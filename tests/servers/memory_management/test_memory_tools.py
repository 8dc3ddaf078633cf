"""Memory tools through the SDK's in-process client, on real PostgreSQL and Redis.

Behaviour tests use the deterministic hash embedder (meaning does not matter there); the ranking
test that depends on meaning uses the real default model. The service itself, and its background
work, are tested without MCP in test_memory_service.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest
from mcp import Client
from pgvector.asyncpg import register_vector
from pydantic import SecretStr

from common.runtime import resolve_admin_url
from common.testing import call_fails as fails
from common.testing import call_ok as call
from common.testing import free_port
from servers.memory_management.server import build
from servers.memory_management.settings import Settings
from tests.servers.memory_management.sql import count_rows, execute

pytestmark = pytest.mark.anyio


async def test_store_dedupes_and_recall_reports_score_parts(settings: Settings) -> None:
    async with Client(build(settings)) as client:
        first = await call(client, "store_memory", {"content": "The deploy window is Tuesday.", "tags": ["ops"]})
        again = await call(client, "store_memory", {"content": "the  deploy window is tuesday.", "tags": ["x"]})
        assert first["created"] is True
        assert again["created"] is False
        assert again["id"] == first["id"]
        await call(client, "store_memory", {"content": "Lunch is served at noon.", "importance": 0.9})
        found = await call(client, "recall", {"query": "deploy window", "limit": 1})
        assert found["total"] == 2
        assert found["truncated"] is True
        assert found["next_cursor"]
        hit = found["hits"][0]
        assert hit["id"] == first["id"]
        assert sorted(hit["tags"]) == ["ops", "x"]
        assert hit["keyword_rank"] > 0
        assert hit["similarity"] is not None
        assert 0 < hit["recency"] <= 1
        page2 = await call(client, "recall", {"query": "deploy window", "limit": 1, "cursor": found["next_cursor"]})
        assert [h["id"] for h in page2["hits"]] != [first["id"]]
        assert page2["next_cursor"] is None
        kw = await call(client, "recall", {"query": "noon", "mode": "keyword"})
        assert [h["content"] for h in kw["hits"]] == ["Lunch is served at noon."]
        assert kw["hits"][0]["similarity"] is None
        full = await call(client, "get_memory", {"id": first["id"]})
        assert full["content"] == "The deploy window is Tuesday."
        assert full["version"] == 1
    assert await count_rows(settings, "access_count > 0") == 2


async def test_store_memories_batch_counts_created_and_duplicates(settings: Settings) -> None:
    async with Client(build(settings)) as client:
        items = [{"content": f"fact number {i}"} for i in range(30)] + [{"content": "fact number 3"}]
        out = await call(client, "store_memories", {"items": items, "workspace": "batch"})
        assert out["created"] == 30
        assert out["duplicates"] == 1
        stats = await call(client, "workspace_stats", {"workspace": "batch"})
        assert stats["active"] == 30
        assert stats["models"] == {"hash-384": 30}


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        ("store_memory", {"content": "   "}, "content is empty"),
        ("store_memory", {"content": "x" * 9_000}, "the limit is 8000"),
        ("store_memory", {"content": "ok", "workspace": "bad name!"}, "workspace"),
        ("store_memory", {"content": "ok", "importance": 2}, "importance"),
        ("store_memory", {"content": "ok", "parent_id": "00000000-0000-0000-0000-000000000001"}, "not an active"),
        ("store_memory", {"content": "ok", "tags": ["t" * 51]}, "tag"),
        ("store_memories", {"items": [{"content": "fine"}, {"content": ""}]}, "items[1]"),
        ("recall", {"query": "x", "limit": 500}, "limit"),
        ("recall", {"query": "x", "since": "2030-01-01T00:00:00Z", "until": "2020-01-01T00:00:00Z"}, "since"),
        ("recall", {"query": "x", "cursor": "garbage"}, "cursor"),
        ("recall", {"query": "x", "scope": ["nope"]}, "scope"),
        ("get_memory", {"id": "00000000-0000-0000-0000-000000000001"}, "No memory"),
        ("get_memory", {"id": "not-a-uuid"}, "id"),
        ("update_memory", {"id": "00000000-0000-0000-0000-000000000001", "content": "x"}, "No active memory"),
        ("forget", {}, "Give ids"),
        ("forget", {"ids": ["00000000-0000-0000-0000-000000000001"], "dry_run": False}, "Unknown memory ids"),
        ("build_context", {"query": "x", "budget": 999_999}, "budget"),
    ],
)
async def test_bad_input_is_refused_clearly_and_writes_nothing(
    settings: Settings, tool: str, args: dict[str, Any], expected: str
) -> None:
    async with Client(build(settings)) as client:
        await call(client, "store_memory", {"content": "keep me"})
        await fails(client, tool, args, expected)
    assert await count_rows(settings) == 1
    assert await count_rows(settings, "version = 1 AND state = 'active'") == 1


async def test_update_reembeds_bumps_version_and_keeps_history(settings: Settings) -> None:
    async with Client(build(settings)) as client:
        m = await call(client, "store_memory", {"content": "The API key rotates monthly.", "tags": ["sec"]})
        other = await call(client, "store_memory", {"content": "Backups run nightly."})
        up = await call(client, "update_memory", {"id": m["id"], "content": "The API key rotates weekly."})
        assert up["version"] == 2
        await fails(client, "update_memory", {"id": m["id"], "importance": 1, "expected_version": 1}, "version 2")
        await fails(client, "update_memory", {"id": other["id"], "content": "The API key rotates weekly."}, "already")
        hits = await call(client, "recall", {"query": "rotates weekly", "mode": "keyword"})
        assert [h["id"] for h in hits["hits"]] == [m["id"]]
        got = await call(client, "get_memory", {"id": m["id"]})
        assert got["tags"] == ["sec"]
        assert got["version"] == 2
    conn = await asyncpg.connect(resolve_admin_url(settings))
    try:
        rows = await conn.fetch("SELECT content, version FROM memory_management.memory_history ORDER BY id")
    finally:
        await conn.close()
    assert [(r["content"], r["version"]) for r in rows] == [("The API key rotates monthly.", 1)]


async def test_forget_is_a_dry_run_by_default_then_restore_and_purge(settings: Settings) -> None:
    async with Client(build(settings)) as client:
        ids = [
            (await call(client, "store_memory", {"content": f"temp note {i}", "tags": ["tmp"]}))["id"] for i in range(3)
        ]
        keep = await call(client, "store_memory", {"content": "permanent note"})
        dry = await call(client, "forget", {"workspace": "default", "tags": ["tmp"]})
        assert dry == {"count": 3, "ids": sorted(ids), "dry_run": True}
        assert (await call(client, "recall", {"query": "temp", "mode": "keyword"}))["total"] == 3
        done = await call(client, "forget", {"workspace": "default", "tags": ["tmp"], "dry_run": False})
        assert done["count"] == 3
        assert (await call(client, "recall", {"query": "temp", "mode": "keyword"}))["total"] == 0
        restored = await call(client, "restore_memory", {"id": ids[0]})
        assert restored["state"] == "active"
        assert (await call(client, "recall", {"query": "temp", "mode": "keyword"}))["total"] == 1
        # An identical active memory blocks a restore instead of creating a duplicate.
        await call(client, "forget", {"ids": [ids[1]], "dry_run": False})
        await call(client, "store_memory", {"content": "temp note 1"})
        await fails(client, "restore_memory", {"id": ids[1]}, "same text")
        preview = await call(client, "purge_memories", {})
        assert preview["count"] == 2
        assert preview["dry_run"] is True
        purged = await call(client, "purge_memories", {"dry_run": False})
        assert purged["count"] == 2
        await fails(client, "restore_memory", {"id": ids[2]}, "No archived memory")
        listed = await call(client, "list_workspaces", {})
        assert listed["workspaces"][0]["name"] == "default"
        assert listed["workspaces"][0]["active"] == 3
        assert keep["id"]
    assert await count_rows(settings) == 3


async def test_tree_move_refuses_cycles_and_children_are_listed(settings: Settings) -> None:
    async with Client(build(settings)) as client:
        root = await call(client, "store_memory", {"content": "Project Atlas"})
        a = await call(client, "store_memory", {"content": "Atlas backend", "parent_id": root["id"]})
        b = await call(client, "store_memory", {"content": "Atlas database", "parent_id": a["id"]})
        tree = await call(client, "memory_tree", {})
        assert [(n["id"], n["depth"]) for n in tree["nodes"]] == [(root["id"], 0), (a["id"], 1), (b["id"], 2)]
        await fails(client, "move_memory", {"id": root["id"], "parent_id": b["id"]}, "cycle")
        await fails(client, "move_memory", {"id": a["id"], "parent_id": a["id"]}, "cycle")
        other = await call(client, "store_memory", {"content": "elsewhere", "workspace": "w2"})
        await fails(client, "move_memory", {"id": a["id"], "parent_id": other["id"]}, "workspace")
        moved = await call(client, "move_memory", {"id": b["id"], "parent_id": root["id"]})
        assert moved["version"] == 2
        got = await call(client, "get_memory", {"id": root["id"], "children": 5})
        assert {c["id"] for c in got["children"]} == {a["id"], b["id"]}
        assert got["children_total"] == 2
        sub = await call(client, "memory_tree", {"root_id": a["id"], "depth": 0})
        assert [n["id"] for n in sub["nodes"]] == [a["id"]]
        await fails(client, "memory_tree", {"depth": 6}, "depth")


async def test_consolidate_previews_then_merges_near_duplicates_keeping_history(
    make_settings: Callable[..., Any],
) -> None:
    settings = make_settings(Settings, tools=["all"])  # the real model: near-duplicate means similar meaning
    async with Client(build(settings)) as client:
        a = await call(
            client, "store_memory", {"content": "The staging database password rotates every 30 days.", "tags": ["a"]}
        )
        b = await call(
            client,
            "store_memory",
            {"content": "The staging database password is rotated every 30 days.", "tags": ["b"], "importance": 0.9},
        )
        c = await call(client, "store_memory", {"content": "Our office plants are watered on Mondays."})
        preview = await call(client, "consolidate", {"threshold": 0.9})
        assert preview["merged"] == 0
        assert [(g["keeper"], g["duplicates"]) for g in preview["groups"]] == [(b["id"], [a["id"]])]
        merged = await call(client, "consolidate", {"threshold": 0.9, "merge": True})
        assert merged["merged"] == 1
        keeper = await call(client, "get_memory", {"id": b["id"]})
        assert keeper["tags"] == ["a", "b"]
        assert (await call(client, "get_memory", {"id": a["id"]}))["state"] == "archived"
        again = await call(client, "consolidate", {"threshold": 0.9})
        assert again["groups"] == []
        assert c["id"]
    assert await count_rows(settings, "state = 'archived'") == 1
    conn = await asyncpg.connect(resolve_admin_url(settings))
    try:
        merged_into = await conn.fetchval(
            "SELECT merged_into::text FROM memory_management.memory_history WHERE memory_id = $1", a["id"]
        )
    finally:
        await conn.close()
    assert merged_into == b["id"]


async def test_build_context_fits_the_budget_and_names_ids(settings: Settings) -> None:
    async with Client(build(settings)) as client:
        for i in range(20):
            await call(client, "store_memory", {"content": f"service {i} talks to the billing queue " + "x" * 200})
        ctx = await call(client, "build_context", {"query": "billing queue", "budget": 200})
        assert 0 < ctx["tokens"] <= 200
        assert ctx["omitted"] > 0
        assert all(f"[{i}]" in ctx["text"] for i in ctx["ids"])
        assert len(ctx["text"]) <= 200 * 4


async def test_rating_moves_a_memory_up_among_equals(settings: Settings) -> None:
    async with Client(build(settings)) as client:
        a = await call(client, "store_memory", {"content": "cache setting alpha"})
        b = await call(client, "store_memory", {"content": "cache setting beta"})
        for _ in range(3):
            await call(client, "rate_memory", {"id": b["id"], "useful": True})
            await call(client, "rate_memory", {"id": a["id"], "useful": False})
        hits = await call(client, "recall", {"query": "cache setting", "mode": "keyword"})
        assert [h["id"] for h in hits["hits"]] == [b["id"], a["id"]]


async def test_resources_and_prompt(settings: Settings) -> None:
    async with Client(build(settings)) as client:
        m = await call(client, "store_memory", {"content": "resource check", "workspace": "res"})
        ws = await client.read_resource("memory://workspaces")
        assert json.loads(ws.contents[0].text)["workspaces"][0]["name"] == "res"  # type: ignore[union-attr]
        one = await client.read_resource(f"memory://memories/{m['id']}")
        assert json.loads(one.contents[0].text)["content"] == "resource check"  # type: ignore[union-attr]
        prompt = await client.get_prompt("recall_then_answer", {"question": "What is X?"})
        assert "recall" in prompt.messages[0].content.text  # type: ignore[union-attr]


async def test_default_tool_set_fits_the_context_budget_and_all_tools_follow_the_rules(
    make_settings: Callable[..., Any],
) -> None:
    async with Client(build(make_settings(Settings))) as client:
        default = (await client.list_tools()).tools
    payload = json.dumps([t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in default])
    assert len(payload) <= 8192
    async with Client(build(make_settings(Settings, tools=["all"]))) as client:
        every = (await client.list_tools()).tools
    assert len(every) == 17
    recall_schema = next(t for t in every if t.name == "recall").output_schema
    assert recall_schema is not None
    assert set(recall_schema["properties"]) == {"hits", "total", "truncated", "next_cursor", "warning"}
    for tool in every:
        assert tool.title
        assert tool.description
        assert tool.output_schema is not None
        # Outlined: field names only (the README documents the nesting).
        assert tool.output_schema["properties"], tool.name
        assert all(v == {} for v in tool.output_schema["properties"].values()), tool.name
        ann = tool.annotations
        assert ann is not None
        assert None not in (
            ann.read_only_hint,
            ann.destructive_hint,
            ann.idempotent_hint,
            ann.open_world_hint,
        )
        for name, prop in tool.input_schema.get("properties", {}).items():
            assert prop.get("description"), f"{tool.name}.{name}"


async def test_hybrid_recall_ranks_by_meaning_alone_when_every_query_word_is_common(
    make_settings: Callable[..., Any],
) -> None:
    settings: Settings = make_settings(Settings, embedding_model="hash-384", tools=["all"], keyword_scan_cap=100)
    async with Client(build(settings)) as client:
        for start in range(0, 1_000, 100):
            items = [{"content": f"alpha beta gamma note {i}"} for i in range(start, start + 100)]
            await call(client, "store_memories", {"items": items})
        await execute(settings, "ANALYZE memory_management.memories")
        # Three words in every one of 1,000 rows: all common.
        hybrid = await call(client, "recall", {"query": "alpha beta gamma", "limit": 5})
        assert len(hybrid["hits"]) == 5
        assert all(h["keyword_rank"] is None for h in hybrid["hits"])
        assert all(h["similarity"] is not None for h in hybrid["hits"])
        # Asked for keywords, it still matches them; a rare word keeps the keyword side in hybrid.
        keyword = await call(client, "recall", {"query": "alpha beta gamma", "mode": "keyword", "limit": 5})
        assert len(keyword["hits"]) == 5
        assert all(h["keyword_rank"] is not None for h in keyword["hits"])
        await call(client, "store_memory", {"content": "alpha zeppelin sighting"})
        rare = await call(client, "recall", {"query": "alpha zeppelin", "limit": 1})
        assert rare["hits"][0]["content"] == "alpha zeppelin sighting"
        assert rare["hits"][0]["keyword_rank"] is not None


async def test_vectors_stay_in_the_row_rather_than_in_toast(settings: Settings) -> None:
    async with Client(build(settings)) as client:
        long = "The release checklist says: " + "verify the staging database backups first; " * 12
        await call(client, "store_memory", {"content": long})
        await call(client, "store_memory", {"content": "short"})
    # Without migration 0003 the first row (over 2 KB with its vector) had its vector moved to TOAST.
    assert await count_rows(settings, "embedding IS NOT NULL") == 2
    assert await count_rows(settings, "pg_column_toast_chunk_id(embedding) IS NOT NULL") == 0


async def test_reembed_redoes_vectors_of_another_model_in_bounded_steps(settings: Settings) -> None:
    from servers.memory_management import store

    async with Client(build(settings)) as client:
        a = await call(
            client, "store_memories", {"items": [{"content": f"alpha fact {i}"} for i in range(5)], "workspace": "a"}
        )
        await call(
            client, "store_memories", {"items": [{"content": f"beta fact {i}"} for i in range(2)], "workspace": "b"}
        )
        # as if these had been stored under an earlier EMBEDDING_MODEL
        await execute(settings, "UPDATE memory_management.memories SET embedding_model = 'old-model', embedding = NULL")
        before = await call(client, "recall", {"query": "alpha fact 1", "workspace": "a"})
        assert "reembed_memories" in before["warning"]
        assert all(h["similarity"] is None for h in before["hits"])

        await fails(client, "reembed_memories", {"max_items": 0}, "max_items")
        await fails(client, "reembed_memories", {"workspace": "no spaces"}, "workspace")
        counted = await call(client, "reembed_memories", {"workspace": "a"})
        assert counted == {
            "dry_run": True,
            "model": "hash-384",
            "stale": {"old-model": 5},
            "reembedded": 0,
            "skipped": 0,
            "remaining": 5,
        }
        assert await count_rows(settings, "embedding IS NULL") == 7  # a dry run writes nothing
        first = await call(client, "reembed_memories", {"workspace": "a", "dry_run": False, "max_items": 3})
        assert (first["reembedded"], first["remaining"]) == (3, 2)
        second = await call(client, "reembed_memories", {"workspace": "a", "dry_run": False})
        assert (second["reembedded"], second["remaining"]) == (2, 0)
        assert (
            await count_rows(settings, "workspace = 'a' AND embedding_model = 'hash-384' AND embedding IS NOT NULL")
            == 5
        )
        assert (
            await count_rows(settings, "workspace = 'b' AND embedding_model = 'old-model'") == 2
        )  # other workspace kept
        after = await call(client, "recall", {"query": "alpha fact 1", "workspace": "a", "mode": "semantic"})
        assert after["warning"] is None
        assert after["hits"][0]["id"] == a["items"][1]["id"]
        assert after["hits"][0]["similarity"] == pytest.approx(1.0, abs=1e-3)
        everything = await call(client, "reembed_memories", {"dry_run": False})
        assert (everything["stale"], everything["reembedded"], everything["remaining"]) == ({"old-model": 2}, 2, 0)

    # A memory edited after it was read for re-embedding keeps the vector its edit gave it.
    conn = await asyncpg.connect(resolve_admin_url(settings))
    try:
        await conn.execute("SET search_path = memory_management, extensions")
        await register_vector(conn, schema="extensions")
        row = await conn.fetchrow("SELECT id::text AS id, version FROM memories WHERE workspace = 'a' LIMIT 1")
        assert row is not None
        vec = np.zeros(384, dtype=np.float32)
        vec[0] = 1.0
        assert await store.set_vectors(conn, [(row["id"], vec, "other", row["version"] - 1)]) == 0
        assert await store.set_vectors(conn, [(row["id"], vec, "other", row["version"])]) == 1
    finally:
        await conn.close()


async def test_import_qdrant_reads_an_mcp_server_qdrant_collection(settings: Settings, tmp_path: Path) -> None:
    from qdrant_client import AsyncQdrantClient, models

    path = tmp_path / "qdrant"
    q = AsyncQdrantClient(path=str(path))
    await q.create_collection(
        "mem", vectors_config={"fast-all-minilm-l6-v2": models.VectorParams(size=4, distance=models.Distance.COSINE)}
    )
    payloads: list[dict[str, Any]] = [
        {"document": "Qdrant fact one", "metadata": {"src": "a"}},
        {"document": "Qdrant fact two", "metadata": None},
        {"document": "Qdrant fact one"},
        {"other": "no document"},
    ]
    await q.upsert(
        "mem",
        points=[
            models.PointStruct(id=i, vector={"fast-all-minilm-l6-v2": [0.1, 0.2, 0.3, float(i)]}, payload=p)
            for i, p in enumerate(payloads)
        ],
    )
    await q.close()
    async with Client(build(settings)) as client:
        await fails(client, "import_qdrant", {"collection": "mem", "qdrant_path": str(path)}, "IMPORT_ROOTS")
    settings = settings.model_copy(update={"import_roots": [tmp_path]})
    async with Client(build(settings)) as client:
        out = await call(client, "import_qdrant", {"collection": "mem", "qdrant_path": str(path), "workspace": "imp"})
        assert out == {"read": 4, "created": 2, "duplicates": 1, "skipped": 1}
        again = await call(client, "import_qdrant", {"collection": "mem", "qdrant_path": str(path), "workspace": "imp"})
        assert again["created"] == 0
        assert again["duplicates"] == 3
        await fails(client, "import_qdrant", {"collection": "nope", "qdrant_path": str(path)}, "No collection")
        hits = await call(client, "recall", {"query": "fact one", "workspace": "imp", "mode": "keyword"})
        assert hits["hits"][0]["content"] == "Qdrant fact one"


async def test_import_qdrant_opens_no_folder_but_an_existing_storage_inside_the_roots(
    settings: Settings, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    settings = settings.model_copy(update={"import_roots": [tmp_path]})
    async with Client(build(settings)) as client:
        await fails(
            client, "import_qdrant", {"collection": "m", "qdrant_path": str(plain)}, "not a Qdrant local storage"
        )
        await fails(client, "import_qdrant", {"collection": "m", "qdrant_path": str(outside)}, "outside")
        await fails(client, "import_qdrant", {"collection": "m", "qdrant_url": "file:///etc"}, "http(s) URL")
    # qdrant-client never opened them: no lock or metadata files were created.
    assert list(plain.iterdir()) == []
    assert list(outside.iterdir()) == []


async def test_import_qdrant_sends_the_api_key_only_to_the_configured_qdrant_and_reports_unreachable(
    settings: Settings,
) -> None:
    from servers.memory_management.qdrant_import import key_for

    assert key_for("http://q.internal:6333/", "http://q.internal:6333", "k") == "k"
    assert key_for("http://127.0.0.1:9/", "http://q.internal:6333", "k") is None
    assert key_for("http://q.internal:6333", None, "k") is None
    port = free_port()
    settings = settings.model_copy(
        update={"qdrant_api_key": SecretStr("s3cret"), "qdrant_url": "http://q.internal:6333"}
    )
    async with Client(build(settings)) as client:
        text = await fails(
            client,
            "import_qdrant",
            {"collection": "m", "qdrant_url": f"http://127.0.0.1:{port}"},
            "Cannot reach Qdrant",
        )
    assert "s3cret" not in text
    assert "Internal error" not in text
