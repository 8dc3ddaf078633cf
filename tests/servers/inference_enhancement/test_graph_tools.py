"""The knowledge-graph tools through the SDK's in-process client, on a real PostgreSQL and Redis."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from mcp import Client

from common.runtime import resolve_admin_url
from common.testing import call_fails as fail
from common.testing import call_ok as call
from common.testing import gin_pending_tuples, wait_until
from servers.inference_enhancement.server import build
from servers.inference_enhancement.settings import CORE_TOOLS, Settings

pytestmark = pytest.mark.anyio

PEOPLE = [
    {"name": "Ada", "entityType": "person", "observations": ["Leads the billing team", "Prefers tea"]},
    {"name": "Billing", "entityType": "team", "observations": ["Owns invoices and payment retries"]},
    {"name": "Grace", "entityType": "person", "observations": ["Reviews database migrations"]},
]


async def _counts(settings: Settings) -> tuple[int, int, int]:
    conn = await asyncpg.connect(resolve_admin_url(settings))
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM inference_enhancement.entities) AS e, "
            "(SELECT count(*) FROM inference_enhancement.observations) AS o, "
            "(SELECT count(*) FROM inference_enhancement.relations) AS r"
        )
        assert row is not None
        return row["e"], row["o"], row["r"]
    finally:
        await conn.close()


async def test_the_nine_reference_tools_keep_the_reference_shapes(settings: Settings) -> None:
    async with Client(build(settings), raise_exceptions=True) as c:
        made = await call(c, "create_entities", {"entities": PEOPLE})
        assert made == {"entities": PEOPLE}
        again = await call(c, "create_entities", {"entities": PEOPLE[:1]})
        assert again == {"entities": []}

        rel = {"from": "Ada", "to": "Billing", "relationType": "leads"}
        assert await call(c, "create_relations", {"relations": [rel]}) == {"relations": [rel]}
        assert await call(c, "create_relations", {"relations": [rel]}) == {"relations": []}

        added = await call(
            c, "add_observations", {"observations": [{"entityName": "Ada", "contents": ["Prefers tea", "Joined 2021"]}]}
        )
        assert added == {"results": [{"entityName": "Ada", "addedObservations": ["Joined 2021"]}]}

        graph = await call(c, "read_graph")
        assert [e["name"] for e in graph["entities"]] == ["Ada", "Billing", "Grace"]
        assert graph["entities"][0]["observations"] == ["Leads the billing team", "Prefers tea", "Joined 2021"]
        assert graph["relations"] == [rel]
        assert "next_cursor" not in graph  # one page: exactly the reference's shape

        opened = await call(c, "open_nodes", {"names": ["Billing", "Nobody"]})
        assert [e["name"] for e in opened["entities"]] == ["Billing"]
        assert opened["relations"] == [rel]  # relations to entities outside the set are included

        found = await call(c, "search_nodes", {"query": "TEA"})  # case-insensitive substring, as the reference
        assert next(e["name"] for e in found["entities"]) == "Ada"

        # Paging: "a" is a substring of all three; one per page, each once, then no cursor.
        seen: list[str] = []
        cursor = None
        for _ in range(5):
            page = await call(c, "search_nodes", {"query": "a", "limit": 1, **({"cursor": cursor} if cursor else {})})
            seen += [e["name"] for e in page["entities"]]
            cursor = page.get("next_cursor")
            if cursor is None:
                break
        assert sorted(seen[:3]) == ["Ada", "Billing", "Grace"]
        assert len(seen) == len(set(seen))
        first = await call(c, "search_nodes", {"query": "a", "limit": 1})
        await fail(c, "search_nodes", {"query": "tea", "cursor": first["next_cursor"]}, "cursor")

        deleted = await call(
            c, "delete_observations", {"deletions": [{"entityName": "Ada", "observations": ["Prefers tea"]}]}
        )
        assert deleted == {"success": True, "message": "Observations deleted successfully"}
        assert await call(c, "delete_relations", {"relations": [rel]}) == {
            "success": True,
            "message": "Relations deleted successfully",
        }
        await call(c, "create_relations", {"relations": [rel]})
        assert (await call(c, "delete_entities", {"entityNames": ["Billing", "Nobody"]}))["success"] is True
        graph = await call(c, "read_graph")
        assert [e["name"] for e in graph["entities"]] == ["Ada", "Grace"]
        assert graph["relations"] == []  # cascaded
        assert graph["entities"][0]["observations"] == ["Leads the billing team", "Joined 2021"]


async def test_entity_vectors_stay_in_the_row_rather_than_in_toast(settings: Settings) -> None:
    # Names long enough that name, lower-cased text, trigrams, tsvector and vector pass 2 KB together.
    long = "exports of the billing and invoicing warehouse for every region and every currency"
    many = [{"name": f"Service {i} {long}", "entityType": "service", "observations": ["Nightly"]} for i in range(20)]
    async with Client(build(settings)) as client:
        await call(client, "create_entities", {"entities": many})
        await call(client, "search_nodes", {"query": "nightly exports"})  # waits for this process's vectors
    conn = await asyncpg.connect(resolve_admin_url(settings))
    try:
        row = await conn.fetchrow(
            "SELECT count(embedding) AS embedded, count(pg_column_toast_chunk_id(embedding)) AS toasted "
            "FROM inference_enhancement.entities"
        )
    finally:
        await conn.close()
    assert row is not None
    assert (row["embedded"], row["toasted"]) == (20, 0)


async def test_relations_to_unknown_entities_are_kept_and_attach_when_the_entity_is_created(settings: Settings) -> None:
    async with Client(build(settings)) as c:
        await call(c, "create_entities", {"entities": PEOPLE})
        rels = [
            {"from": "Ada", "to": "Grace", "relationType": "mentors"},
            {"from": "Ada", "to": "Zed", "relationType": "knows"},
            {"from": "Yan", "to": "Grace", "relationType": "knows"},
            {"from": "Yan", "to": "Zed", "relationType": "knows"},
        ]
        assert await call(c, "create_relations", {"relations": rels}) == {"relations": rels}
        graph = await call(c, "read_graph")
        assert graph["relations"] == rels
        opened = await call(c, "open_nodes", {"names": ["Grace", "Zed"]})
        assert opened["relations"] == [rels[0], rels[2]]
        await call(c, "create_entities", {"entities": [{"name": "Zed", "entityType": "person", "observations": []}]})
        near = await call(c, "get_neighbors", {"name": "Zed"})
        assert [e["name"] for e in near["entities"]] == ["Zed", "Ada"]
        assert (await call(c, "open_nodes", {"names": ["Zed"]}))["relations"] == [rels[1], rels[3]]
        # Deleting by name removes the relations naming it, whether that entity exists or not.
        await call(c, "delete_entities", {"entityNames": ["Yan"]})
        assert (await call(c, "read_graph"))["relations"] == rels[:2]
        text = await fail(
            c,
            "add_observations",
            {"observations": [{"entityName": "Ada", "contents": ["x1"]}, {"entityName": "Q", "contents": ["x"]}]},
        )
        assert text == "Entity with name Q not found"
        assert await _counts(settings) == (4, 4, 2)


async def test_relations_to_unknown_entities_can_be_refused_instead(settings: Settings) -> None:
    async with Client(build(settings.model_copy(update={"dangling_relations": "refuse"}))) as c:
        await call(c, "create_entities", {"entities": PEOPLE})
        before = await _counts(settings)
        text = await fail(
            c,
            "create_relations",
            {
                "relations": [
                    {"from": "Ada", "to": "Grace", "relationType": "mentors"},
                    {"from": "Ada", "to": "Zed", "relationType": "knows"},
                    {"from": "Yan", "to": "Grace", "relationType": "knows"},
                ]
            },
        )
        assert "'Yan', 'Zed'" in text
        assert "nothing was written" in text
        assert await _counts(settings) == before


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        (
            "create_entities",
            {"entities": [{"name": "ok", "entityType": "t"}, {"name": " ", "entityType": "t"}]},
            "empty",
        ),
        ("create_entities", {"entities": [{"name": "x" * 501, "entityType": "t"}]}, "limit is 500"),
        ("create_entities", {"entities": [{"name": "a", "entityType": "t", "observations": [""]}]}, "empty"),
        ("create_relations", {"relations": [{"from": "Ada", "to": "Grace", "relationType": ""}]}, "relationType"),
        ("get_neighbors", {"name": "Ada", "depth": 4}, "depth"),
        ("get_neighbors", {"name": "Ada", "depth": 0}, "depth"),
        ("get_neighbors", {"name": "Nobody"}, "No entity named 'Nobody'"),
        ("find_path", {"source": "Ada", "target": "Nobody"}, "Nobody"),
        ("find_path", {"source": "Ada", "target": "Grace", "max_depth": 7}, "max_depth"),
        ("search_nodes", {"query": "  "}, "query is empty"),
        ("read_graph", {"cursor": "bm9wZQ"}, "cursor"),
        (
            "create_relations",
            {
                "relations": [
                    {
                        "from": "Ada",
                        "to": "Grace",
                        "relationType": "r",
                        "validFrom": "2025-01-02T00:00:00Z",
                        "validTo": "2025-01-01T00:00:00Z",
                    }
                ]
            },
            "validFrom must be before validTo",
        ),
    ],
)
async def test_bad_input_is_refused_clearly_and_nothing_is_half_written(
    settings: Settings, tool: str, args: dict[str, Any], expected: str
) -> None:
    async with Client(build(settings)) as c:
        await call(c, "create_entities", {"entities": PEOPLE})
        before = await _counts(settings)
        assert expected in await fail(c, tool, args)
        assert await _counts(settings) == before


async def test_neighbours_and_paths_follow_relations_and_survive_cycles(settings: Settings) -> None:
    ring = [{"name": f"n{i}", "entityType": "node", "observations": []} for i in range(8)]
    async with Client(build(settings)) as c:
        await call(c, "create_entities", {"entities": ring})
        # A directed ring n0 -> n1 -> ... -> n7 -> n0, plus a chord n0 -> n4 and a self-loop.
        rels = [{"from": f"n{i}", "to": f"n{(i + 1) % 8}", "relationType": "next"} for i in range(8)]
        rels += [{"from": "n0", "to": "n4", "relationType": "jump"}, {"from": "n2", "to": "n2", "relationType": "self"}]
        await call(c, "create_relations", {"relations": rels})

        one = await call(c, "get_neighbors", {"name": "n0"})
        assert [e["name"] for e in one["entities"]] == ["n0", "n1", "n4", "n7"]
        two = await call(c, "get_neighbors", {"name": "n0", "depth": 2, "relation_types": ["next"], "direction": "out"})
        assert [e["name"] for e in two["entities"]] == ["n0", "n1", "n2"]
        page = await call(c, "get_neighbors", {"name": "n0", "depth": 3, "limit": 3})
        assert len(page["entities"]) == 3
        assert page["next_cursor"]
        rest = await call(c, "get_neighbors", {"name": "n0", "depth": 3, "limit": 3, "cursor": page["next_cursor"]})
        assert not {e["name"] for e in rest["entities"]} & {e["name"] for e in page["entities"]}

        path = await call(c, "find_path", {"source": "n1", "target": "n5", "direction": "out"})
        assert path["found"] is True
        assert path["names"] == ["n1", "n2", "n3", "n4", "n5"]
        both = await call(c, "find_path", {"source": "n1", "target": "n5"})
        assert both["names"] == ["n1", "n0", "n4", "n5"]
        short = await call(c, "find_path", {"source": "n1", "target": "n5", "direction": "out", "max_depth": 3})
        assert short["found"] is False
        assert short["names"] == []
        self_path = await call(c, "find_path", {"source": "n3", "target": "n3"})
        assert self_path["names"] == ["n3"]


async def test_as_of_shows_the_graph_at_a_past_time_and_provenance_records_sources(
    make_settings: Callable[..., Any],
) -> None:
    settings = make_settings(Settings, tools=None, embedding_model="hash-384", source="test-suite")
    async with Client(build(settings)) as c:
        await call(c, "create_entities", {"entities": PEOPLE})
        now = datetime.now(UTC)
        past, future = (now - timedelta(days=30)).isoformat(), (now + timedelta(days=30)).isoformat()
        await call(
            c,
            "create_relations",
            {
                "relations": [
                    {"from": "Ada", "to": "Billing", "relationType": "leads", "validTo": future},
                    {
                        "from": "Grace",
                        "to": "Billing",
                        "relationType": "led",
                        "validTo": (now - timedelta(days=1)).isoformat(),
                    },
                ]
            },
        )
        current = await call(c, "get_neighbors", {"name": "Billing", "as_of": datetime.now(UTC).isoformat()})
        assert sorted(e["name"] for e in current["entities"]) == ["Ada", "Billing"]
        every = await call(c, "get_neighbors", {"name": "Billing"})
        assert sorted(e["name"] for e in every["entities"]) == ["Ada", "Billing", "Grace"]
        before = await call(c, "read_graph", {"as_of": past})
        assert before["entities"] == []
        assert before["relations"] == []

        prov = await call(c, "get_provenance", {"name": "Ada"})
        assert prov["source"] == "test-suite"
        assert [o["text"] for o in prov["observations"]] == PEOPLE[0]["observations"]
        assert prov["relations"][0]["text"] == "Ada leads Billing"
        assert prov["relations"][0]["valid_to"] is not None


async def test_read_graph_pages_stay_bounded_and_cover_everything(make_settings: Callable[..., Any]) -> None:
    settings = make_settings(Settings, tools=None, embedding_model="hash-384", result_char_budget=2_000)
    many = [{"name": f"e{i:03}", "entityType": "thing", "observations": [f"fact {i} " + "x" * 80]} for i in range(60)]
    async with Client(build(settings)) as c:
        await call(c, "create_entities", {"entities": many})
        await call(
            c,
            "create_relations",
            {"relations": [{"from": f"e{i:03}", "to": "e000", "relationType": "r"} for i in range(60)]},
        )
        seen: list[str] = []
        relations = 0
        cursor = None
        for _ in range(100):
            page = await call(c, "read_graph", {"cursor": cursor} if cursor else {})
            assert len(str(page)) < 4_000
            seen += [e["name"] for e in page["entities"]]
            relations += len(page["relations"])
            cursor = page.get("next_cursor")
            if cursor is None:
                break
        assert seen == [m["name"] for m in many]
        assert relations == 60
        names = await call(c, "read_graph", {"names_only": True, "limit": 5})
        assert names["entities"][0] == {"name": "e000", "entityType": "thing", "observations": []}


async def test_import_of_a_reference_file_with_1000_entities_round_trips_through_export(
    settings: Settings, tmp_path: Path
) -> None:
    import json

    lines = [
        json.dumps(
            {
                "type": "entity",
                "name": f"Entity {i}",
                "entityType": ["person", "project", "tool"][i % 3],
                "observations": [f"observation {i}.{k} — ünïcode" for k in range(3)],
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for i in range(1_000)
    ]
    lines += [
        json.dumps(
            {
                "type": "relation",
                "from": f"Entity {i}",
                "to": f"Entity {(i * 7 + k) % 1000}",
                "relationType": f"rel{k}",
            },
            separators=(",", ":"),
        )
        for i in range(1_000)
        for k in (1, 2)
    ]
    original = "\n".join(lines)
    source = tmp_path / "memory.jsonl"
    source.write_text(original, encoding="utf-8")
    async with Client(build(settings.model_copy(update={"file_roots": [tmp_path]}))) as c:
        imported = await call(c, "import_memory_jsonl", {"path": str(source)})
        assert imported["entities_created"] == 1_000
        assert imported["observations_added"] == 3_000
        assert imported["relations_created"] == 2_000
        again = await call(c, "import_memory_jsonl", {"path": str(source)})
        assert again["entities_created"] == again["observations_added"] == again["relations_created"] == 0
        out = tmp_path / "export.jsonl"
        exported = await call(c, "export_memory_jsonl", {"path": str(out)})
        assert (exported["entities"], exported["relations"]) == (1_000, 2_000)
        assert out.read_text(encoding="utf-8") == original
        found = await call(c, "search_nodes", {"query": "observation 512.1"})
        assert found["entities"][0]["name"] == "Entity 512"


async def test_a_malformed_import_writes_nothing_and_dangling_relations_are_kept_and_listed(settings: Settings) -> None:
    async with Client(build(settings)) as c:
        bad = '{"type":"entity","name":"A","entityType":"t","observations":[]}\n{not json'
        assert "line 2" in await fail(c, "import_memory_jsonl", {"content": bad})
        assert await _counts(settings) == (0, 0, 0)
        dangling = (
            '{"type":"entity","name":"A","entityType":"t","observations":["o"]}\n'
            '{"type":"relation","from":"A","to":"Ghost","relationType":"knows"}'
        )
        result = await call(c, "import_memory_jsonl", {"content": dangling})
        assert (result["relations_created"], result["relations_dangling"], result["problems"]) == (1, 1, [])
        assert "Ghost" in result["dangling"][0]
        graph = await call(c, "read_graph")
        assert graph["relations"] == [{"from": "A", "to": "Ghost", "relationType": "knows"}]


async def test_only_the_core_tools_are_listed_by_default(make_settings: Callable[..., Any]) -> None:
    async with Client(build(make_settings(Settings))) as c:
        listed = await c.list_tools()
    assert sorted(t.name for t in listed.tools) == sorted(CORE_TOOLS)
    all_tools = make_settings(Settings, tools=["all"])
    assert all_tools.tools is None


async def test_after_embedding_many_entities_their_index_pending_lists_are_merged(settings: Settings) -> None:
    admin = resolve_admin_url(settings)
    async with Client(build(settings)) as client:
        await call(client, "create_entities", {"entities": PEOPLE})
        await wait_until(lambda: _embedded(admin), timeout_s=30, what="the background vectors", every_s=0.1)
        # A few vectors: their new row versions wait in the pending lists (merged later by vacuum).
        assert await gin_pending_tuples(admin, "inference_enhancement.entities_grams_idx") > 0
        many = [{"name": f"Service {i}", "entityType": "service", "observations": ["Nightly"]} for i in range(70)]
        await call(client, "create_entities", {"entities": many})

        async def merged() -> bool:
            grams = await gin_pending_tuples(admin, "inference_enhancement.entities_grams_idx")
            return grams == 0 and await gin_pending_tuples(admin, "inference_enhancement.entities_tsv_idx") == 0

        await wait_until(merged, timeout_s=30, what="the pending lists merged after the embedder's pass", every_s=0.25)
        assert await _embedded(admin)


async def _embedded(admin: str) -> bool:
    """No entity waits for its vector."""
    conn = await asyncpg.connect(admin)
    try:
        stale = await conn.fetchval(
            "SELECT count(*) FROM inference_enhancement.entities WHERE embedded_version IS DISTINCT FROM version"
        )
    finally:
        await conn.close()
    return bool(stale == 0)


def test_the_graph_ranks_200_keyword_matches_per_table_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEYWORD_SCAN_CAP", raising=False)
    assert Settings(_env_file=None).keyword_scan_cap == 200  # type: ignore[call-arg]
    monkeypatch.setenv("KEYWORD_SCAN_CAP", "800")
    assert Settings(_env_file=None).keyword_scan_cap == 800  # type: ignore[call-arg]
