"""Row cap and offset paging: every row once, in a stable order, with the true total."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from common.errors import InvalidInput
from servers.analytics.engine import Engine, Limits, clip_value, json_rows, json_value, parse_select, select_width
from servers.analytics.sources import make_dataset


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.parquet"
    duckdb.sql(f"COPY (SELECT i AS id, i % 1000 AS grp FROM range(1000000) r(i)) TO '{path}' (FORMAT parquet)")
    return path


def _all_pages(engine: Engine, sql: str, limit: int | None = None) -> tuple[list[list[Any]], list[bool], int]:
    rows: list[list[Any]] = []
    flags: list[bool] = []
    offset: int | None = 0
    total = -1
    while offset is not None:
        page = engine.query(sql, limit=limit, offset=offset)
        rows += page.rows
        flags.append(page.truncated)
        total = page.total_rows
        offset = page.next_offset
    return rows, flags, total


def test_paging_a_million_row_result_returns_every_row_once(big: Path) -> None:
    engine = Engine([make_dataset("big", big)], Limits(max_rows=250_000, timeout_s=60))
    rows, flags, total = _all_pages(engine, "SELECT id, grp FROM big")
    assert total == 1_000_000
    assert flags == [True, True, True, False]
    ids = [r[0] for r in rows]
    assert len(ids) == 1_000_000
    assert len(set(ids)) == 1_000_000


def test_the_row_cap_truncates_and_reports_the_true_total(big: Path) -> None:
    engine = Engine([make_dataset("big", big)], Limits(max_rows=100))
    page = engine.query("SELECT * FROM big WHERE grp = 7", limit=5000)
    assert len(page.rows) == 100
    assert page.total_rows == 1000
    assert page.truncated is True
    assert page.next_offset == 100
    assert page.notes == ["limit lowered to the maximum of 100 rows"]
    assert [c.name for c in page.columns] == ["id", "grp"]
    last = engine.query("SELECT * FROM big WHERE grp = 7", offset=950)
    assert (len(last.rows), last.truncated, last.next_offset) == (50, False, None)


def test_paging_keeps_the_users_order_and_breaks_ties_stably(big: Path) -> None:
    engine = Engine([make_dataset("big", big)], Limits(max_rows=3000))
    rows, _, total = _all_pages(engine, "SELECT grp, id FROM big WHERE id < 20000 ORDER BY grp DESC")
    assert total == 20_000
    assert [r[0] for r in rows] == sorted((r[0] for r in rows), reverse=True)
    assert sorted(r[1] for r in rows) == list(range(20_000))


def test_paging_an_aggregate_returns_each_group_once(big: Path) -> None:
    engine = Engine([make_dataset("big", big)], Limits(max_rows=300))
    rows, flags, total = _all_pages(engine, "SELECT grp, count(*) AS n FROM big GROUP BY grp")
    assert total == 1000
    assert len(flags) == 4
    assert sorted(r[0] for r in rows) == list(range(1000))
    assert {r[1] for r in rows} == {1000}


def test_bad_paging_arguments_are_refused(big: Path) -> None:
    engine = Engine([make_dataset("big", big)])
    with pytest.raises(InvalidInput, match="offset"):
        engine.query("SELECT 1", offset=-1)
    with pytest.raises(InvalidInput, match="limit"):
        engine.query("SELECT 1", limit=0)


def test_values_come_back_json_safe() -> None:
    import datetime as dt
    import decimal

    assert json_value(decimal.Decimal("1.5")) == 1.5
    assert json_value(float("nan")) is None
    assert json_value(dt.date(2020, 1, 2)) == "2020-01-02"
    assert json_value(dt.timedelta(minutes=1)) == 60.0
    assert json_value(b"\x00\x01") == "base64:AAE="
    assert json_value({"a": [1, float("inf")]}) == {"a": [1, None]}


def test_rows_are_converted_as_each_cell_would_be() -> None:
    import datetime as dt
    import decimal
    import uuid

    cells = [
        None, True, False, 0, -(2**70), 1.5, float("nan"), float("-inf"), "", "x" * 9, "y" * 12,
        dt.datetime(2024, 1, 2, 3, 4, 5, 6), dt.datetime(2024, 1, 2, tzinfo=dt.UTC), dt.date(2020, 1, 2),
        dt.time(1, 2), dt.timedelta(seconds=3), decimal.Decimal("2.25"), uuid.UUID(int=7), b"\x00",
        [1, 2, 3, 4], {"k": "z" * 20}, (1.0, float("nan")),
    ]  # fmt: skip
    rows = [cells, list(reversed(cells))]
    out, clipped = json_rows(rows, 10, 3)
    each = [[clip_value(json_value(v), 10, 3) for v in r] for r in rows]
    assert out == [[v for v, _ in r] for r in each]
    assert [[type(v) for v in r] for r in out] == [[type(v) for v, _ in r] for r in each]
    assert clipped is True
    assert json_rows([[1, "short", dt.date(2020, 1, 2)]], 10, 3) == ([[1, "short", "2020-01-02"]], False)
    assert json_rows([["x" * 11]], 10, 3) == ([["x" * 10 + "…"]], True)


def test_user_orderings_of_every_shape_survive_paging(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,x\n1,y\n2,z\n")
    engine = Engine([make_dataset("t", path)], Limits(max_rows=2))
    cases: dict[str, list[list[Any]]] = {
        "SELECT * FROM t ORDER BY ALL DESC": [[2, "z"], [1, "y"], [1, "x"]],
        "SELECT * FROM t ORDER BY a LIMIT 2": [[1, "x"], [1, "y"]],
        "SELECT a, b FROM t ORDER BY a NULLS FIRST, b DESC": [[1, "y"], [1, "x"], [2, "z"]],
        "SELECT a FROM t UNION SELECT a + 1 FROM t ORDER BY 1 DESC": [[3], [2], [1]],
        # Widths the text does not fix: each needs all its columns as tie-breaks.
        "SELECT unnest({'a': a, 'b': b}) FROM t ORDER BY a": [[1, "x"], [1, "y"], [2, "z"]],
        "SELECT a FROM t UNION ALL BY NAME SELECT b FROM t ORDER BY a NULLS LAST": [
            [1, None],
            [1, None],
            [2, None],
            [None, "x"],
            [None, "y"],
            [None, "z"],
        ],
        "SELECT COLUMNS('a|b') FROM t ORDER BY a DESC": [[2, "z"], [1, "x"], [1, "y"]],
    }
    for sql, expected in cases.items():
        rows, _, total = _all_pages(engine, sql)
        assert (rows, total) == (expected, len(expected)), sql


@pytest.mark.parametrize(
    ("sql", "width"),
    [
        ("SELECT a, b + 1 AS c, (SELECT max(a) FROM t) AS m FROM t", 3),
        ("SELECT * FROM t", None),
        ("SELECT a, t.* FROM t", None),
        ("SELECT COLUMNS('a|b') + 1 FROM t", None),
        ("SELECT a, (SELECT count(*) FROM (SELECT * FROM t)) AS n FROM t", None),
        ("SELECT unnest({'a': a, 'b': b}) FROM t", None),
        ("SELECT a FROM t UNION ALL BY NAME SELECT b FROM t", None),
    ],
)
def test_select_width_is_known_only_when_the_text_fixes_it(sql: str, width: int | None) -> None:
    assert select_width(parse_select(sql, ["t"])) == width


def test_frame_returns_a_checked_query_as_pandas_with_its_total(big: Path) -> None:
    engine = Engine([make_dataset("big", big)])
    frame, total = engine.frame("SELECT id, grp FROM big WHERE grp < 3", max_rows=10)
    assert list(frame.columns) == ["id", "grp"]
    assert (len(frame), total) == (10, 3000)
    with pytest.raises(InvalidInput, match="refused"):
        engine.frame("SELECT * FROM read_text('/etc/passwd')", max_rows=10)


def test_long_cell_values_are_cut_and_the_cut_is_noted(big: Path) -> None:
    engine = Engine([make_dataset("big", big)], Limits(max_cell_chars=10, max_cell_items=3))
    page = engine.query("SELECT repeat('ab', 50) AS s, range(10) AS l, 'short' AS ok")
    assert page.rows == [["abababababab"[:10] + "…", [0, 1, 2], "short"]]
    assert page.notes == ["long values cut to 10 characters or 3 items"]
    assert engine.query("SELECT 'short' AS ok").notes == []


def test_a_query_near_the_size_caps_still_pages_with_its_order(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,x\n1,y\n2,z\n")
    engine = Engine([make_dataset("t", path)], Limits(max_rows=2, max_parens=12, max_query_chars=400))
    sql = "SELECT " + "(" * 12 + "a + 1" + ")" * 12 + " AS x, b FROM t ORDER BY x DESC, b  " + "-- pad" + " " * 250
    assert len(sql) <= 400
    rows, _, total = _all_pages(engine, sql)
    assert (rows, total) == ([[3, "z"], [2, "x"], [2, "y"]], 3)


@pytest.mark.parametrize(
    ("sql", "limit", "offset", "rows", "total", "truncated"),
    [
        ("SELECT id FROM big WHERE id < 10", 10, 0, 10, 10, False),  # a page exactly full: nothing follows
        ("SELECT id FROM big WHERE id < 10", 9, 0, 9, 10, True),
        ("SELECT id FROM big WHERE id < 10", 4, 8, 2, 10, False),  # the last, partial page
        ("SELECT id FROM big WHERE id < 10", 4, 10, 0, 10, False),  # just past the end
        ("SELECT id FROM big WHERE id < 10", 4, 50, 0, 10, False),  # far past the end: counted
        ("SELECT id FROM big WHERE id < 0", 4, 0, 0, 0, False),
    ],
)
def test_the_total_is_exact_at_every_page_boundary(
    big: Path, sql: str, limit: int, offset: int, rows: int, total: int, truncated: bool
) -> None:
    engine = Engine([make_dataset("big", big)], Limits(max_rows=1000))
    page = engine.query(sql, limit=limit, offset=offset)
    assert (len(page.rows), page.total_rows, page.truncated) == (rows, total, truncated)
