"""The read-only guard: every known way around peers' read-only modes is refused, and nothing on
disk changes; the connection-level guard holds on its own too."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from common.errors import InvalidInput, QueryTimeout
from servers.analytics.engine import Engine, Limits, SqlParser, _Watchdog, is_denied_function, parse_select

REG = "{data}/diabetes.csv"
OTHER = "{data}/secret.csv"

BYPASSES = [
    # a transaction end, then a write
    "COMMIT; DELETE FROM data",
    "END; DROP VIEW data",
    "ROLLBACK; INSERT INTO data SELECT * FROM data",
    # several statements
    "SELECT 1; COPY data TO '{tmp}/out.csv'",
    "SELECT * FROM data; SELECT 2",
    "SELECT 1 ; ; INSERT INTO data SELECT * FROM data",
    # writes hidden in CTEs
    "WITH x AS (DELETE FROM data RETURNING *) SELECT * FROM x",
    "WITH x AS (UPDATE data SET age = 0 RETURNING *) SELECT count(*) FROM x",
    "WITH x AS (INSERT INTO data SELECT * FROM data RETURNING *) SELECT * FROM x",
    "WITH a AS (SELECT 1), b AS (DELETE FROM data RETURNING *) SELECT * FROM a",
    "SELECT * FROM (WITH x AS (DELETE FROM data RETURNING *) SELECT * FROM x) q",
    # leading comments, odd whitespace and case
    "/* harmless */ DELETE FROM data",
    "-- a comment\nDROP VIEW data",
    "\r\n\t  dElEtE\tFROM\r\ndata",
    "/* SELECT */ UPDATE data SET age = 1",
    # COPY, EXPORT, IMPORT
    "COPY data TO '" + REG + "'",
    "COPY (SELECT 1 AS a) TO '" + REG + "' (USE_TMP_FILE false)",
    "COPY (SELECT 1 AS a) TO '{tmp}/new.csv'",
    "COPY data FROM '" + OTHER + "'",
    "EXPORT DATABASE '{tmp}/exported'",
    "IMPORT DATABASE '{tmp}/exported'",
    # attach, extensions
    "ATTACH '{tmp}/x.duckdb' AS x",
    "ATTACH ':memory:' AS m",
    "DETACH DATABASE memory",
    "USE system",
    "INSTALL httpfs",
    "FORCE INSTALL httpfs",
    "LOAD httpfs",
    # system files and table functions outside the registered files
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM read_csv(['" + REG + "', '/etc/passwd'])",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM parquet_metadata('{data}/diabetes.parquet')",
    "SELECT * FROM 'https://example.com/x.csv'",
    "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')",
    "SELECT 1 FROM data WHERE age IN (SELECT * FROM read_csv('/etc/passwd'))",
    "SELECT (SELECT count(*) FROM read_text('/etc/passwd'))",
    "SELECT * FROM generate_series(1, 3), read_text('/etc/passwd')",
    "SELECT * FROM query('SELECT 1')",
    "SELECT * FROM query_table('data')",
    # an unregistered file in the same folder as a registered one
    "SELECT * FROM '" + OTHER + "'",
    "SELECT * FROM read_csv('" + OTHER + "')",
    "SELECT * FROM read_json('" + OTHER + "')",
    "SELECT * FROM secret",
    # glob
    "SELECT * FROM glob('{data}/*')",
    "SELECT * FROM glob('/etc/*')",
    # settings
    "SET threads = 1",
    "RESET threads",
    "SET enable_external_access = true",
    "SET VARIABLE x = 1",
    "PRAGMA version",
    "PRAGMA table_info('data')",
    "CALL duckdb_settings()",
    "CALL pragma_version()",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_settings",
    "SELECT * FROM duckdb_extensions()",
    "SELECT * FROM duckdb_secrets()",
    "SELECT current_setting('home_directory')",
    "SELECT current_setting('http_proxy')",
    "SELECT pg_catalog.current_setting('home_directory')",
    "SELECT getvariable('x')",
    "SELECT version()",
    "SELECT write_log('x')",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM duckdb_tables",
    "SELECT * FROM memory.main.data",
    # DDL and DML
    "CREATE TABLE t AS SELECT 1",
    "CREATE VIEW v AS SELECT * FROM read_csv('/etc/passwd')",
    "CREATE MACRO m() AS 1",
    "DROP VIEW data",
    "ALTER VIEW data RENAME TO d2",
    "INSERT INTO data SELECT * FROM data",
    "UPDATE data SET age = 0",
    "DELETE FROM data",
    "MERGE INTO data USING data AS d2 ON true WHEN MATCHED THEN DELETE",
    "CHECKPOINT",
    "VACUUM",
    "EXPLAIN ANALYZE SELECT * FROM data",
    "DESCRIBE SELECT * FROM read_text('/etc/passwd')",
    "SUMMARIZE SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM data AT (VERSION => 1)",
    # very long and deeply nested
    "SELECT " + "1 + " * 6000 + "1",
    "SELECT " + "(" * 200 + "1" + ")" * 200,
    "SELECT * FROM " + "(SELECT * FROM " * 40 + "data" + ")" * 40,
]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_the_bypass_table_is_large_enough() -> None:
    assert len(BYPASSES) >= 40
    assert len(set(BYPASSES)) == len(BYPASSES)


def test_every_bypass_attempt_is_refused_and_nothing_on_disk_changes(
    engine: Engine, tmp_path: Path, data_dir: Path
) -> None:
    before = _snapshot(tmp_path)
    expected = engine.query("SELECT count(*) AS n, sum(age) AS s FROM data").rows
    for template in BYPASSES:
        sql = template.replace("{tmp}", str(tmp_path)).replace("{data}", str(data_dir))
        with pytest.raises(InvalidInput) as caught:
            engine.query(sql)
        message = str(caught.value)
        assert "refused" in message or "does not parse" in message, (sql[:80], message)
        assert len(message) < 400
        assert "/etc/passwd" not in message or "passwd" in sql[:80]
    assert _snapshot(tmp_path) == before
    assert engine.query("SELECT count(*) AS n, sum(age) AS s FROM data").rows == expected


def test_refusals_say_which_rule_failed(engine: Engine) -> None:
    cases = {
        "COMMIT; DELETE FROM data": "2 statements",
        "WITH x AS (DELETE FROM data RETURNING *) SELECT * FROM x": "DELETE",
        "SELECT * FROM read_csv('/etc/passwd')": "table function 'read_csv'",
        "SELECT current_setting('home_directory')": "function 'current_setting'",
        "SELECT * FROM secret": "'secret' is not a registered dataset",
        "SET threads = 1": "SET",
        "x" * 30_000: "characters long",
    }
    for sql, fragment in cases.items():
        with pytest.raises(InvalidInput, match=fragment):
            engine.query(sql)


def test_ordinary_read_only_sql_passes_the_guard(engine: Engine) -> None:
    allowed = [
        "SELECT * FROM data WHERE age > 0 /* ; DROP VIEW data */",
        "-- leading comment\nSELECT count(*) FROM data;",
        "SELECT age FROM data; -- trailing comment",
        "/* a */ SELECT 'x;' AS s /* b */ ;  ;",
        "SELECT age FROM data -- no newline at the end",
        'WITH adults AS (SELECT * FROM data WHERE age > 0) SELECT "group", avg(bmi) FROM adults GROUP BY ALL',
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
        "SELECT d.patient_id, p.target FROM data d JOIN pq p USING (patient_id) QUALIFY row_number() OVER (ORDER BY d.patient_id) <= 3",
        "FROM data SELECT age ORDER BY age DESC LIMIT 2",
        "SELECT * FROM range(3) r(i), unnest([1, 2]) u(j)",
        "SELECT list_transform([1, 2], lambda x: x + 1), current_date IS NOT NULL, 'it''s'",
        "SELECT age FROM data UNION ALL SELECT age FROM pq",
        "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) v(n, s)",
    ]
    for sql in allowed:
        assert engine.query(sql, limit=5).columns, sql


def test_a_cte_name_cannot_smuggle_a_table_outside_its_scope(engine: Engine) -> None:
    sql = "SELECT * FROM (WITH duckdb_settings AS (SELECT 1) SELECT * FROM duckdb_settings) a, duckdb_settings"
    with pytest.raises(InvalidInput, match="duckdb_settings"):
        engine.query(sql)


def test_the_connection_alone_blocks_other_files_and_settings(engine: Engine, data_dir: Path, tmp_path: Path) -> None:
    """Guard 1 without guard 2: run_trusted skips the parse check, the locked connection still refuses."""
    before = _snapshot(tmp_path)
    attempts = [
        f"SELECT * FROM read_csv('{data_dir}/secret.csv')",
        "SELECT * FROM read_text('/etc/passwd')",
        f"SELECT * FROM glob('{data_dir}/*')",
        f"COPY (SELECT 1) TO '{tmp_path}/x.csv'",
        f"ATTACH '{tmp_path}/x.duckdb'",
        "SET enable_external_access = true",
        "SET allowed_paths = ['/etc/passwd']",
        "INSTALL httpfs",
        "LOAD httpfs",
    ]
    for sql in attempts:
        with pytest.raises(InvalidInput, match="failed"):
            engine.run_trusted(sql)
    assert _snapshot(tmp_path) == before


def test_a_slow_query_is_stopped_with_a_clear_error_quickly(data_dir: Path) -> None:
    from servers.analytics.sources import make_dataset

    engine = Engine([make_dataset("data", data_dir / "diabetes.csv")], Limits(timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match=r"longer than 0.5 s"):
        engine.query("SELECT count(*) FROM range(100000000) a, range(100000000) b")
    assert time.monotonic() - started < 10


def test_the_timeout_watchdog_fires_armed_alarms_in_time_order_and_never_disarmed_ones() -> None:
    dog = _Watchdog()
    fired: list[str] = []
    done = threading.Event()
    late = dog.arm(600, lambda: fired.append("late"))
    # Armed after a later alarm, an earlier one must wake the waiting thread.
    dog.arm(0.01, lambda: fired.append("early"))
    dropped = dog.arm(0.02, lambda: fired.append("dropped"))
    dog.disarm(dropped)

    def last() -> None:
        fired.append("last")
        done.set()

    dog.arm(0.05, last)
    assert done.wait(30)
    assert fired == ["early", "last"]
    dog.disarm(late)


def test_parse_select_returns_the_single_select_ast() -> None:
    ast = parse_select("SELECT a FROM t", ["t"])
    assert ast["node"]["type"] == "SELECT_NODE"
    with pytest.raises(InvalidInput, match="nest"):
        parse_select("SELECT " + "(" * 40 + "1" + ")" * 40, ["t"])


def test_a_parse_kept_by_the_shared_parser_still_meets_every_rule() -> None:
    parser = SqlParser()
    try:
        sql = "SELECT a FROM t"
        assert parse_select(sql, ["t"], parser=parser) == parse_select(sql, ["t"], parser=parser)
        with pytest.raises(InvalidInput, match="not a registered dataset"):
            parse_select(sql, ["u"], parser=parser)
        with pytest.raises(InvalidInput, match="nest"):
            parse_select(sql, ["t"], Limits(max_depth=2), parser=parser)
        ast = parse_select(sql, ["t"], parser=parser)
        ast["node"]["from_table"]["table_name"] = "changed"
        assert parse_select(sql, ["t"], parser=parser)["node"]["from_table"]["table_name"] == "t"
        for _ in range(2):
            with pytest.raises(InvalidInput, match="statements"):
                parse_select("SELECT 1; SELECT 2", ["t"], parser=parser)
    finally:
        parser.close()


def test_the_connection_is_locked_to_exactly_the_registered_files(engine: Engine, data_dir: Path) -> None:
    row = engine.run_trusted(
        "SELECT current_setting('enable_external_access'), current_setting('lock_configuration'), "
        "current_setting('autoload_known_extensions'), current_setting('autoinstall_known_extensions'), "
        "current_setting('allowed_paths'), current_setting('allowed_directories')"
    ).rows[0]
    assert row[:4] == [False, True, False, False]
    assert isinstance(row[4], list)
    assert sorted(row[4]) == sorted([str(data_dir / "diabetes.csv"), str(data_dir / "diabetes.parquet")])
    assert row[5] == []


def test_the_connection_guard_alone_would_let_a_registered_file_be_overwritten(tmp_path: Path) -> None:
    """Why the parse check is required: allowed_paths also opens the registered file for writing."""
    from servers.analytics.sources import make_dataset

    target = tmp_path / "t.csv"
    target.write_text("a\n1\n")
    engine = Engine([make_dataset("t", target)])
    sql = f"COPY (SELECT 2 AS a) TO '{target}' (USE_TMP_FILE false)"
    with pytest.raises(InvalidInput, match="refused"):
        engine.query(sql)
    assert target.read_text() == "a\n1\n"
    engine.run_trusted(sql)  # guard 1 only: DuckDB itself lets this write through
    assert target.read_text() != "a\n1\n"


def test_every_builtin_macro_that_reads_the_catalog_or_settings_is_denied() -> None:
    """A macro's body is expanded after the parse check, so one that queries the catalog must be denied
    by name; this fails when a DuckDB upgrade adds such a macro."""
    import duckdb

    con = duckdb.connect(":memory:")
    try:
        rows = con.execute(
            "SELECT DISTINCT function_name, schema_name, macro_definition FROM duckdb_functions() "
            "WHERE function_type = 'macro'"
        ).fetchall()
    finally:
        con.close()
    risky = [
        name
        for name, schema, body in rows
        if schema == "pg_catalog"
        or any(word in (body or "").lower() for word in ("select", "duckdb_", "pragma", "setting", "current_database"))
    ]
    assert risky
    assert [name for name in risky if not is_denied_function(name)] == []


def test_unpivot_and_lateral_joins_over_datasets_are_allowed(engine: Engine) -> None:
    sql = "SELECT * FROM (UNPIVOT (SELECT patient_id, age, bmi FROM data) ON age, bmi INTO NAME k VALUE v) LIMIT 4"
    assert engine.query(sql).total_rows == 4
    lateral = "SELECT d.patient_id, x.double_age FROM data d, LATERAL (SELECT d.age * 2 AS double_age) x"
    assert engine.query(lateral, limit=3).total_rows == 442
