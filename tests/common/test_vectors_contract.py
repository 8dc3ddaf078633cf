"""One contract for every VectorIndex backend: pgvector (real PostgreSQL) and Qdrant (local mode)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import asyncpg
import numpy as np
import pytest

from common.db import Database, DbConfig
from common.errors import DimensionMismatch, InvalidInput, NotFound
from common.vectors import VectorIndex, VectorRecord, parse_filter
from common.vectors.pg import PgVectorIndex
from common.vectors.qdrant import QdrantIndex

pytestmark = pytest.mark.anyio

MODEL = "test-model"


@pytest.fixture(params=["pgvector", "qdrant"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, backend: str) -> str | None:
    # Sync on purpose: database_url creates the database with asyncio.run, outside the test's loop.
    return str(request.getfixturevalue("database_url")) if backend == "pgvector" else None


@pytest.fixture
async def index(backend: str, pg_url: str | None, tmp_path) -> AsyncIterator[VectorIndex]:
    if backend == "pgvector":
        assert pg_url is not None
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute("CREATE SCHEMA vt; CREATE SCHEMA extensions; CREATE EXTENSION vector SCHEMA extensions")
        finally:
            await conn.close()
        db = await Database.open(DbConfig(url=pg_url, schema="vt"))
        idx: VectorIndex = PgVectorIndex(db, "vt")
        try:
            yield idx
        finally:
            await idx.close()
            await db.close()
    else:
        idx = QdrantIndex("vt", path=tmp_path / "qdrant")
        try:
            yield idx
        finally:
            await idx.close()


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


async def seeded(index: VectorIndex) -> None:
    """Four records along the axes of a 4-d space, with payloads to filter on."""
    await index.ensure_collection("docs", dim=4, model=MODEL)
    await index.upsert(
        "docs",
        [
            VectorRecord("a", unit(1, 0, 0, 0), {"kind": "note", "n": 1, "tags": ["x", "y"], "at": "2024-01-01"}),
            VectorRecord(
                "b", unit(1, 0.2, 0, 0), {"kind": "note", "n": 2, "tags": ["y"], "at": "2024-02-01T12:00:00Z"}
            ),
            VectorRecord("c", unit(0.3, 1, 0, 0), {"kind": "page", "n": 3.5, "tags": [], "at": "2024-03-01T00:00:00"}),
            VectorRecord("d", unit(0, 0, 1, 0), {"kind": "page", "n": 10, "flag": True}),
        ],
        model=MODEL,
    )


async def test_search_returns_nearest_first_with_cosine_scores(index: VectorIndex) -> None:
    await seeded(index)
    hits = await index.search("docs", unit(1, 0, 0, 0), limit=3)
    assert [h.id for h in hits] == ["a", "b", "c"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[1].score == pytest.approx(float(unit(1, 0.2, 0, 0)[0]), abs=1e-4)
    assert hits[2].score == pytest.approx(float(unit(0.3, 1, 0, 0)[0]), abs=1e-4)
    assert hits[0].payload == {"kind": "note", "n": 1, "tags": ["x", "y"], "at": "2024-01-01"}


async def test_equality_filter_matches_scalars_and_list_elements(index: VectorIndex) -> None:
    await seeded(index)
    q = unit(1, 1, 1, 1)
    assert sorted(h.id for h in await index.search("docs", q, filter={"kind": "page"})) == ["c", "d"]
    assert sorted(h.id for h in await index.search("docs", q, filter={"tags": "y"})) == ["a", "b"]
    assert [h.id for h in await index.search("docs", q, filter={"flag": True})] == ["d"]
    assert [h.id for h in await index.search("docs", q, filter={"kind": "note", "n": 2})] == ["b"]
    assert [h.id for h in await index.search("docs", q, filter={"n": 3.5})] == ["c"]
    assert await index.search("docs", q, filter={"kind": "missing"}) == []


async def test_in_filter_matches_any_listed_value(index: VectorIndex) -> None:
    await seeded(index)
    q = unit(1, 1, 1, 1)
    assert sorted(h.id for h in await index.search("docs", q, filter={"n": {"in": [1, 10]}})) == ["a", "d"]
    assert sorted(h.id for h in await index.search("docs", q, filter={"tags": {"in": ["x", "zzz"]}})) == ["a"]
    assert sorted(h.id for h in await index.search("docs", q, filter={"kind": {"in": ["note", "page"]}})) == [
        "a",
        "b",
        "c",
        "d",
    ]


async def test_numeric_range_filter_selects_between_bounds(index: VectorIndex) -> None:
    await seeded(index)
    q = unit(1, 1, 1, 1)
    assert sorted(h.id for h in await index.search("docs", q, filter={"n": {"gte": 2, "lte": 10}})) == ["b", "c", "d"]
    assert sorted(h.id for h in await index.search("docs", q, filter={"n": {"gt": 2, "lt": 10}})) == ["c"]
    assert await index.count("docs", {"n": {"gte": 100}}) == 0


async def test_datetime_range_filter_compares_timestamps_in_utc(index: VectorIndex) -> None:
    await seeded(index)
    q = unit(1, 1, 1, 1)
    got = await index.search("docs", q, filter={"at": {"gte": "2024-01-15", "lte": "2024-03-01T00:00:00Z"}})
    assert sorted(h.id for h in got) == ["b", "c"]
    got = await index.search("docs", q, filter={"at": {"lt": "2024-02-01T11:00:00-02:00"}})  # 13:00 UTC
    assert sorted(h.id for h in got) == ["a", "b"]


async def test_score_threshold_drops_weak_hits(index: VectorIndex) -> None:
    await seeded(index)
    hits = await index.search("docs", unit(1, 0, 0, 0), limit=10, score_threshold=0.5)
    assert [h.id for h in hits] == ["a", "b"]
    assert all(h.score >= 0.5 for h in hits)


async def test_delete_by_ids_removes_only_those_and_counts_them(index: VectorIndex) -> None:
    await seeded(index)
    assert await index.delete("docs", ids=["a", "c", "nope"]) == 2
    assert await index.count("docs") == 2
    assert {h.id for h in await index.search("docs", unit(1, 1, 1, 1))} == {"b", "d"}


async def test_delete_by_filter_removes_matching_records(index: VectorIndex) -> None:
    await seeded(index)
    assert await index.delete("docs", filter={"kind": "note"}) == 2
    assert await index.count("docs") == 2
    assert await index.delete("docs", ids=["c", "d"], filter={"n": 10}) == 1
    assert [r.id for r in (await index.scroll("docs"))[0]] == ["c"]


async def test_delete_without_ids_or_filter_is_refused(index: VectorIndex) -> None:
    await seeded(index)
    with pytest.raises(InvalidInput, match="drop_collection"):
        await index.delete("docs")
    assert await index.count("docs") == 4


async def test_scroll_pages_through_every_record_exactly_once(index: VectorIndex) -> None:
    await index.ensure_collection("many", dim=4, model=MODEL)
    rng = np.random.default_rng(1)
    await index.upsert("many", [VectorRecord(f"r{i:03d}", rng.normal(size=4), {"even": i % 2 == 0}) for i in range(53)])
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        records, cursor = await index.scroll("many", limit=10, cursor=cursor)
        pages += 1
        assert len(records) <= 10
        seen.extend(r.id for r in records)
        assert all(r.vector.shape == (4,) for r in records)  # type: ignore[union-attr]
        if cursor is None:
            break
        assert pages < 20
    assert sorted(seen) == [f"r{i:03d}" for i in range(53)]
    assert len(seen) == 53
    evens, cursor = await index.scroll("many", filter={"even": True}, limit=100)
    assert cursor is None
    assert len(evens) == 27
    assert all(r.payload == {"even": True} for r in evens)


async def test_count_counts_all_or_matching_records(index: VectorIndex) -> None:
    await seeded(index)
    assert await index.count("docs") == 4
    assert await index.count("docs", {"kind": "note"}) == 2
    info = await index.info("docs")
    assert (info.name, info.dim, info.model, info.count) == ("docs", 4, MODEL, 4)


async def test_vector_of_another_dimension_is_refused(index: VectorIndex) -> None:
    await seeded(index)
    with pytest.raises(DimensionMismatch, match="re-embed"):
        await index.upsert("docs", [VectorRecord("e", [1.0, 0.0, 0.0], {})])
    with pytest.raises(DimensionMismatch, match="4-d"):
        await index.search("docs", [1.0, 0.0, 0.0, 0.0, 0.0])
    with pytest.raises(DimensionMismatch, match="other-model"):
        await index.search("docs", unit(1, 0, 0, 0), model="other-model")
    assert await index.count("docs") == 4


async def test_ensure_collection_is_idempotent_but_refuses_another_model_or_dimension(index: VectorIndex) -> None:
    await seeded(index)
    await index.ensure_collection("docs", dim=4, model=MODEL)
    with pytest.raises(DimensionMismatch, match="new collection"):
        await index.ensure_collection("docs", dim=8, model=MODEL)
    with pytest.raises(DimensionMismatch, match="other-model"):
        await index.ensure_collection("docs", dim=4, model="other-model")
    assert await index.count("docs") == 4


async def test_concurrent_ensure_collection_creates_it_once(index: VectorIndex) -> None:
    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(lambda: index.ensure_collection("race", dim=4, model=MODEL))
    assert await index.list_collections() == ["race"]
    assert (await index.info("race")).count == 0


async def test_reupsert_replaces_vector_and_payload(index: VectorIndex) -> None:
    await seeded(index)
    await index.upsert("docs", [VectorRecord("a", unit(0, 0, 0, 1), {"kind": "moved"})])
    assert await index.count("docs") == 4
    hits = await index.search("docs", unit(0, 0, 0, 1), limit=1)
    assert (hits[0].id, hits[0].payload) == ("a", {"kind": "moved"})
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)


async def test_missing_collection_is_not_found_and_drop_removes_it(index: VectorIndex) -> None:
    with pytest.raises(NotFound, match="ensure_collection"):
        await index.search("ghost", unit(1, 0, 0, 0))
    await seeded(index)
    assert await index.drop_collection("docs") is True
    assert await index.drop_collection("docs") is False
    with pytest.raises(NotFound):
        await index.count("docs")
    await index.ensure_collection("docs", dim=8, model="new-model")  # re-embedding into a fresh one works
    assert (await index.info("docs")).dim == 8


async def test_bad_names_filters_and_payloads_raise_invalid_input(index: VectorIndex) -> None:
    await seeded(index)
    with pytest.raises(InvalidInput, match="Collection name"):
        await index.ensure_collection("Bad-Name", dim=4, model=MODEL)
    with pytest.raises(InvalidInput, match="not a valid name"):
        await index.search("docs", unit(1, 0, 0, 0), filter={"kind'; drop table x; --": 1})
    with pytest.raises(InvalidInput, match="unknown operator"):
        await index.search("docs", unit(1, 0, 0, 0), filter={"n": {"regex": ".*"}})
    with pytest.raises(InvalidInput, match="reserved"):
        await index.upsert("docs", [VectorRecord("z", unit(1, 0, 0, 0), {"_id": "x"})])
    with pytest.raises(InvalidInput, match="zero vector"):
        await index.search("docs", [0.0, 0.0, 0.0, 0.0])
    with pytest.raises(InvalidInput, match="cursor"):
        await index.scroll("docs", cursor="%%%not-a-cursor")


async def test_health_reports_ok(index: VectorIndex) -> None:
    health = await index.health()
    assert health["ok"] is True
    assert health["backend"] == index.backend


async def test_recall_at_10_matches_exact_search(index: VectorIndex) -> None:
    rng = np.random.default_rng(42)
    data = rng.normal(size=(2000, 384)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    await index.ensure_collection("recall", dim=384, model=MODEL)
    await index.upsert("recall", [VectorRecord(f"v{i}", data[i], {"i": i, "g": i % 20}) for i in range(len(data))])
    queries = rng.normal(size=(50, 384)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    found = 0
    for q, truth in zip(queries, exact, strict=True):
        hits = await index.search("recall", q, limit=10)
        found += len({int(h.id[1:]) for h in hits} & set(truth.tolist()))
    recall = found / (50 * 10)
    assert recall >= 0.9, recall

    # A selective filter (1 in 20) must still fill the page: HNSW alone would stop at ef_search candidates.
    groups = np.arange(len(data)) % 20
    found = 0
    for n, q in enumerate(queries[:10]):
        members = np.flatnonzero(groups == n)
        truth = members[np.argsort(-(data[members] @ q))[:10]]
        hits = await index.search("recall", q, limit=10, filter={"g": int(n)})
        assert len(hits) == 10
        assert all(h.payload["g"] == n for h in hits)
        found += len({int(h.id[1:]) for h in hits} & set(truth.tolist()))
    assert found / 100 >= 0.9, found / 100


def test_filter_language_rejects_what_it_cannot_express() -> None:
    assert parse_filter(None) == []
    bad: dict[str, Any]
    for bad in (
        {"f": None},
        {"f": [1, 2]},
        {"f": {"in": []}},
        {"f": {"in": "abc"}},
        {"f": {"gte": "yesterday"}},
        {"f": {"gte": 1, "lte": "2024-01-01"}},
        {"f": {"gte": True}},
        {"1f": 1},
        {"f": float("nan")},
        {"_id": "x"},
    ):
        with pytest.raises(InvalidInput):
            parse_filter(bad)
