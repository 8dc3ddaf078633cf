"""The knowledge-graph server as real stdio processes: four writers at once, cross-process resource
notifications, search by meaning and the command line (the replay against the reference server is
test_reference_compat.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from mcp import Client

from common.testing import call_ok as call
from common.testing import server_params as spawn_params
from servers.inference_enhancement.server import entity_uri

pytestmark = pytest.mark.anyio

PROCESSES = 4


def server_params(database_url: str, redis_url: str, redis_prefix: str, data_dir: Path, **env: str) -> Any:
    """This server over stdio with every tool exposed."""
    return spawn_params(
        "inference_enhancement",
        database_url,
        redis_url,
        redis_prefix,
        data_dir,
        INFERENCE_ENHANCEMENT_TOOLS="all",
        **env,
    )


async def test_four_processes_writing_the_same_graph_lose_nothing_and_duplicate_nothing(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    params = server_params(database_url, redis_url, redis_prefix, tmp_path, EMBEDDING_MODEL="hash-384")
    shared = [f"shared {i}" for i in range(10)]
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(params, read_timeout_seconds=120)) for _ in range(PROCESSES)]

        async def worker(n: int, client: Client) -> None:
            for i in range(20):
                own = f"p{n} entity {i}"
                batch = [{"name": own, "entityType": "own", "observations": [f"p{n} fact {i}"]}]
                if i < len(shared):  # every process creates the same shared entity at about the same moment
                    batch.append({"name": shared[i], "entityType": "shared", "observations": ["first"]})
                await call(client, "create_entities", {"entities": batch})
                await call(
                    client,
                    "add_observations",
                    {"observations": [{"entityName": shared[i % 10], "contents": [f"p{n} saw {i}", "common note"]}]},
                )
                await call(
                    client,
                    "create_relations",
                    {
                        "relations": [
                            {"from": own, "to": shared[i % 10], "relationType": "uses"},
                            # shared[i - 1] exists: this process created it a step ago.
                            {"from": shared[i % 10], "to": shared[max(i - 1, 0) % 10], "relationType": "next"},
                        ]
                    },
                )

        async with anyio.create_task_group() as tg:
            for n, client in enumerate(clients):
                tg.start_soon(worker, n, client)

    conn = await asyncpg.connect(database_url)
    try:
        names = [r["name"] for r in await conn.fetch("SELECT name FROM inference_enhancement.entities")]
        observations = await conn.fetch(
            "SELECT e.name, o.content FROM inference_enhancement.observations o "
            "JOIN inference_enhancement.entities e ON e.id = o.entity_id"
        )
        relations = await conn.fetchval("SELECT count(*) FROM inference_enhancement.relations")
        # Vectors are made in the background; a stopping process finishes its own first.
        stale = await conn.fetchval(
            "SELECT count(*) FROM inference_enhancement.entities WHERE embedded_version <> version"
        )
    finally:
        await conn.close()
    assert len(names) == len(set(names)) == PROCESSES * 20 + 10
    pairs = {(r["name"], r["content"]) for r in observations}
    assert len(pairs) == len(observations)
    for n in range(PROCESSES):
        for i in range(20):
            assert (f"p{n} entity {i}", f"p{n} fact {i}") in pairs
            assert (shared[i % 10], f"p{n} saw {i}") in pairs
    assert all((s, "common note") in pairs for s in shared)
    assert all((s, "first") in pairs for s in shared)
    chain = {(shared[i % 10], shared[max(i - 1, 0) % 10]) for i in range(20)}
    assert relations == PROCESSES * 20 + len(chain)
    assert stale == 0  # every entity's vector is made from its latest text


async def test_a_client_subscribed_on_one_process_hears_a_change_made_through_another(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    params = server_params(database_url, redis_url, redis_prefix, tmp_path, EMBEDDING_MODEL="hash-384")
    async with Client(params, read_timeout_seconds=120) as a, Client(params, read_timeout_seconds=120) as b:
        await call(a, "create_entities", {"entities": [{"name": "Ada Lovelace", "entityType": "person"}]})
        uri = entity_uri("Ada Lovelace")
        async with a.listen(resource_subscriptions=[uri]) as sub:
            await call(
                b, "add_observations", {"observations": [{"entityName": "Ada Lovelace", "contents": ["wrote notes"]}]}
            )
            with anyio.fail_after(15):
                async for event in sub:
                    if getattr(event, "uri", None) == uri:
                        break
        entity = json.loads((await a.read_resource(uri)).contents[0].text)  # type: ignore[union-attr]
        assert entity["entities"][0]["observations"] == ["wrote notes"]
        summary = json.loads((await a.read_resource("graph://summary")).contents[0].text)  # type: ignore[union-attr]
        assert summary["entities"] == 1
        assert summary["observations"] == 1


SEQUENCE: list[tuple[str, dict[str, Any]]] = [
    (
        "create_entities",
        {
            "entities": [
                {"name": "Ada", "entityType": "person", "observations": ["Leads the billing team", "Prefers tea"]},
                {"name": "Billing", "entityType": "team", "observations": ["Owns invoices and payment retries"]},
                {"name": "Grace", "entityType": "person", "observations": ["Reviews database migrations"]},
                {"name": "Postgres", "entityType": "database", "observations": ["Runs version 18", "Has pgvector"]},
                {"name": "Café Ümlaut", "entityType": "Place", "observations": ["Serves STRONG coffee"]},
            ]
        },
    ),
    ("create_entities", {"entities": [{"name": "Ada", "entityType": "person", "observations": ["dup"]}]}),
    (
        "create_relations",
        {
            "relations": [
                {"from": "Ada", "to": "Billing", "relationType": "leads"},
                {"from": "Grace", "to": "Postgres", "relationType": "administers"},
                {"from": "Billing", "to": "Postgres", "relationType": "stores data in"},
                {"from": "Ada", "to": "Café Ümlaut", "relationType": "visits"},
            ]
        },
    ),
    ("create_relations", {"relations": [{"from": "Ada", "to": "Billing", "relationType": "leads"}]}),
    (
        "add_observations",
        {
            "observations": [
                {"entityName": "Ada", "contents": ["Prefers tea", "Joined in 2021"]},
                {"entityName": "Postgres", "contents": ["Backed up nightly"]},
            ]
        },
    ),
    ("search_nodes", {"query": "tea"}),
    ("search_nodes", {"query": "PERSON"}),
    ("search_nodes", {"query": "ing"}),
    ("search_nodes", {"query": "café"}),
    ("search_nodes", {"query": "strong coffee"}),
    ("search_nodes", {"query": "no such thing anywhere"}),
    ("open_nodes", {"names": ["Ada", "Postgres", "Nobody"]}),
    ("open_nodes", {"names": ["Grace"]}),
    ("delete_observations", {"deletions": [{"entityName": "Ada", "observations": ["Prefers tea", "not there"]}]}),
    ("delete_relations", {"relations": [{"from": "Grace", "to": "Postgres", "relationType": "administers"}]}),
    ("read_graph", {}),
    ("delete_entities", {"entityNames": ["Billing", "Nobody"]}),
    ("search_nodes", {"query": "a"}),
    ("open_nodes", {"names": ["Ada", "Postgres"]}),
    ("read_graph", {}),
]


async def test_a_reworded_question_finds_what_substring_search_misses(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """With the real embedding model: the reference finds nothing for these, ours ranks the right entity first."""
    params = server_params(database_url, redis_url, redis_prefix, tmp_path)
    async with Client(params, read_timeout_seconds=120) as c:
        await call(c, "create_entities", SEQUENCE[0][1])
        await call(c, "create_relations", SEQUENCE[2][1])
        for query, expected in [
            ("who handles invoicing and payments?", "Billing"),
            ("which relational database do we run?", "Postgres"),
            ("a place to get an espresso", "Café Ümlaut"),
        ]:
            found = await call(c, "search_nodes", {"query": query, "limit": 3})
            assert found["entities"], query
            # "database" also matches Grace's "Reviews database migrations" by keyword, so: among the top two.
            assert expected in [e["name"] for e in found["entities"][:2]], (query, found["entities"])
        block = await call(
            c, "enhance_prompt", {"query": "who should review the invoice retry change?", "max_tokens": 120}
        )
        assert block["tokens"] <= 120
        assert "[Billing]" in block["text"]
        ranked = await call(
            c,
            "rank_passages",
            {
                "query": "how do I back up the database?",
                "passages": ["The cafeteria opens at eight.", "Run pg_dump nightly to save a copy of Postgres."],
            },
        )
        assert ranked["ranked"][0]["index"] == 1


def test_the_command_line_imports_a_reference_file_and_exports_it_unchanged(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    source = tmp_path / "memory.jsonl"
    original = "\n".join(
        [
            '{"type":"entity","name":"Ada","entityType":"person","observations":["Prefers tea"]}',
            '{"type":"entity","name":"Billing","entityType":"team","observations":[]}',
            '{"type":"relation","from":"Ada","to":"Billing","relationType":"leads"}',
        ]
    )
    source.write_text(original, encoding="utf-8")
    env = server_params(database_url, redis_url, redis_prefix, tmp_path, EMBEDDING_MODEL="hash-384").env
    module = [sys.executable, "-m", "servers.inference_enhancement"]
    done = subprocess.run([*module, "import", str(source)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["entities_created"] == 2
    target = tmp_path / "out.jsonl"
    done = subprocess.run([*module, "export", str(target)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert target.read_text(encoding="utf-8") == original
    link = tmp_path / "link.jsonl"
    link.symlink_to(source)
    refused = subprocess.run([*module, "export", str(link)], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert "symbolic link" in refused.stderr
    assert link.is_symlink()
    assert source.read_text(encoding="utf-8") == original
    bad = subprocess.run([*module, "import"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "usage" in bad.stderr
