"""MEMORY_FILE_PATH over stdio: the mirror file byte for byte as the pinned reference server writes it,
two processes mirroring one file, and four clients writing and searching at once."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from common.testing import call_ok as call
from common.testing import wait_until
from servers.inference_enhancement import jsonl
from tests.servers.inference_enhancement.test_graph_stdio import server_params

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]
#: The reference server pinned by requirements/npm (the setup script installs it).
REFERENCE = ROOT / "requirements/npm/node_modules/@modelcontextprotocol/server-memory/dist/index.js"

ODD = [
    'Prefers "strong" tea',
    "Line one\nLine two",
    "Tab\there",
    "back\\slash and /slash",
    "control \u0001 and \u001f chars",
    "line separator \u2028 inside",
    "emoji 🧪 and ümlaut",
    "</script>",
]

#: Calls both servers answer the same way; the file each leaves behind must be the same bytes.
CALLS: list[tuple[str, dict[str, Any]]] = [
    (
        "create_entities",
        {
            "entities": [
                {"name": "Ada", "entityType": "person", "observations": ODD},
                {"name": "Zoë 東京", "entityType": "place", "observations": []},
                {"name": 'Ωmega "quoted" name', "entityType": "thing\nwith newline", "observations": ["x"]},
            ]
        },
    ),
    (
        "create_entities",
        {
            "entities": [
                {"name": "Ada", "entityType": "person", "observations": ["ignored: Ada exists"]},
                {"name": "Grace", "entityType": "person", "observations": ["Reviews migrations"]},
            ]
        },
    ),
    (
        "create_relations",
        {
            "relations": [
                {"from": "Ada", "to": "Zoë 東京", "relationType": "visits"},
                {"from": "Grace", "to": "Ada", "relationType": "mentors"},
                {"from": "Zoë 東京", "to": "Grace", "relationType": 'näher bei "ihr"'},
                {"from": 'Ωmega "quoted" name', "to": "Ada", "relationType": "names"},
            ]
        },
    ),
    (
        "add_observations",
        {
            "observations": [
                {"entityName": "Ada", "contents": ['Prefers "strong" tea', "Joined in 2021"]},
                {"entityName": "Zoë 東京", "contents": ['Capital, "big"\r\nand busy']},
            ]
        },
    ),
    ("delete_observations", {"deletions": [{"entityName": "Ada", "observations": ["Tab\there", "not there"]}]}),
    ("add_observations", {"observations": [{"entityName": "Ada", "contents": ["Tab\there"]}]}),
    ("delete_relations", {"relations": [{"from": "Grace", "to": "Ada", "relationType": "mentors"}]}),
    ("create_relations", {"relations": [{"from": "Grace", "to": "Ada", "relationType": "mentors"}]}),
    ("delete_entities", {"entityNames": ["Zoë 東京", "Nobody"]}),
    ("create_entities", {"entities": [{"name": "Zoë 東京", "entityType": "place", "observations": ["back again"]}]}),
    ("create_relations", {"relations": [{"from": "Zoë 東京", "to": "Ada", "relationType": "hosts"}]}),
    # Dangling relations: ends that name no entity are kept, as the reference keeps them.
    (
        "create_relations",
        {
            "relations": [
                {"from": "Ada", "to": "Nobody yet", "relationType": "knows"},
                {"from": "Ghost", "to": "Zoë 東京", "relationType": "haunts"},
                {"from": "Ghost", "to": "Wraith ☠", "relationType": "follows"},
            ]
        },
    ),
    ("create_entities", {"entities": [{"name": "Nobody yet", "entityType": "person", "observations": ["here now"]}]}),
    ("delete_relations", {"relations": [{"from": "Ghost", "to": "Wraith ☠", "relationType": "follows"}]}),
    ("create_relations", {"relations": [{"from": "Wraith ☠", "to": "Grace", "relationType": "scares"}]}),
]

NAMES = ["Ada", 'Ωmega "quoted" name', "Grace", "Zoë 東京", "Nobody yet"]


def reference_params(memory: Path) -> StdioServerParameters:
    if shutil.which("node") is None or not REFERENCE.exists():
        pytest.skip("node or the pinned reference server (requirements/npm) is missing; run the setup script")
    return StdioServerParameters(
        command="node", args=[str(REFERENCE)], env={**os.environ, "MEMORY_FILE_PATH": str(memory)}
    )


def ours(database_url: str, redis_url: str, redis_prefix: str, data_dir: Path, memory: Path, **env: str) -> Any:
    return server_params(
        database_url,
        redis_url,
        redis_prefix,
        data_dir,
        **{
            "EMBEDDING_MODEL": "hash-384",
            "MEMORY_FILE_PATH": str(memory),
            "INFERENCE_ENHANCEMENT_MIRROR_DELAY_MS": "50",
            **env,
        },
    )


def read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


async def test_the_mirror_file_is_byte_for_byte_what_the_reference_writes(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    ref_file, our_file = tmp_path / "ref" / "memory.jsonl", tmp_path / "ours" / "memory.jsonl"
    ref_file.parent.mkdir()
    our_file.parent.mkdir()
    params = ours(database_url, redis_url, redis_prefix, tmp_path / "data", our_file)
    async with (
        Client(reference_params(ref_file), read_timeout_seconds=60) as ref,
        Client(params, read_timeout_seconds=120) as mine,
    ):
        for step, (tool, args) in enumerate(CALLS):
            expected = await ref.call_tool(tool, args)
            assert not expected.is_error, (tool, expected.content)
            await call(mine, tool, args)
            want = read(ref_file)

            def same(want: bytes = want) -> bool:
                return read(our_file) == want

            await wait_until(same, timeout_s=15, what=f"the mirror after call {step} ({tool})")
    assert read(our_file) == read(ref_file)
    assert read(ref_file).count(b'"type":"entity"') == 5  # the sequence did reach the file
    assert b'"from":"Ghost"' in read(ref_file)
    # The reference itself reads the mirror back as its own.
    async with Client(reference_params(our_file), read_timeout_seconds=60) as ref:
        graph = json.loads((await ref.call_tool("read_graph", {})).content[0].text)  # type: ignore[union-attr]
    assert [e["name"] for e in graph["entities"]] == NAMES
    assert ["Ghost", "Zoë 東京", "haunts"] in [[r["from"], r["to"], r["relationType"]] for r in graph["relations"]]


async def test_a_file_the_reference_wrote_is_imported_on_start_and_left_byte_for_byte_as_it_was(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    memory = tmp_path / "memory.jsonl"
    async with Client(reference_params(memory), read_timeout_seconds=60) as ref:
        for tool, args in CALLS:
            await ref.call_tool(tool, args)
    written = read(memory)
    stamp = memory.stat().st_mtime_ns
    params = ours(database_url, redis_url, redis_prefix, tmp_path / "data", memory)
    async with Client(params, read_timeout_seconds=120) as mine:
        graph = await call(mine, "read_graph", {})
        assert [e["name"] for e in graph["entities"]] == NAMES
        assert {"from": "Ghost", "to": "Zoë 東京", "relationType": "haunts"} in graph["relations"]
        assert {"from": "Wraith ☠", "to": "Grace", "relationType": "scares"} in graph["relations"]
        assert graph["entities"][0]["observations"] == [o for o in ODD if o != "Tab\there"] + [
            "Joined in 2021",
            "Tab\there",
        ]
    assert read(memory) == written
    assert memory.stat().st_mtime_ns == stamp  # nothing to change: not even rewritten


async def test_two_processes_mirroring_one_file_never_leave_it_broken(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    memory = tmp_path / "memory.jsonl"
    params = ours(
        database_url, redis_url, redis_prefix, tmp_path / "data", memory, INFERENCE_ENHANCEMENT_MIRROR_DELAY_MS="0"
    )
    seen: list[int] = []
    done = False

    async def watch() -> None:
        # Every version of the file a reader can see is complete: the rename is atomic.
        while not done:
            text = read(memory).decode("utf-8")
            if text:
                seen.append(len(jsonl.parse(text).entities))
            await anyio.sleep(0.01)

    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(params, read_timeout_seconds=120)) for _ in range(2)]

        async def worker(n: int, client: Client) -> None:
            for i in range(15):
                name = f"p{n} entity {i}"
                await call(
                    client,
                    "create_entities",
                    {"entities": [{"name": name, "entityType": "t", "observations": [f"fact {i}"]}]},
                )
                if i:
                    await call(
                        client,
                        "create_relations",
                        {"relations": [{"from": name, "to": f"p{n} entity {i - 1}", "relationType": "after"}]},
                    )
                    await call(
                        client,
                        "add_observations",
                        {"observations": [{"entityName": f"p{n} entity {i - 1}", "contents": [f"seen by p{1 - n}"]}]},
                    )

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            async with anyio.create_task_group() as writers:
                for n, client in enumerate(clients):
                    writers.start_soon(worker, n, client)
            done = True
    assert seen  # the watcher did read the file while it was being written
    final = jsonl.parse(read(memory).decode("utf-8"))
    conn = await asyncpg.connect(database_url)
    try:
        names = [r["name"] for r in await conn.fetch("SELECT name FROM inference_enhancement.entities ORDER BY id")]
        n_obs = await conn.fetchval("SELECT count(*) FROM inference_enhancement.observations")
        n_rel = await conn.fetchval("SELECT count(*) FROM inference_enhancement.relations")
    finally:
        await conn.close()
    assert len(names) == 30
    assert [e.name for e in final.entities] == names  # the last write holds the final graph, in order
    assert sum(len(e.observations) for e in final.entities) == n_obs == 30 + 28
    assert len(final.relations) == n_rel == 28


async def test_four_clients_writing_and_searching_at_once_lose_nothing(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    params = server_params(database_url, redis_url, redis_prefix, tmp_path, EMBEDDING_MODEL="hash-384")
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(params, read_timeout_seconds=120)) for _ in range(4)]

        async def worker(n: int, client: Client) -> None:
            for i in range(12):
                name = f"w{n} item {i}"
                await call(
                    client,
                    "create_entities",
                    {"entities": [{"name": name, "entityType": "item", "observations": [f"zebra note {n}-{i}"]}]},
                )
                found = await call(client, "search_nodes", {"query": name})
                assert name in [e["name"] for e in found["entities"]]  # found at once, before its vector exists
                hits = await call(client, "search_nodes", {"query": f"zebra note {n}-", "limit": 50})
                assert {f"w{n} item {k}" for k in range(i + 1)} <= {e["name"] for e in hits["entities"]}

        async with anyio.create_task_group() as tg:
            for n, client in enumerate(clients):
                tg.start_soon(worker, n, client)
        everything = await call(clients[0], "search_nodes", {"query": "zebra", "limit": 200})
    assert len({e["name"] for e in everything["entities"]}) == 48
