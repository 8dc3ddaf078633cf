"""The analytics tools through the SDK's in-process client: argument checks, error texts, result shapes,
and read-only bypass attempts refused with nothing changed on disk or in the schema."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from common.testing import call_fails, call_ok
from servers.analytics.server import build
from servers.analytics.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(make_settings: Callable[..., Any], data_dir: Path) -> Settings:
    s: Settings = make_settings(Settings, embedding_model="hash-384", allowed_roots=[data_dir], max_rows=100)
    return s


def _tree(*folders: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for f in folders for p in sorted(f.rglob("*")) if p.is_file()}


BYPASSES = [
    ("DROP VIEW dia", "SELECT"),
    ("CREATE TABLE t AS SELECT * FROM dia", "SELECT"),
    ("INSERT INTO dia SELECT * FROM dia", "SELECT"),
    ("COPY dia TO '{data}/out.csv'", "SELECT"),
    ("SELECT * FROM read_csv('{data}/secret.csv')", "read_csv"),
    ("SELECT * FROM '{data}/secret.csv'", ""),
    ("ATTACH '{data}/x.db' AS x", "SELECT"),
    ("SELECT 1; DROP VIEW dia", "one"),
    ("SET enable_external_access = true", "SELECT"),
    ("SELECT current_setting('home_directory')", "current_setting"),
    ("INSTALL httpfs", "SELECT"),
    ("WITH x AS (SELECT * FROM dia) DELETE FROM dia", ""),
]


async def test_read_only_bypass_attempts_are_refused_and_change_nothing(settings: Settings, data_dir: Path) -> None:
    async with Client(build(settings)) as client:
        await call_ok(client, "register_dataset", {"name": "dia", "path": str(data_dir / "diabetes.parquet")})
        folder = settings.data_folder()
        before_files = _tree(data_dir, folder)
        before = await call_ok(client, "manage_datasets", {})
        for sql, expected in BYPASSES:
            text = await call_fails(client, "query_data", {"sql": sql.format(data=data_dir)}, expected)
            assert len(text) <= 1024
            assert "Traceback" not in text
        assert _tree(data_dir, folder) == before_files
        assert await call_ok(client, "manage_datasets", {}) == before
        ok = await call_ok(client, "query_data", {"sql": "SELECT count(*) AS n FROM dia"})
        assert ok["rows"] == [[442]]
        history = await call_ok(client, "manage_saved_query", {"action": "history", "limit": 100})
        assert history["total"] == len(BYPASSES) + 1
        assert history["history"][0]["ok"] is True


async def test_result_shapes_are_compact_and_paged(settings: Settings, data_dir: Path) -> None:
    async with Client(build(settings)) as client:
        reg = await call_ok(client, "register_dataset", {"name": "dia", "path": str(data_dir / "diabetes.csv")})
        assert reg["dataset"]["row_count"] == 442
        assert len(reg["sample"]) == 5
        page = await call_ok(client, "query_data", {"sql": "SELECT * FROM dia"})
        assert page["total_rows"] == 442
        assert page["truncated"] is True
        assert len(page["rows"]) == 100
        assert [c["name"] for c in page["columns"]][:2] == ["patient_id", "age"]
        assert len(json.dumps(page)) < 25_000
        nxt = await call_ok(client, "query_data", {"sql": "SELECT * FROM dia", "cursor": page["next_cursor"]})
        assert nxt["rows"][0][0] == 101
        prof = await call_ok(client, "profile_dataset", {"name": "dia"})
        assert len(prof["columns"]) == 13
        assert len(json.dumps(prof)) < 12_000
        chart = await call_ok(client, "create_chart", {"source": "dia", "kind": "histogram", "x": "bmi"})
        assert await anyio.Path(chart["png_path"]).is_file()
        assert "vega" not in json.dumps(chart).lower() or len(json.dumps(chart)) < 2_000
        pred = await call_ok(client, "predict", {"source": "dia", "target": "target", "features": ["age", "s5"]})
        pid = pred["prediction"]["id"]
        assert pred["prediction"]["metrics"]["r2"] is not None
        listed = await call_ok(client, "manage_predictions", {"action": "list"})
        assert [p["id"] for p in listed["items"]] == [pid]
        got = await call_ok(client, "manage_predictions", {"action": "get", "id": pid, "limit": 5})
        assert len(got["predicted"]) == 5
        assert got["truncated"] is True
        actuals = {str(r["key"]): r["actual"] for r in got["predicted"]}
        rescored = await call_ok(client, "manage_predictions", {"action": "rescore", "id": pid, "actuals": actuals})
        assert rescored["prediction"]["rescore"]["matched"] == 5
        found = await call_ok(client, "find_patterns", {"source": "dia", "columns": ["s1", "s2", "s3"]})
        assert found["total"] >= 1
        hits = await call_ok(client, "find_patterns", {"query": "correlation s1 s2"})
        assert hits["items"]
        saved = await call_ok(client, "manage_saved_query", {"action": "save", "name": "n", "sql": "SELECT 1 AS x"})
        assert saved["query"]["name"] == "n"
        ran = await call_ok(client, "query_data", {"saved": "n"})
        assert ran["rows"] == [[1]]
        removed = await call_ok(client, "manage_datasets", {"action": "remove", "name": "dia"})
        assert removed["removed"] is True


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        ("register_dataset", {"name": "Bad Name", "path": "x.csv"}, "not allowed"),
        ("register_dataset", {"name": "x", "path": "/etc/passwd"}, "outside the allowed folders"),
        ("register_dataset", {"name": "x"}, "either path"),
        ("register_dataset", {"name": "x", "connection": "nope", "sql": "SELECT 1"}, "no connection named"),
        ("profile_dataset", {"name": "missing"}, "no dataset named"),
        ("query_data", {}, "either sql or saved"),
        ("query_data", {"sql": "SELECT 1", "limit": 0}, "limit"),
        ("query_data", {"sql": "SELECT 1", "cursor": "forged"}, "cursor"),
        ("create_chart", {"source": "SELECT 1 AS a", "kind": "pie", "x": "a"}, "kind"),
        ("create_chart", {"source": "SELECT 1 AS a", "kind": "bar", "x": "nope"}, "nope"),
        ("predict", {"source": "SELECT 1 AS a", "target": "a", "task": "forecast"}, "time_column"),
        ("manage_predictions", {"action": "get"}, "needs id"),
        ("manage_predictions", {"action": "rescore", "id": 1}, "needs actuals"),
        ("manage_predictions", {"action": "get", "id": 999}, "no prediction 999"),
        ("find_patterns", {}, "give source"),
        ("find_patterns", {"source": "SELECT 1 AS a", "kinds": ["trend"]}, "time_column"),
        ("manage_datasets", {"action": "remove"}, "needs name"),
    ],
)
async def test_bad_arguments_get_clear_errors(
    settings: Settings, tool: str, args: dict[str, Any], expected: str
) -> None:
    async with Client(build(settings)) as client:
        text = await call_fails(client, tool, args, expected)
        assert len(text) <= 1024
        assert "Traceback" not in text


async def test_the_catalogue_and_a_profile_are_resources(settings: Settings, data_dir: Path) -> None:
    async with Client(build(settings)) as client:
        await call_ok(client, "register_dataset", {"name": "dia", "path": str(data_dir / "diabetes.parquet")})
        catalogue = await client.read_resource("analytics://datasets")
        data = json.loads(catalogue.contents[0].text)  # type: ignore[union-attr]
        assert [d["name"] for d in data["items"]] == ["dia"]
        prof = await client.read_resource("analytics://datasets/dia/profile")
        assert json.loads(prof.contents[0].text)["rows"] == 442  # type: ignore[union-attr]
