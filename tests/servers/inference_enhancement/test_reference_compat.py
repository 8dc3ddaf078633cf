"""Drop-in compatibility with the reference memory server, both run over stdio side by side.

The pinned reference (`requirements/npm`, installed by scripts/setup) and this server with its
default settings get the same calls of the nine tools; every step compares the three channels a
client reads: isError, the text content and the structured content (as JSON text, so key order
counts). A step may differ only by a deliberate difference named in :data:`ALLOWED` (each is listed
in docs/servers/inference_enhancement.md), and then only in the way that entry describes; every
divergence of state it causes is undone by a later step that must match exactly.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, types
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPDeprecationWarning

from common.testing import server_params as spawn_params
from tests.servers.inference_enhancement.reference import ReferenceUnavailable, pinned_reference

pytestmark = pytest.mark.anyio

Step = tuple[str, dict[str, Any], str | None]
#: The reference's one resource, which this server serves too.
GRAPH = "memory://knowledge-graph"


@pytest.fixture(scope="module")
def reference_script() -> Path:
    try:
        return pinned_reference()
    except ReferenceUnavailable as exc:
        if "node is not installed" in str(exc):
            pytest.skip(str(exc))
        pytest.fail(str(exc))


def _reference(script: Path, memory: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command="node", args=[str(script)], env={**os.environ, "MEMORY_FILE_PATH": str(memory)}
    )


def _ours(database_url: str, redis_url: str, redis_prefix: str, data_dir: Path, **env: str) -> Any:
    """This server with its default tools, as a switching user would configure it."""
    return spawn_params(
        "inference_enhancement", database_url, redis_url, redis_prefix, data_dir, EMBEDDING_MODEL="hash-384", **env
    )


class Channels:
    """What a client reads from one tool result."""

    def __init__(self, result: Any) -> None:
        self.is_error = bool(result.is_error)
        assert len(result.content) == 1, result.content
        assert result.content[0].type == "text", result.content
        self.text: str = result.content[0].text
        self.structured: dict[str, Any] | None = result.structured_content

    @property
    def structured_json(self) -> str | None:
        return None if self.structured is None else json.dumps(self.structured, ensure_ascii=False)

    def __repr__(self) -> str:
        return f"isError={self.is_error} text={self.text[:300]!r} structured={self.structured_json}"


def _js(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)


def _dedupe(items: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


# ----------------------------------------------------------------------------------- deliberate differences


def _batch_duplicates(ref: Channels, ours: Channels) -> None:
    """A repeat inside one call (entity, observation, relation) is stored and returned once; the reference
    stores and returns every copy."""
    assert ref.structured is not None
    assert not ref.is_error
    assert not ours.is_error
    ((key, items),) = ref.structured.items()
    if key == "results":
        items = [{**r, "addedObservations": _dedupe(r["addedObservations"])} for r in items]
    elif key == "entities":  # the first entity of a name counts
        firsts = {e["name"]: e for e in reversed(items)}
        items = [{**e, "observations": _dedupe(e["observations"])} for e in items if firsts[e["name"]] is e]
    expected = _dedupe(items)
    assert expected != ref.structured[key], "not a batch-duplicate step"
    assert ours.structured == {key: expected}
    assert ours.text == _js(expected)


def _empty_values_refused(ref: Channels, ours: Channels) -> None:
    """Empty names, types of relations and observations are refused with what to fix (the reference stores them)."""
    assert not ref.is_error
    assert ours.is_error
    assert "empty" in ours.text


def _argument_wording(ref: Channels, ours: Channels) -> None:
    """Arguments that do not match the input schema fail in both, worded by each server's SDK."""
    assert ref.is_error
    assert ours.is_error
    assert ref.text.startswith("MCP error -32602: Input validation error: Invalid arguments for tool")
    assert ours.text.startswith("Invalid arguments for")


def _observations_optional(ref: Channels, ours: Channels) -> None:
    """An entity without ``observations`` is created with none (the reference refuses the call)."""
    assert ref.is_error
    assert "observations" in ref.text
    assert not ours.is_error
    assert ours.structured is not None
    assert ours.structured["entities"][0]["observations"] == []


def _ranked_search(ref: Channels, ours: Channels) -> None:
    """search_nodes ranks its hits and adds keyword and meaning matches; it holds every entity the reference
    finds, with the same content and ahead of the additions, and every relation the reference returns
    (same order among them)."""
    assert not ref.is_error
    assert not ours.is_error
    assert ref.structured is not None
    assert ours.structured is not None
    assert ours.text == _js(ours.structured)
    mine, theirs = ours.structured["entities"], ref.structured["entities"]
    for e in theirs:
        assert e in mine, e["name"]
    # The reference's (substring) matches come first, then the additions.
    assert sorted(e["name"] for e in mine[: len(theirs)]) == sorted(e["name"] for e in theirs)
    rels = [r for r in ours.structured["relations"] if r in ref.structured["relations"]]
    assert rels == ref.structured["relations"]


def _empty_query(ref: Channels, ours: Channels) -> None:
    """An empty search query is refused (the reference returns the whole graph)."""
    assert not ref.is_error
    assert ours.is_error
    assert "query is empty" in ours.text


def _long_name_clipped(ref: Channels, ours: Channels) -> None:
    """An error repeats at most the first 80 characters of a name the caller gave."""
    assert ref.is_error
    assert ours.is_error
    assert ours.text == ref.text.replace("x" * 120, "x" * 80 + "...")


ALLOWED: dict[str, Callable[[Channels, Channels], None]] = {
    "batch duplicates stored once": _batch_duplicates,
    "empty values refused": _empty_values_refused,
    "argument errors worded by the SDK": _argument_wording,
    "observations may be omitted": _observations_optional,
    "ranked search": _ranked_search,
    "empty query refused": _empty_query,
    "long names clipped in errors": _long_name_clipped,
}


def compare(step: Step, ref: Channels, ours: Channels) -> None:
    """The two servers' answers to one step are the same on every channel, or differ only as allowed."""
    tool, args, allowed = step
    where = f"{tool}({json.dumps(args, ensure_ascii=False)[:200]})"
    if allowed is None:
        assert (ours.is_error, ours.text, ours.structured_json) == (ref.is_error, ref.text, ref.structured_json), (
            f"{where}\n  reference: {ref}\n  ours:      {ours}"
        )
    else:
        try:
            ALLOWED[allowed](ref, ours)
        except AssertionError as exc:
            raise AssertionError(f"{where} [{allowed}]: {exc}\n  reference: {ref}\n  ours:      {ours}") from exc


# ----------------------------------------------------------------------------------- the replay

E = dict[str, Any]


def ent(name: str, entity_type: str, *observations: str) -> E:
    return {"name": name, "entityType": entity_type, "observations": list(observations)}


def rel(a: str, b: str, kind: str) -> E:
    return {"from": a, "to": b, "relationType": kind}


LONG = "x" * 120

STEPS: list[Step] = [
    ("read_graph", {}, None),
    ("search_nodes", {"query": "anything"}, None),
    ("open_nodes", {"names": ["Ada"]}, None),
    (
        "create_entities",
        {
            "entities": [
                ent("Ada", "person", "Leads the billing team", "Prefers tea"),
                ent("Billing", "team", "Owns invoices and payment retries"),
                ent("Grace", "person", "Reviews database migrations"),
                ent("Postgres", "database", "Runs version 18", "Has pgvector"),
                ent("Café Ümlaut", "Place", "Serves STRONG coffee", "Öffnet um 8"),
                ent("東京", "city", "首都", "Hosts the 🗼 office"),
                ent("Lonely", "thing"),
            ]
        },
        None,
    ),
    ("create_entities", {"entities": [ent("Ada", "robot", "dup")]}, None),
    ("create_entities", {"entities": []}, None),
    ("create_entities", {"entities": [ent("ada", "person", "lower-case Ada is someone else")]}, None),
    ("create_entities", {"entities": [ent("Twin", "t", "a"), ent("Twin", "t", "b")]}, "batch duplicates stored once"),
    ("delete_entities", {"entityNames": ["Twin"]}, None),
    ("create_entities", {"entities": [ent("Echo", "t", "same", "same")]}, "batch duplicates stored once"),
    ("delete_observations", {"deletions": [{"entityName": "Echo", "observations": ["same"]}]}, None),
    ("create_entities", {"entities": [ent("", "t")]}, "empty values refused"),
    ("delete_entities", {"entityNames": [""]}, None),
    ("create_entities", {"entities": [{"name": "NoObs", "entityType": "t"}]}, "observations may be omitted"),
    ("create_entities", {"entities": "Ada"}, "argument errors worded by the SDK"),
    ("delete_entities", {"entityNames": ["NoObs"]}, None),
    ("read_graph", {}, None),
    (
        "create_relations",
        {
            "relations": [
                rel("Ada", "Billing", "leads"),
                rel("Grace", "Postgres", "administers"),
                rel("Billing", "Postgres", "stores data in"),
                rel("Ada", "Café Ümlaut", "visits"),
                rel("Ada", "Ada", "reflects on"),
                rel("ada", "Ada", "is not"),
            ]
        },
        None,
    ),
    ("create_relations", {"relations": [rel("Ada", "Billing", "leads")]}, None),
    ("create_relations", {"relations": [rel("Ada", "Billing", "LEADS")]}, None),
    ("create_relations", {"relations": []}, None),
    ("create_relations", {"relations": [rel("Ada", "Zed", "knows")]}, None),
    ("create_relations", {"relations": [rel("Yan", "Grace", "admires"), rel("Yan", "Zed", "knows")]}, None),
    ("create_relations", {"relations": [rel("東京", "Nowhere", "twinned with")]}, None),
    (
        "create_relations",
        {"relations": [rel("Ada", "Grace", "mentors"), rel("Ada", "Grace", "mentors")]},
        "batch duplicates stored once",
    ),
    ("delete_relations", {"relations": [rel("Ada", "Grace", "mentors")]}, None),
    ("create_relations", {"relations": [rel("Ada", "Grace", "")]}, "empty values refused"),
    ("delete_relations", {"relations": [rel("Ada", "Grace", "")]}, None),
    ("read_graph", {}, None),
    ("open_nodes", {"names": ["Ada", "Nobody", "Postgres"]}, None),
    ("open_nodes", {"names": ["Grace"]}, None),
    ("open_nodes", {"names": ["Zed"]}, None),
    ("open_nodes", {"names": ["ADA"]}, None),
    ("open_nodes", {"names": []}, None),
    ("open_nodes", {"names": ["東京", "Café Ümlaut"]}, None),
    (
        "add_observations",
        {
            "observations": [
                {"entityName": "Ada", "contents": ["Prefers tea", "Joined in 2021"]},
                {"entityName": "Postgres", "contents": ["Backed up nightly"]},
                {"entityName": "Ada", "contents": ["Joined in 2021", "Speaks Ελληνικά"]},
            ]
        },
        None,
    ),
    ("add_observations", {"observations": [{"entityName": "Nobody", "contents": ["x"]}]}, None),
    (
        "add_observations",
        {
            "observations": [
                {"entityName": "Grace", "contents": ["would be added"]},
                {"entityName": "Zed", "contents": ["x"]},
            ]
        },
        None,
    ),
    ("add_observations", {"observations": [{"entityName": "Nöbody 東京", "contents": ["x"]}]}, None),
    ("add_observations", {"observations": [{"entityName": LONG, "contents": ["x"]}]}, "long names clipped in errors"),
    ("add_observations", {"observations": []}, None),
    ("add_observations", {"observations": [{"entityName": "Lonely", "contents": []}]}, None),
    ("add_observations", {"observations": [{"entityName": "ada", "contents": ["prefers coffee"]}]}, None),
    (
        "add_observations",
        {"observations": [{"entityName": "Lonely", "contents": ["o", "o"]}]},
        "batch duplicates stored once",
    ),
    ("delete_observations", {"deletions": [{"entityName": "Lonely", "observations": ["o"]}]}, None),
    ("add_observations", {"observations": [{"entityName": "Lonely", "contents": [" "]}]}, "empty values refused"),
    ("delete_observations", {"deletions": [{"entityName": "Lonely", "observations": [" "]}]}, None),
    ("read_graph", {}, None),
    ("search_nodes", {"query": "Prefers tea"}, "ranked search"),
    ("search_nodes", {"query": "PERSON"}, "ranked search"),
    ("search_nodes", {"query": "café"}, "ranked search"),
    ("search_nodes", {"query": "東京"}, "ranked search"),
    ("search_nodes", {"query": "🗼"}, "ranked search"),
    ("search_nodes", {"query": "qwertyuiop zxcvb"}, None),
    ("search_nodes", {"query": "Zed"}, None),
    ("search_nodes", {"query": ""}, "empty query refused"),
    ("search_nodes", {"query": "e"}, "ranked search"),
    ("delete_observations", {"deletions": [{"entityName": "Ada", "observations": ["Prefers tea", "not there"]}]}, None),
    ("delete_observations", {"deletions": [{"entityName": "Nobody", "observations": ["x"]}]}, None),
    ("delete_observations", {"deletions": [{"entityName": "Ada", "observations": ["JOINED IN 2021"]}]}, None),
    ("delete_observations", {"deletions": [{"entityName": "ADA", "observations": ["Joined in 2021"]}]}, None),
    ("open_nodes", {"names": ["Ada", "Ada", "ada"]}, None),
    ("delete_observations", {"deletions": []}, None),
    ("delete_relations", {"relations": [rel("Grace", "Postgres", "administers"), rel("No", "Such", "thing")]}, None),
    ("delete_relations", {"relations": [rel("Yan", "Zed", "knows")]}, None),
    ("delete_relations", {"relations": []}, None),
    ("delete_relations", {"relations": [rel("ADA", "Billing", "leads")]}, None),
    ("open_nodes", {"names": ["Lonely", "Grace"]}, None),
    ("read_graph", {}, None),
    ("delete_entities", {"entityNames": ["Billing", "Nobody"]}, None),
    ("delete_entities", {"entityNames": []}, None),
    ("delete_entities", {"entityNames": ["Yan"]}, None),
    ("delete_entities", {"entityNames": ["ADA"]}, None),
    ("read_graph", {}, None),
    ("create_entities", {"entities": [ent("Zed", "person", "finally exists")]}, None),
    ("open_nodes", {"names": ["Zed"]}, None),
    ("create_entities", {"entities": [ent("Billing", "team", "Re-created")]}, None),
    ("create_relations", {"relations": [rel("Billing", "Ada", "reports to")]}, None),
    ("add_observations", {"observations": [{"entityName": "Ada", "contents": ["Prefers tea"]}]}, None),
    ("search_nodes", {"query": "tea"}, "ranked search"),
    ("open_nodes", {"names": ["Ada", "Billing", "Zed"]}, None),
    ("read_graph", {}, None),
]


def test_the_replay_has_at_least_sixty_calls_of_all_nine_tools_and_few_allowances() -> None:
    assert len(STEPS) >= 60
    assert {s[0] for s in STEPS} == {
        "create_entities",
        "create_relations",
        "add_observations",
        "delete_entities",
        "delete_observations",
        "delete_relations",
        "read_graph",
        "search_nodes",
        "open_nodes",
    }
    used = {s[2] for s in STEPS if s[2] is not None}
    assert used == set(ALLOWED)
    assert sum(s[2] is None for s in STEPS) >= 60


async def test_the_nine_tools_answer_as_the_reference_does_on_every_channel_and_after_a_restart(
    reference_script: Path, database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    memory = tmp_path / "memory.jsonl"
    ref = _reference(reference_script, memory)
    ours = _ours(database_url, redis_url, redis_prefix, tmp_path / "data")
    async with Client(ref, read_timeout_seconds=60) as r, Client(ours, read_timeout_seconds=120) as o:
        for step in STEPS:
            tool, args, _ = step
            compare(step, Channels(await r.call_tool(tool, args)), Channels(await o.call_tool(tool, args)))
        graph = Channels(await r.call_tool("read_graph", {}))
    assert graph.structured is not None
    assert any(x["to"] == "Nowhere" for x in graph.structured["relations"]), "a dangling relation is kept"

    # Both stopped; started again on the same data, they answer as before.
    async with Client(ref, read_timeout_seconds=60) as r, Client(ours, read_timeout_seconds=120) as o:
        again = Channels(await r.call_tool("read_graph", {}))
        assert again.text == graph.text
        compare(("read_graph", {}, None), again, Channels(await o.call_tool("read_graph", {})))
        after: list[Step] = [
            ("open_nodes", {"names": ["東京", "Ada"]}, None),
            ("search_nodes", {"query": "tea"}, "ranked search"),
        ]
        for step in after:
            tool, args, _ = step
            compare(step, Channels(await r.call_tool(tool, args)), Channels(await o.call_tool(tool, args)))


async def test_a_memory_file_the_reference_wrote_imports_to_the_same_graph(
    reference_script: Path, database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    memory = tmp_path / "memory.jsonl"
    async with Client(_reference(reference_script, memory), read_timeout_seconds=60) as r:
        for tool, args, allowed in STEPS:
            if allowed is None and not tool.startswith(("read_", "search_", "open_")):
                await r.call_tool(tool, args)
        # What only a file can hold: a name repeated on two lines (the reference appends, never merges).
        await r.call_tool("create_entities", {"entities": [ent("Twin", "t", "a"), ent("Twin", "t", "b")]})
    written = memory.read_text(encoding="utf-8")
    assert '"to":"Nowhere"' in written

    ours = _ours(database_url, redis_url, redis_prefix, tmp_path / "data")
    module = [sys.executable, "-m", "servers.inference_enhancement"]
    with anyio.fail_after(120):
        done = await anyio.run_process([*module, "import", str(memory)], env=ours.env, check=False)
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert report["problems"] == []
    assert report["relations_dangling"] == 1, report
    assert "Nowhere" in report["dangling"][0], report

    async with (
        Client(_reference(reference_script, memory), read_timeout_seconds=60) as r,
        Client(ours, read_timeout_seconds=120) as o,
    ):
        ref_graph = Channels(await r.call_tool("read_graph", {}))
        our_graph = Channels(await o.call_tool("read_graph", {}))
        assert ref_graph.structured is not None
        # The file's two "Twin" lines are one entity here, with both lines' observations.
        twins = [e for e in ref_graph.structured["entities"] if e["name"] == "Twin"]
        assert [e["observations"] for e in twins] == [["a"], ["b"]]
        merged = [e for e in ref_graph.structured["entities"] if e["name"] != "Twin"] + [ent("Twin", "t", "a", "b")]
        expected = {"entities": merged, "relations": ref_graph.structured["relations"]}
        assert our_graph.structured_json == json.dumps(expected, ensure_ascii=False)
        assert our_graph.text == _js(expected)
        step: Step = ("open_nodes", {"names": ["Ada", "東京"]}, None)
        compare(
            step, Channels(await r.call_tool("open_nodes", step[1])), Channels(await o.call_tool("open_nodes", step[1]))
        )


def _schema(schema: Any) -> Any:
    """An output schema without what only documents it (descriptions, ``$schema``, closed objects)."""
    if isinstance(schema, dict):
        drop = {"description", "$schema", "additionalProperties"}
        return {k: _schema(v) for k, v in sorted(schema.items()) if k not in drop}
    if isinstance(schema, list):
        return [_schema(s) for s in schema]
    return schema


class Updates:
    """The ``notifications/resources/updated`` a handshake-era client receives."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self.changed = anyio.Event()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.uris.append(str(message.params.uri))
            self.changed.set()

    async def wait_for(self, uri: str) -> None:
        with anyio.fail_after(20):
            while uri not in self.uris:
                self.changed = anyio.Event()
                await self.changed.wait()


async def test_a_handshake_era_client_gets_the_reference_tools_resource_and_subscriptions(
    reference_script: Path, database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    ref_updates, our_updates = Updates(), Updates()
    ref = Client(_reference(reference_script, tmp_path / "memory.jsonl"), mode="legacy", message_handler=ref_updates)
    ours = Client(
        _ours(database_url, redis_url, redis_prefix, tmp_path / "data"), mode="legacy", message_handler=our_updates
    )
    async with ref as r, ours as o:
        for client in (r, o):
            resources = client.server_capabilities.resources
            assert resources is not None
            assert resources.subscribe is True
        ref_tools, our_tools = (await r.list_tools()).tools, (await o.list_tools()).tools
        assert [t.name for t in our_tools] == [t.name for t in ref_tools]
        for mine, theirs in zip(our_tools, ref_tools, strict=True):
            assert mine.input_schema.get("required", []) == theirs.input_schema.get("required", []), mine.name
            assert set(theirs.input_schema["properties"]) <= set(mine.input_schema["properties"]), mine.name
            out = _schema(mine.output_schema)
            if mine.name in ("read_graph", "search_nodes"):  # the one addition: a cursor when more pages exist
                assert out["properties"].pop("next_cursor") == {"type": ["string", "null"]}
            assert out == _schema(theirs.output_schema), mine.name

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # the handshake era's way, still what clients use
            await r.subscribe_resource(GRAPH)
            await o.subscribe_resource(GRAPH)
        for client in (r, o):
            await client.call_tool("create_entities", {"entities": [ent("Ada", "person", "Prefers tea")]})
        await ref_updates.wait_for(GRAPH)
        await our_updates.wait_for(GRAPH)
        texts = [(await c.read_resource(GRAPH)).contents[0] for c in (r, o)]
        assert [getattr(t, "text", None) for t in texts[1:]] == [getattr(texts[0], "text", None)]
