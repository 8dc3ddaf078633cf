"""The analytics service on a real database: catalogue, profiles, queries, charts, predictions, patterns."""

from __future__ import annotations

import contextlib
import math
import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pandas as pd
import pytest

from common.errors import Conflict, InvalidInput, NotFound
from common.runtime import open_deps
from common.testing import wait_until
from servers.analytics.service import AnalyticsService
from servers.analytics.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(service_settings: Callable[..., Settings]) -> Settings:
    return service_settings(max_rows=500)


def _tree(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


async def test_registered_csv_and_parquet_have_pandas_schema_counts_and_profile(
    svc: AnalyticsService, data_dir: Path, diabetes: pd.DataFrame
) -> None:
    for name, file in (("dia_csv", "diabetes.csv"), ("dia_pq", "diabetes.parquet")):
        reg = await svc.register(name, path=str(data_dir / file), description="sklearn diabetes")
        assert reg.created is True
        ds = reg.dataset
        assert ds is not None
        assert [c.name for c in ds.columns] == list(diabetes.columns)
        assert ds.row_count == len(diabetes)
        assert ds.byte_size == (data_dir / file).stat().st_size
        assert ds.fingerprint
        assert ds.profiled is False

        prof = await svc.profile(name)
        assert prof.rows == len(diabetes)
        assert prof.cached is False
        by_name = {c.name: c for c in prof.columns}
        for col in ("age", "bmi", "s5", "target"):
            series = diabetes[col]
            got = by_name[col]
            assert got.nulls == int(series.isna().sum())
            assert got.count == int(series.notna().sum())
            assert got.distinct == series.nunique()
            assert got.mean == pytest.approx(series.mean(), rel=1e-9)
            assert got.std == pytest.approx(series.std(), rel=1e-9)
            assert got.min == pytest.approx(series.min())
            assert got.max == pytest.approx(series.max())
            assert got.p50 == pytest.approx(series.median(), rel=1e-6)
        assert by_name["group"].top[0][1] == diabetes["group"].value_counts().iloc[0]
        again = await svc.profile(name)
        assert again.cached is True
        assert again.columns == prof.columns
    listed = await svc.list_datasets(limit=1, cursor=None)
    assert listed.total == 2
    assert listed.truncated is True
    rest = await svc.list_datasets(limit=5, cursor=listed.next_cursor)
    assert [d.name for d in listed.items + rest.items] == ["dia_csv", "dia_pq"]
    assert all(d.profiled for d in rest.items)


async def test_a_changed_file_is_noticed_and_profiled_again(
    svc: AnalyticsService, data_dir: Path, diabetes: pd.DataFrame
) -> None:
    path = data_dir / "small.csv"
    diabetes.head(50).to_csv(path, index=False)
    await svc.register("small", path=str(path))
    assert (await svc.profile("small")).rows == 50
    diabetes.head(80).to_csv(path, index=False)
    info = await svc.dataset("small")
    assert info.row_count == 80
    assert info.profiled is False

    async def profiled() -> bool:
        return (await svc.dataset("small")).profiled

    await wait_until(profiled, timeout_s=20)
    prof = await svc.profile("small")
    assert prof.rows == 80
    assert prof.cached is True
    assert (await svc.query("SELECT count(*) AS n FROM small")).rows == [[80]]


async def test_a_name_taken_is_a_conflict_unless_replaced(svc: AnalyticsService, data_dir: Path) -> None:
    await svc.register("dia", path=str(data_dir / "diabetes.csv"))
    with pytest.raises(Conflict, match="replace=true"):
        await svc.register("dia", path=str(data_dir / "diabetes.parquet"))
    assert (await svc.dataset("dia")).format == "csv"
    replaced = await svc.register("dia", path=str(data_dir / "diabetes.parquet"), replace=True)
    assert replaced.created is False
    assert replaced.dataset is not None
    assert replaced.dataset.format == "parquet"
    assert await svc.remove("dia") is True
    with pytest.raises(NotFound):
        await svc.dataset("dia")


async def test_a_million_row_result_is_capped_and_paging_returns_every_row_once(
    svc: AnalyticsService, data_dir: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"n": np.arange(1_000_000, dtype=np.int64)}), data_dir / "big.parquet")
    await svc.register("big", path=str(data_dir / "big.parquet"))
    first = await svc.query("SELECT n FROM big", limit=100_000)
    assert first.total_rows == 1_000_000
    assert first.truncated is True
    assert len(first.rows) == 500
    assert first.next_cursor
    seen: list[int] = []
    cursor: str | None = None
    sql = "SELECT n FROM big WHERE n % 997 = 0"
    while True:
        page = await svc.query(sql, limit=120, cursor=cursor)
        seen += [r[0] for r in page.rows]
        cursor = page.next_cursor
        if cursor is None:
            assert page.truncated is False
            break
    assert sorted(seen) == list(range(0, 1_000_000, 997))
    assert len(seen) == len(set(seen))
    with pytest.raises(InvalidInput, match="cursor"):
        await svc.query("SELECT n FROM big WHERE n < 5", cursor=first.next_cursor)
    svc.settings = svc.settings.model_copy(update={"history_keep": 10})
    for i in range(12):
        await svc.query(f"SELECT {i} AS i")
    assert (await svc.history(limit=50, cursor=None)).total == 10
    with pytest.raises(InvalidInput, match="nope"):
        await svc.query("SELECT nope FROM big")
    await svc.query(sql, limit=1)
    history = await svc.history(limit=3, cursor=None)
    assert history.total == 10
    assert history.items[0].sql == sql
    assert history.items[0].total_rows == len(seen)
    assert history.items[1].ok is False
    assert history.items[1].error is not None


async def test_the_history_is_written_after_the_answer_and_before_it_is_read_or_the_service_closes(
    settings: Settings, data_dir: Path
) -> None:
    async with open_deps("analytics", settings) as deps, AnalyticsService.open(deps, settings) as svc:
        await svc.register("dia", path=str(data_dir / "diabetes.parquet"))
        await svc.query("SELECT count(*) AS n FROM dia")
        assert svc._history.pending == 1
        assert (await svc.history(limit=10, cursor=None)).total == 1
        assert svc._history.pending == 0
        for i in range(3):
            await svc.query(f"SELECT {i} AS i FROM dia LIMIT 1")
        with pytest.raises(InvalidInput):
            await svc.query("SELECT nope FROM dia")
    async with open_deps("analytics", settings) as deps, AnalyticsService.open(deps, settings) as svc:
        history = await svc.history(limit=10, cursor=None)
        assert history.total == 5
        assert [h.ok for h in history.items] == [False, True, True, True, True]
        assert [h.sql for h in history.items[1:4]] == [f"SELECT {i} AS i FROM dia LIMIT 1" for i in (2, 1, 0)]


async def test_saved_queries_run_by_name(svc: AnalyticsService, data_dir: Path, diabetes: pd.DataFrame) -> None:
    await svc.register("dia", path=str(data_dir / "diabetes.parquet"))
    saved = await svc.saved_query("save", name="by group", sql='SELECT "group", count(*) AS n FROM dia GROUP BY 1')
    assert saved.query is not None
    assert saved.query.name == "by group"
    result = await svc.query(saved="by group")
    assert sorted(result.rows) == sorted([k, int(v)] for k, v in diabetes["group"].value_counts().items())
    assert (await svc.saved_query("list")).total == 1
    with pytest.raises(InvalidInput):
        await svc.saved_query("save", name="bad", sql="DROP VIEW dia")
    assert (await svc.saved_query("delete", name="by group")).deleted is True
    with pytest.raises(NotFound):
        await svc.query(saved="by group")


async def test_forecast_recovers_a_known_trend_and_season(svc: AnalyticsService, data_dir: Path) -> None:
    t = np.arange(72)
    season = 10 * np.sin(2 * np.pi * t / 12)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "month": pd.date_range("2018-01-01", periods=72, freq="MS"),
            "sales": 100 + 2 * t + season + rng.normal(0, 1, 72),
        }
    )
    frame.to_csv(data_dir / "sales.csv", index=False)
    await svc.register("sales", path=str(data_dir / "sales.csv"))
    out = await svc.predict("sales", "sales", task="forecast", time_column="month", horizon=12)
    assert out.total == 12
    future = np.arange(72, 84)
    truth = 100 + 2 * future + 10 * np.sin(2 * np.pi * future / 12)
    got = np.array([r["value"] for r in out.predicted], dtype=float)
    assert np.max(np.abs(got - truth)) < 4
    inside = [r["lower"] <= v <= r["upper"] for r, v in zip(out.predicted, truth, strict=True)]
    assert sum(inside) >= 11
    assert out.prediction is not None
    assert out.prediction.parameters
    assert out.prediction.data_fingerprint


async def test_regression_metrics_equal_scikit_learn_and_read_back_equal(
    svc: AnalyticsService, data_dir: Path, diabetes: pd.DataFrame
) -> None:
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
    from sklearn.model_selection import train_test_split

    await svc.register("dia", path=str(data_dir / "diabetes.parquet"))
    features = ["age", "s1", "s5", "bp"]
    out = await svc.predict("dia", "target", task="regression", features=features, test_size=0.25, seed=0, limit=500)
    x_train, x_test, y_train, y_test = train_test_split(
        diabetes[features], diabetes["target"], test_size=0.25, random_state=0
    )
    pred = LinearRegression().fit(x_train, y_train).predict(x_test)
    assert out.prediction is not None
    m = out.prediction.metrics
    assert m["r2"] == pytest.approx(r2_score(y_test, pred), rel=1e-9)
    assert m["mae"] == pytest.approx(mean_absolute_error(y_test, pred), rel=1e-9)
    assert m["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y_test, pred)), rel=1e-9)

    back = await svc.get_prediction(out.prediction.id, limit=500, cursor=None)
    assert back.predicted == out.predicted
    assert back.prediction is not None
    assert back.prediction.metrics == m
    assert back.prediction.features == features
    listed = await svc.list_predictions(source="dia", limit=10, cursor=None)
    assert [p.id for p in listed.items] == [out.prediction.id]

    actuals = {str(r["key"]): float(r["actual"]) + 1.0 for r in out.predicted}
    rescored = await svc.rescore(out.prediction.id, actuals)
    assert rescored.rescore is not None
    assert rescored.rescore["matched"] == len(actuals)
    again = (await svc.get_prediction(out.prediction.id, limit=1, cursor=None)).prediction
    assert again is not None
    assert again.rescore == rescored.rescore


async def test_a_chart_is_a_png_of_the_requested_size_and_a_parseable_svg(
    svc: AnalyticsService, data_dir: Path
) -> None:
    await svc.register("dia", path=str(data_dir / "diabetes.parquet"))
    spec = {"kind": "scatter", "x": "bmi", "y": "target", "color": "group", "width": 320, "height": 240}
    chart = await svc.chart("dia", spec)
    png = await anyio.Path(chart.png_path).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 320
    assert height >= 240
    assert width < 320 * 1.5
    assert height < 240 * 1.5
    assert ET.parse(chart.svg_path).getroot().tag.endswith("svg")
    assert "bmi" in chart.description
    assert chart.spec["kind"] == "scatter"
    again = await svc.chart("dia", spec)
    assert again.png_path == chart.png_path
    with pytest.raises(InvalidInput, match="nope"):
        await svc.chart("dia", {**spec, "y": "nope"})


async def test_patterns_are_stored_and_found_again_by_words(svc: AnalyticsService, data_dir: Path) -> None:
    await svc.register("dia", path=str(data_dir / "diabetes.parquet"))
    found = await svc.find_patterns("dia", kinds=["correlations", "outliers"], columns=["s1", "s2", "s4", "bmi"])
    assert found.total >= 2
    pair = next(p for p in found.items if p.kind == "correlation" or p.columns == ["s1", "s2"])
    assert pair.strength in ("strong", "moderate")
    again = await svc.find_patterns("dia", kinds=["correlations", "outliers"], columns=["s1", "s2", "s4", "bmi"])
    assert sorted(p.id for p in again.items) == sorted(p.id for p in found.items)
    hits = await svc.search_patterns("correlation s1 s2", limit=3)
    assert hits.items
    assert hits.items[0].id == pair.id
    assert (await svc.search_patterns("outliers", source="nothing", limit=3)).items == []


async def test_bad_input_is_refused_clearly_and_nothing_is_half_written(
    svc: AnalyticsService, data_dir: Path, tmp_path: Path
) -> None:
    await svc.register("dia", path=str(data_dir / "diabetes.parquet"))
    outside = tmp_path / "outside.csv"
    outside.write_text("a,b\n1,2\n")
    (data_dir / "broken.csv").write_text("a,b\n" + "1,2\n" * 30 + "1,2,3,4\n")
    before = _tree(svc.folder), [d.name for d in (await svc.list_datasets(limit=50, cursor=None)).items]
    with pytest.raises(InvalidInput, match="outside the allowed folders"):
        await svc.register("outside", path=str(outside))
    with pytest.raises(InvalidInput, match="not well-formed CSV"):
        await svc.register("broken", path=str(data_dir / "broken.csv"))
    with pytest.raises(NotFound):
        await svc.register("missing", path=str(data_dir / "missing.csv"))
    with pytest.raises(InvalidInput, match="not allowed"):
        await svc.register("Bad Name", path=str(data_dir / "diabetes.csv"))
    with pytest.raises(InvalidInput, match="unknown columns"):
        await svc.profile("dia", columns=["nope"])
    with pytest.raises(InvalidInput, match="not in the data"):
        await svc.predict("dia", "nope", task="regression")
    with pytest.raises(InvalidInput, match="numeric"):
        await svc.predict("dia", "group", task="regression")
    with pytest.raises(InvalidInput, match="unknown columns"):
        await svc.find_patterns("dia", columns=["nope"])
    with pytest.raises(InvalidInput):
        await svc.query("SELECT nope FROM dia")
    with pytest.raises(InvalidInput):
        await svc.register("bad_pg", connection="main", sql="DELETE FROM analytics.datasets")
    with pytest.raises(InvalidInput, match="read-only"):
        await svc.register(
            "bad_pg",
            connection="main",
            sql="WITH x AS (DELETE FROM analytics.saved_queries RETURNING 1) SELECT * FROM x",
        )
    with pytest.raises(InvalidInput, match="multiple commands"):
        await svc.register("bad_pg", connection="main", sql="SELECT 1; DELETE FROM analytics.saved_queries")
    with pytest.raises(InvalidInput, match="read-only"):
        await svc.register("bad_pg", connection="main", sql="SELECT 1 INTO TABLE analytics.stolen")
    with pytest.raises(NotFound, match="configured: main"):
        await svc.register("bad_pg", connection="other", sql="SELECT 1")
    after = _tree(svc.folder), [d.name for d in (await svc.list_datasets(limit=50, cursor=None)).items]
    assert after == before
    assert (await svc.list_predictions(source=None, limit=5, cursor=None)).total == 0


async def test_a_postgres_query_becomes_a_parquet_dataset_under_a_timeout(
    svc: AnalyticsService, settings: Settings
) -> None:
    sql = "SELECT g AS n, g * 2 AS twice, md5(g::text) AS h, gen_random_uuid() AS u FROM generate_series(1, 500) g"
    reg = await svc.register("series_pg", connection="main", sql=sql, description="fetched")
    assert reg.dataset is not None
    assert reg.dataset.source_kind == "postgres"
    assert reg.dataset.row_count == 500
    assert [c.name for c in reg.dataset.columns] == ["n", "twice", "h", "u"]
    assert await anyio.Path(svc.extracts_dir).is_dir()
    assert len(os.listdir(svc.extracts_dir)) == 1
    assert (await svc.query("SELECT sum(twice) AS s FROM series_pg")).rows == [[500 * 501]]
    slow = Settings(**{**settings.model_dump(), "fetch_timeout_s": 0.2})
    slow_svc = AnalyticsService(svc.deps, slow)
    with pytest.raises(InvalidInput, match="statement timeout"):
        await slow_svc.register("slow_pg", connection="main", sql="SELECT pg_sleep(3)")
    sneaky = "SELECT set_config('statement_timeout', '0', true), pg_sleep(5)"
    with pytest.raises(InvalidInput, match=r"statement timeout|ran longer than 0\.2 s"):
        await slow_svc.register("slow_pg", connection="main", sql=sneaky)
    await svc.remove("series_pg")
    assert os.listdir(svc.extracts_dir) == []


async def test_four_service_instances_at_once_lose_nothing(settings: Settings, data_dir: Path) -> None:
    async def worker(i: int, errors: list[BaseException]) -> None:
        try:
            async with open_deps("analytics", settings) as deps, AnalyticsService.open(deps, settings) as svc:
                await svc.register(f"d{i}", path=str(data_dir / "diabetes.parquet"))
                with contextlib.suppress(Conflict):
                    await svc.register("shared", path=str(data_dir / "diabetes.csv"))
                out = await svc.query(f"SELECT count(*) FROM d{i}")
                assert out.rows == [[442]]
                await svc.predict(f"d{i}", "target", task="regression", features=["age", "s5"])
                await svc.profile(f"d{i}")
        except BaseException as exc:  # collected: the test reports every failure
            errors.append(exc)

    errors: list[BaseException] = []
    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(worker, i, errors)
    assert errors == []
    async with open_deps("analytics", settings) as deps, AnalyticsService.open(deps, settings) as svc:
        names = [d.name for d in (await svc.list_datasets(limit=50, cursor=None)).items]
        assert names == ["d0", "d1", "d2", "d3", "shared"]
        assert (await svc.list_predictions(source=None, limit=50, cursor=None)).total == 4
        assert (await svc.history(limit=50, cursor=None)).total == 4


async def test_patterns_are_found_again_by_meaning_with_the_real_model(
    make_settings: Callable[..., Any], data_dir: Path
) -> None:
    settings: Settings = make_settings(Settings, allowed_roots=[data_dir])
    async with open_deps("analytics", settings) as deps, AnalyticsService.open(deps, settings) as svc:
        await svc.register("dia", path=str(data_dir / "diabetes.parquet"))
        found = await svc.find_patterns("dia", kinds=["correlations", "outliers"], columns=["s1", "s2", "s3", "s4"])
        kinds = {p.kind for p in found.items}
        assert {"correlation", "outliers"} <= kinds
        hits = await svc.search_patterns("unusual extreme readings far from the others", limit=3)
        assert hits.items[0].kind == "outliers"
        hits = await svc.search_patterns("which measurements climb in step with each other", limit=3)
        assert hits.items[0].kind == "correlation"


async def test_tsv_json_ndjson_and_excel_files_register_with_their_rows_and_columns(
    svc: AnalyticsService, data_dir: Path, diabetes: pd.DataFrame
) -> None:
    head = diabetes.head(30).drop(columns=["bmi"])
    head.to_csv(data_dir / "d.tsv", sep="\t", index=False)
    head.to_json(data_dir / "d.json", orient="records")
    head.to_json(data_dir / "d.ndjson", orient="records", lines=True)
    head.to_excel(data_dir / "d.xlsx", index=False)
    for name, file, fmt in (
        ("d_tsv", "d.tsv", "tsv"),
        ("d_json", "d.json", "json"),
        ("d_ndjson", "d.ndjson", "ndjson"),
        ("d_xlsx", "d.xlsx", "excel"),
    ):
        reg = await svc.register(name, path=str(data_dir / file))
        assert reg.dataset is not None
        assert reg.dataset.format == fmt
        assert reg.dataset.row_count == 30
        assert [c.name for c in reg.dataset.columns] == list(head.columns)
        total = await svc.query(f"SELECT sum(target) AS s FROM {name}")
        assert total.rows[0][0] == pytest.approx(head["target"].sum())
