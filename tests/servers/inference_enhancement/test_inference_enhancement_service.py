"""The knowledge-graph service without MCP: its operations, cursors, background embedder and shutdown."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import anyio
import pytest

from common.embeddings import HashEmbedder
from common.errors import DimensionMismatch, InvalidInput, NotFound
from common.paging import encode_cursor, fingerprint
from common.runtime import open_deps
from common.testing import wait_until
from servers.inference_enhancement import store
from servers.inference_enhancement.models import DeletionIn, EntityIn, ObservationsIn, RelationIn, RelationKey
from servers.inference_enhancement.service import NAME, GraphService
from servers.inference_enhancement.settings import Settings
from tests.servers.inference_enhancement.conftest import OpenGraph

pytestmark = pytest.mark.anyio


def entity(name: str, kind: str = "person", *observations: str) -> EntityIn:
    return EntityIn(name=name, entityType=kind, observations=list(observations))


def rel(a: str, b: str, kind: str, **validity: Any) -> RelationIn:
    return RelationIn.model_validate({"from": a, "to": b, "relationType": kind, **validity})


PEOPLE = [
    entity("Ada", "person", "Leads the billing team", "Prefers tea"),
    entity("Billing", "team", "Owns invoices and payment retries"),
    entity("Grace", "person", "Reviews database migrations"),
]


async def _stale(svc: GraphService) -> int:
    return len(await store.stale(svc.deps.db, None, 10_000))


async def test_created_entities_are_returned_once_and_read_back_in_creation_order(graph: GraphService) -> None:
    made = await graph.create_entities([*PEOPLE, entity("Ada", "robot", "dup")], client="tester")
    assert [(e.name, e.entityType, e.observations) for e in made.entities] == [
        ("Ada", "person", ["Leads the billing team", "Prefers tea"]),
        ("Billing", "team", ["Owns invoices and payment retries"]),
        ("Grace", "person", ["Reviews database migrations"]),
    ]
    assert (await graph.create_entities([entity("Ada")])).entities == []
    page = await graph.read_graph()
    assert [e.name for e in page.entities] == ["Ada", "Billing", "Grace"]
    assert page.next_cursor is None
    assert (await graph.provenance("Ada")).source == "tester"


async def test_observations_and_relations_report_only_what_was_new(graph: GraphService) -> None:
    await graph.create_entities(PEOPLE)
    added = await graph.add_observations([ObservationsIn(entityName="Ada", contents=["Prefers tea", "Joined 2021"])])
    assert [(a.entityName, a.addedObservations) for a in added.results] == [("Ada", ["Joined 2021"])]
    made = await graph.create_relations([rel("Ada", "Billing", "leads")])
    assert [(r.from_, r.to, r.relationType) for r in made.relations] == [("Ada", "Billing", "leads")]
    assert (await graph.create_relations([rel("Ada", "Billing", "leads")])).relations == []
    opened = await graph.open_nodes(["Billing", "Nobody"])
    assert [e.name for e in opened.entities] == ["Billing"]
    assert [(r.from_, r.to) for r in opened.relations] == [("Ada", "Billing")]


async def test_observations_of_an_unknown_entity_fail_whole_and_relations_to_one_dangle(graph: GraphService) -> None:
    await graph.create_entities(PEOPLE)
    made = await graph.create_relations([rel("Ada", "Grace", "mentors"), rel("Yan", "Zed", "knows")])
    assert [(r.from_, r.to) for r in made.relations] == [("Ada", "Grace"), ("Yan", "Zed")]
    with pytest.raises(NotFound, match=r"^Entity with name Q not found$"):
        await graph.add_observations(
            [ObservationsIn(entityName="Ada", contents=["x1"]), ObservationsIn(entityName="Q", contents=["x"])]
        )
    summary = await graph.summary()
    assert (summary["entities"], summary["observations"], summary["relations"]) == (3, 4, 2)
    refusing = GraphService(graph.deps, graph.settings.model_copy(update={"dangling_relations": "refuse"}))
    with pytest.raises(NotFound, match="'Yan', 'Zed'"):
        await refusing.create_relations([rel("Yan", "Zed", "likes")])


async def test_bad_values_are_refused_with_what_to_fix(graph: GraphService) -> None:
    await graph.create_entities(PEOPLE)
    with pytest.raises(InvalidInput, match="empty"):
        await graph.create_entities([entity(" ")])
    with pytest.raises(InvalidInput, match="limit is 500"):
        await graph.create_entities([entity("x" * 501)])
    with pytest.raises(InvalidInput, match="validFrom must be before validTo"):
        await graph.create_relations(
            [rel("Ada", "Grace", "r", validFrom="2025-01-02T00:00:00Z", validTo="2025-01-01T00:00:00Z")]
        )
    with pytest.raises(InvalidInput, match="query is empty"):
        await graph.search_nodes("  ")
    with pytest.raises(InvalidInput, match="query is empty"):
        await graph.rank_passages(" ", ["x"])


async def test_deletes_cascade_and_ignore_unknown_names(graph: GraphService) -> None:
    await graph.create_entities(PEOPLE)
    await graph.create_relations([rel("Ada", "Billing", "leads"), rel("Grace", "Billing", "helps")])
    done = await graph.delete_observations([DeletionIn(entityName="Ada", observations=["Prefers tea", "nope"])])
    assert done.message == "Observations deleted successfully"
    await graph.delete_relations(
        [RelationKey.model_validate({"from": "Grace", "to": "Billing", "relationType": "helps"})]
    )
    assert (await graph.delete_entities(["Billing", "Nobody"])).success
    page = await graph.read_graph()
    assert [(e.name, e.observations) for e in page.entities] == [
        ("Ada", ["Leads the billing team"]),
        ("Grace", ["Reviews database migrations"]),
    ]
    assert page.relations == []


async def test_search_finds_substrings_first_and_pages_with_cursors_bound_to_the_query(graph: GraphService) -> None:
    await graph.create_entities(PEOPLE)
    found = await graph.search_nodes("TEA")
    assert found.entities[0].name == "Ada"
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = await graph.search_nodes("a", limit=1, cursor=cursor)
        seen += [e.name for e in page.entities]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen[:3]) == ["Ada", "Billing", "Grace"]
    assert len(seen) == len(set(seen))
    first = await graph.search_nodes("a", limit=1)
    with pytest.raises(InvalidInput, match="cursor"):
        await graph.search_nodes("tea", cursor=first.next_cursor)


async def test_read_graph_pages_by_key_within_the_character_budget_and_refuses_forged_cursors(
    open_graph: OpenGraph, make_settings: Any
) -> None:
    settings = make_settings(Settings, tools=None, embedding_model="hash-384", result_char_budget=2_000)
    many = [entity(f"e{i:03}", "thing", f"fact {i} " + "x" * 80) for i in range(60)]
    async with open_graph(settings) as svc:
        await svc.create_entities(many)
        seen: list[str] = []
        cursor = None
        for _ in range(100):
            page = await svc.read_graph(cursor=cursor)
            assert len(page.model_dump_json()) < 4_000
            seen += [e.name for e in page.entities]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == [e.name for e in many]
        forged = encode_cursor(fingerprint("read_graph", False, "None"), after="1")
        with pytest.raises(InvalidInput, match="cursor"):
            await svc.read_graph(cursor=forged)
        with pytest.raises(InvalidInput, match="cursor"):  # a cursor of names_only=True
            await svc.read_graph(cursor=(await svc.read_graph(limit=1, names_only=True)).next_cursor)


async def test_neighbours_and_paths_follow_relations_around_cycles(graph: GraphService) -> None:
    await graph.create_entities([entity(f"n{i}", "node") for i in range(8)])
    rels = [rel(f"n{i}", f"n{(i + 1) % 8}", "next") for i in range(8)]
    await graph.create_relations([*rels, rel("n0", "n4", "jump"), rel("n2", "n2", "self")])
    one = await graph.neighbors("n0")
    assert [e.name for e in one.entities] == ["n0", "n1", "n4", "n7"]
    two = await graph.neighbors("n0", depth=2, relation_types=["next"], direction="out")
    assert [e.name for e in two.entities] == ["n0", "n1", "n2"]
    page = await graph.neighbors("n0", depth=3, limit=3)
    rest = await graph.neighbors("n0", depth=3, limit=3, cursor=page.next_cursor)
    assert not {e.name for e in rest.entities} & {e.name for e in page.entities}
    assert (await graph.find_path("n1", "n5", direction="out")).names == ["n1", "n2", "n3", "n4", "n5"]
    assert (await graph.find_path("n1", "n5")).names == ["n1", "n0", "n4", "n5"]
    assert not (await graph.find_path("n1", "n5", direction="out", max_depth=3)).found
    with pytest.raises(NotFound, match="Nobody"):
        await graph.find_path("n1", "Nobody")


async def test_as_of_hides_relations_outside_their_validity(graph: GraphService) -> None:
    await graph.create_entities(PEOPLE)
    now = datetime.now(UTC)
    await graph.create_relations(
        [
            rel("Ada", "Billing", "leads", validTo=now + timedelta(days=30)),
            rel("Grace", "Billing", "led", validTo=now - timedelta(days=1)),
        ]
    )
    current = await graph.neighbors("Billing", as_of=datetime.now(UTC))
    assert sorted(e.name for e in current.entities) == ["Ada", "Billing"]
    assert (await graph.read_graph(as_of=now - timedelta(days=30))).entities == []


async def test_import_merges_and_export_writes_the_reference_format(
    open_graph: OpenGraph, settings: Settings, tmp_path: Any
) -> None:
    async with open_graph(settings.model_copy(update={"file_roots": [tmp_path]})) as graph:
        content = "\n".join(
            [
                '{"type":"entity","name":"Ada","entityType":"person","observations":["Prefers tea",""]}',
                '{"type":"entity","name":"Billing","entityType":"team","observations":[]}',
                '{"type":"relation","from":"Ada","to":"Billing","relationType":"leads"}',
                '{"type":"relation","from":"Ada","to":"Ghost","relationType":"knows"}',
            ]
        )
        imported = await graph.import_jsonl(content=content)
        assert (imported.entities_created, imported.observations_added, imported.relations_created) == (2, 1, 2)
        assert imported.relations_dangling == 1
        assert any("Ghost" in p for p in imported.dangling)
        again = await graph.import_jsonl(content=content)
        assert again.entities_created == again.observations_added == again.relations_created == 0
        out = tmp_path / "out.jsonl"
        exported = await graph.export_jsonl(path=str(out))
        assert (exported.entities, exported.relations, exported.content) == (2, 2, None)
        assert out.read_text(encoding="utf-8") == "\n".join(
            [content.split("\n")[0].replace(',""', ""), *content.split("\n")[1:4]]
        )
        with pytest.raises(InvalidInput, match="exactly one"):
            await graph.import_jsonl()
        with pytest.raises(InvalidInput, match="line 1"):
            await graph.import_jsonl(content="{bad")


async def test_an_inline_export_over_the_limit_asks_for_a_path(open_graph: OpenGraph, make_settings: Any) -> None:
    settings = make_settings(Settings, tools=None, embedding_model="hash-384", export_inline_max_chars=1_000)
    async with open_graph(settings) as svc:
        await svc.create_entities([entity(f"e{i}", "thing", "y" * 100) for i in range(20)])
        with pytest.raises(InvalidInput, match="pass path"):
            await svc.export_jsonl()


async def test_enhance_prompt_cites_entities_within_the_token_budget(graph: GraphService) -> None:
    await graph.create_entities(PEOPLE)
    await graph.create_relations([rel("Ada", "Billing", "leads")])
    block = await graph.enhance_prompt("who leads billing?", max_tokens=60)
    assert block.tokens <= 60
    assert block.entities
    assert all(f"[{name}]" in block.text for name in block.entities)
    assert (await graph.enhance_prompt("zzzz qqqq")).text == ""


async def test_rank_passages_puts_the_closest_passage_first(graph: GraphService) -> None:
    ranked = await graph.rank_passages("tea", ["databases and tables", "I like green tea"], limit=1)
    assert [r.index for r in ranked.ranked] == [1]


async def test_provenance_pages_observations_with_a_cursor(graph: GraphService) -> None:
    await graph.create_entities([entity("Ada", "person", *[f"fact {i}" for i in range(5)])])
    first = await graph.provenance("Ada", limit=3)
    assert [o.text for o in first.observations] == ["fact 0", "fact 1", "fact 2"]
    rest = await graph.provenance("Ada", limit=3, cursor=first.next_cursor)
    assert [o.text for o in rest.observations] == ["fact 3", "fact 4"]
    assert rest.next_cursor is None
    with pytest.raises(NotFound):
        await graph.provenance("Nobody")
    with pytest.raises(NotFound):
        await graph.entity("Nobody")


class _HeldEmbedder:
    """The hash embedder whose texts (the background embedder's) wait until released; queries pass."""

    def __init__(self, queries: set[str]) -> None:
        self._inner = HashEmbedder(384)
        self.queries = queries
        self.release = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def embed(self, texts: Any) -> Any:
        await self.release.wait()
        return await self._inner.embed(texts)

    async def embed_one(self, text: str, *, beside_work: bool = False) -> Any:
        if text not in self.queries:
            await self.release.wait()
        return await self._inner.embed_one(text, beside_work=beside_work)


async def test_written_entities_are_embedded_in_the_background_and_searches_do_not_wait_for_them(
    open_graph: OpenGraph,
) -> None:
    held = _HeldEmbedder({"schema"})
    async with open_graph(embedder=held) as graph:
        await graph.create_entities(PEOPLE)
        await graph.add_observations([ObservationsIn(entityName="Grace", contents=["Owns the schema"])])
        with anyio.fail_after(10):  # the vectors are held back: a search that waited for them would hang
            found = await graph.search_nodes("schema")
        assert [e.name for e in found.entities] == ["Grace"]
        assert await _stale(graph) == 3
        held.release.set()
        assert await graph.vectors_ready(10.0)
        assert await _stale(graph) == 0


async def test_a_stopping_service_embeds_its_last_writes_first(open_graph: OpenGraph) -> None:
    async with open_graph() as svc:
        await svc.create_entities(PEOPLE)
    async with open_graph() as svc:
        assert await _stale(svc) == 0


async def test_closing_right_after_an_import_does_not_hang(open_graph: OpenGraph) -> None:
    with anyio.fail_after(15):
        async with open_graph() as svc:
            await svc.import_jsonl(content='{"type":"entity","name":"Ada","entityType":"person","observations":["x"]}')


async def test_the_embedder_sweep_picks_up_entities_another_process_left_stale(graph: GraphService) -> None:
    await graph.create_entities(PEOPLE)
    assert await graph.vectors_ready(10.0)
    ids = [r["id"] for r in await store.entities_by_name(graph.deps.db, ["Ada"])]

    async def written_elsewhere(conn: Any) -> None:
        await store.bump_versions(conn, ids)

    await graph.deps.db.run(written_elsewhere)
    assert await _stale(graph) == 1
    runs = graph.embedder.runs
    graph.embedder.wake()  # what the sweep does every STALE_SWEEP_S
    await wait_until(lambda: graph.embedder.runs > runs, timeout_s=10, what="an embedder pass")
    assert await _stale(graph) == 0


async def test_a_search_error_surfaces_as_itself_not_as_a_task_group(open_graph: OpenGraph) -> None:
    async with open_graph(embedder=HashEmbedder(128)) as svc:
        with pytest.raises(DimensionMismatch):
            await svc.search_nodes("tea")


class _CountingDb:
    """The pool, counting the connections a call runs statements on."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.runs = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def run(self, fn: Any, **kw: Any) -> Any:
        self.runs += 1
        return await self._inner.run(fn, **kw)


class _EmbedsOnceLexicalRuns:
    """An embedder whose query vector comes only once the lexical statement has started."""

    def __init__(self, inner: Any, started: Any) -> None:
        self._inner = inner
        self._started = started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def embed_one(self, text: str, *, beside_work: bool = False) -> Any:
        await wait_until(self._started, timeout_s=5, what="the lexical statement to start")
        return await self._inner.embed_one(text, beside_work=beside_work)


async def test_the_lexical_statement_runs_while_the_query_is_embedded(settings: Settings) -> None:
    async with open_deps(NAME, settings) as deps:
        db = _CountingDb(deps.db)
        deps = dataclasses.replace(
            deps, db=cast(Any, db), embedder=_EmbedsOnceLexicalRuns(deps.embedder, lambda: db.runs > 0)
        )
        async with GraphService.open(deps, settings) as svc:
            await svc.create_entities(PEOPLE)
            assert await svc.vectors_ready(10.0)
            db.runs = 0
            found = await svc.search_nodes("tea")
    assert found.entities[0].name == "Ada"


async def test_a_dangling_end_and_its_entity_created_at_the_same_moment_always_meet(open_graph: OpenGraph) -> None:
    """Relations to X and the entity X written at once by two services (two processes): each relation ends
    attached to X, whichever committed first."""
    async with open_graph() as one, open_graph() as two:
        await one.create_entities([entity("Hub")])

        async def relate(i: int) -> None:
            await one.create_relations([rel("Hub", f"X{i}", "knows"), rel(f"Y{i}", f"X{i}", "knows")])

        async def create(i: int) -> None:
            await two.create_entities([entity(f"X{i}"), entity(f"Z{i}")])

        async with anyio.create_task_group() as tg:
            for i in range(25):
                tg.start_soon(relate, i)
                tg.start_soon(create, i)
        rows = await one.deps.db.fetch(
            "SELECT r.to_name, r.to_id, e.id AS entity_id FROM inference_enhancement.relations r "
            "LEFT JOIN inference_enhancement.entities e ON e.name = r.to_name"
        )
        assert len(rows) == 50
        assert all(r["to_id"] == r["entity_id"] for r in rows), [dict(r) for r in rows if r["to_id"] is None][:3]
        near = await one.neighbors("Hub")
        assert sorted(e.name for e in near.entities) == sorted(["Hub", *(f"X{i}" for i in range(25))])
