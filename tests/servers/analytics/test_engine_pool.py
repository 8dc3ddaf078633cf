"""Reused connections: a query cannot see what an earlier one on the same connection tried to leave,
a timed-out query leaves the connection usable, and a changed file gets a connection of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.errors import InvalidInput, QueryTimeout
from servers.analytics.engine import ConnectionPool, Engine, Limits
from servers.analytics.sources import fingerprint, make_dataset


@pytest.fixture
def pool() -> Iterator[ConnectionPool]:
    p = ConnectionPool(max_idle=2)
    yield p
    p.close()


def _engine(pool: ConnectionPool, path: Path, limits: Limits | None = None) -> Engine:
    ds = make_dataset("data", path)
    return Engine([ds], limits or Limits(timeout_s=20), pool=pool, versions={"data": fingerprint(path)})


def test_queries_in_sequence_on_one_connection_cannot_see_each_others_state(
    pool: ConnectionPool, data_dir: Path
) -> None:
    engine = _engine(pool, data_dir / "diabetes.csv")
    baseline = engine.query("SELECT count(*) AS n, max(age) AS a FROM data").rows
    settings_sql = (
        "SELECT current_setting('threads'), current_setting('memory_limit'), current_setting('enable_external_access')"
    )
    settings_before = engine.run_trusted(settings_sql).rows
    attempts = [
        "CREATE TEMP TABLE leak AS SELECT 42 AS x",
        "CREATE TEMPORARY VIEW leak AS SELECT 42 AS x",
        "CREATE MACRO leak() AS 42",
        "CREATE SEQUENCE leak",
        "SET VARIABLE leak = 42",
        "SET threads = 1",
        "SET memory_limit = '10MB'",
        "PREPARE leak AS SELECT 42",
        "SELECT setseed(0.42)",
        "BEGIN TRANSACTION",
    ]
    for sql in attempts:
        with pytest.raises(InvalidInput, match="refused"):
            engine.query(sql)
    followers = [
        ("SELECT * FROM leak", "not a registered dataset"),
        ("SELECT leak()", "leak"),
        ("SELECT getvariable('leak')", "getvariable"),
        ("SELECT nextval('leak')", "nextval"),
        ("EXECUTE leak", "refused"),
    ]
    for sql, fragment in followers:
        with pytest.raises(InvalidInput, match=fragment):
            engine.query(sql)
    # The same connection answered all of it, with nothing changed on it.
    assert pool.opened == 1
    assert engine.run_trusted(settings_sql).rows == settings_before
    assert engine.run_trusted("SELECT count(*) FROM duckdb_temporary_files()").rows == [[0]]
    assert engine.run_trusted("SELECT count(*) FROM duckdb_tables() WHERE temporary").rows == [[0]]
    assert engine.run_trusted("SELECT count(*) FROM duckdb_variables()").rows == [[0]]
    assert engine.query("SELECT count(*) AS n, max(age) AS a FROM data").rows == baseline
    assert pool.opened == 1


def test_a_timed_out_query_leaves_the_pooled_connection_usable(pool: ConnectionPool, data_dir: Path) -> None:
    engine = _engine(pool, data_dir / "diabetes.csv", Limits(timeout_s=0.5))
    first = engine.query("SELECT count(*) AS n FROM data").rows
    with pytest.raises(QueryTimeout, match=r"longer than 0.5 s"):
        engine.query("SELECT count(*) FROM range(100000000) a, range(100000000) b")
    assert pool.idle() == 1
    assert engine.query("SELECT count(*) AS n FROM data").rows == first
    assert engine.run_trusted("SELECT current_setting('lock_configuration')").rows == [[True]]
    assert pool.opened == 1


def test_a_changed_file_gets_a_new_connection_that_sees_the_new_content(pool: ConnectionPool, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,x\n2,y\n")
    assert _engine(pool, path).query("SELECT count(*) AS n FROM data").rows == [[2]]
    path.write_text("a,b,c\n1,x,true\n2,y,false\n3,z,true\n")
    changed = _engine(pool, path)
    assert changed.query("SELECT count(*) AS n, max(c::int) AS c FROM data").rows == [[3, 1]]
    assert pool.opened == 2


def test_result_columns_are_remembered_per_file_version_and_pages_stay_ordered(
    pool: ConnectionPool, tmp_path: Path
) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n2,x\n1,y\n1,x\n")
    engine = _engine(pool, path, Limits(max_rows=2))
    sql = "SELECT * FROM data ORDER BY a"
    first = engine.query(sql)
    assert [(c.name, c.type) for c in first.columns] == [("a", "BIGINT"), ("b", "VARCHAR")]
    assert pool.shape(engine._key, sql) == first.columns
    again = engine.query(sql)
    assert (again.columns, again.rows, again.truncated) == (first.columns, [[1, "x"], [1, "y"]], True)
    assert engine.query(sql, offset=2).rows == [[2, "x"]]
    path.write_text("a,b,c\n2,x,1.5\n1,y,2.5\n1,y,0.5\n")
    changed = _engine(pool, path, Limits(max_rows=2))
    assert pool.shape(changed._key, sql) is None
    page = changed.query(sql)
    assert [c.name for c in page.columns] == ["a", "b", "c"]
    assert page.rows == [[1, "y", 0.5], [1, "y", 2.5]]
    pool.close()
    assert pool.shape(changed._key, sql) is None


def test_the_pool_keeps_at_most_its_idle_limit_and_closes_the_rest(tmp_path: Path, data_dir: Path) -> None:
    pool = ConnectionPool(max_idle=1)
    other = tmp_path / "o.csv"
    other.write_text("a\n1\n")
    _engine(pool, data_dir / "diabetes.csv").query("SELECT 1 AS x FROM data LIMIT 1")
    _engine(pool, other).query("SELECT a FROM data")
    assert pool.idle() == 1
    assert _engine(pool, other).query("SELECT a FROM data").rows == [[1]]
    assert pool.opened == 2
    pool.close()
    assert pool.idle() == 0
    # A connection given back after close is closed, not kept.
    assert _engine(pool, other).query("SELECT a FROM data").rows == [[1]]
    assert pool.idle() == 0


def test_a_pooled_engine_needs_every_fingerprint(pool: ConnectionPool, data_dir: Path) -> None:
    with pytest.raises(ValueError, match="fingerprint"):
        Engine([make_dataset("data", data_dir / "diabetes.csv")], pool=pool, versions={})


@pytest.mark.parametrize(
    ("file", "text"),
    [
        ("q.csv", 'when,"it\'s","a""b"\n2020-01-05,"x, y",1.5\n2021-03-04,z,\n'),
        ("t.tsv", 'a\tb c\n1\tx\n2\t"q"\n'),
        ("evil.csv", "\"x'}) , read_text('/etc/passwd') --\",b\n1,2\n"),
    ],
)
def test_a_pooled_csv_reads_exactly_as_an_auto_detected_one(
    pool: ConnectionPool, tmp_path: Path, file: str, text: str
) -> None:
    """Pooled connections pin the sniffed CSV layout (built with the engine's own quoting); the rows
    and types must equal a fresh auto-detecting connection's."""
    path = tmp_path / file
    path.write_text(text)
    fresh = Engine([make_dataset("data", path)])
    pooled = _engine(pool, path)
    sql = "SELECT * FROM data"
    a, b = fresh.query(sql), pooled.query(sql)
    assert (a.columns, a.rows) == (b.columns, b.rows)
    view = pooled.run_trusted("SELECT sql FROM duckdb_views() WHERE view_name = 'data'").rows[0][0]
    assert "auto_detect = false" in str(view)
