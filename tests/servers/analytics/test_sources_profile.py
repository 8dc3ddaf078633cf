"""Registering and profiling files: schema, counts and figures equal pandas' own on a public data set."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from common.errors import InvalidInput, NotFound
from servers.analytics.engine import Engine
from servers.analytics.profile import profile, semantic_type
from servers.analytics.sources import Fingerprints, check_name, detect_format, fingerprint, inspect, make_dataset


@pytest.mark.parametrize("filename", ["diabetes.csv", "diabetes.parquet"])
def test_inspect_reports_pandas_schema_and_counts(data_dir: Path, diabetes: pd.DataFrame, filename: str) -> None:
    path = data_dir / filename
    engine = Engine([make_dataset("d", path)])
    info = inspect(engine, "d")
    assert [c.name for c in info.columns] == list(diabetes.columns)
    types = {c.name: c.type for c in info.columns}
    assert types["patient_id"] == "BIGINT"
    assert types["bmi"] == "DOUBLE"
    assert types["group"] == "VARCHAR"
    assert info.row_count == len(diabetes)
    assert info.byte_size == path.stat().st_size
    assert info.format == ("csv" if filename.endswith(".csv") else "parquet")
    assert info.sample[0]["patient_id"] == 1
    assert len(info.sample) == 5


@pytest.mark.parametrize("filename", ["diabetes.csv", "diabetes.parquet"])
def test_profile_figures_equal_pandas(data_dir: Path, filename: str) -> None:
    path = data_dir / filename
    frame = pd.read_csv(path) if filename.endswith(".csv") else pd.read_parquet(path)
    prof = profile(Engine([make_dataset("d", path)]), "d")
    assert prof.rows == len(frame)
    assert prof.approximate is False
    by_name = {c.name: c for c in prof.columns}
    for name in ["age", "bmi", "bp", "s1", "target"]:
        col, s = by_name[name], frame[name]
        assert col.count == s.count()
        assert col.nulls == s.isna().sum()
        assert col.distinct == s.nunique()
        assert col.min == pytest.approx(s.min(), rel=1e-12)
        assert col.max == pytest.approx(s.max(), rel=1e-12)
        assert col.mean == pytest.approx(s.mean(), rel=1e-9)
        assert col.std == pytest.approx(s.std(), rel=1e-9)
        for q, got in ((0.25, col.p25), (0.5, col.p50), (0.75, col.p75)):
            assert got == pytest.approx(s.quantile(q), rel=1e-9, abs=1e-12)
        assert sum(n for _, _, n in col.histogram) == s.count()
    group = by_name["group"]
    counts = frame["group"].value_counts()
    assert group.top == [(k, int(counts[k])) for k in sorted(counts.index, key=lambda k: (-counts[k], k))]
    assert by_name["bmi"].nulls == 26
    semantics = {c.name: c.semantic for c in prof.columns}
    assert semantics["patient_id"] == "id"
    assert semantics["group"] == "category"
    assert semantics["sex"] == "category"
    assert semantics["target"] == "measure"
    assert semantics["bmi"] == "measure"
    json.dumps([c.__dict__ for c in prof.columns])


def test_semantic_types_follow_documented_rules() -> None:
    assert semantic_type("BOOLEAN", "x", 10, 2) == "boolean"
    assert semantic_type("VARCHAR", "paid", 100, 2, ["yes", "no"]) == "boolean"
    assert semantic_type("TIMESTAMP", "at", 100, 100) == "timestamp"
    assert semantic_type("VARCHAR", "email", 100, 100) == "id"
    assert semantic_type("BIGINT", "order_id", 100, 100) == "id"
    assert semantic_type("BIGINT", "count", 100, 100) == "measure"
    assert semantic_type("VARCHAR", "city", 1000, 12) == "category"
    assert semantic_type("VARCHAR", "comment", 100, 80) == "text"
    assert semantic_type("INTEGER[]", "tags", 10, 3) == "other"


def test_profile_of_a_large_parquet_switches_to_approximate_aggregates(tmp_path: Path) -> None:
    path = tmp_path / "wide.parquet"
    duckdb.sql(f"COPY (SELECT i AS id, random() AS x, (i % 5)::VARCHAR AS c FROM range(300000) r(i)) TO '{path}'")
    prof = profile(Engine([make_dataset("w", path)]), "w", exact_limit=100_000)
    assert prof.approximate is True
    by_name = {c.name: c for c in prof.columns}
    assert by_name["c"].distinct == 5
    assert by_name["x"].p50 == pytest.approx(0.5, abs=0.02)
    assert by_name["id"].semantic == "id"


def test_json_ndjson_tsv_and_excel_are_registered_as_views(tmp_path: Path, diabetes: pd.DataFrame) -> None:
    small = diabetes.head(20)[["patient_id", "age", "group"]]
    small.to_json(tmp_path / "a.json", orient="records")
    small.to_json(tmp_path / "b.jsonl", orient="records", lines=True)
    small.to_csv(tmp_path / "c.tsv", sep="\t", index=False)
    small.to_excel(tmp_path / "d.xlsx", index=False)
    small.to_json(tmp_path / "e.json", orient="records", lines=True)
    names = {"a": "a.json", "b": "b.jsonl", "c": "c.tsv", "d": "d.xlsx", "e": "e.json"}
    engine = Engine([make_dataset(n, tmp_path / f) for n, f in names.items()])
    for name in names:
        info = inspect(engine, name)
        assert info.row_count == 20, name
        assert [c.name for c in info.columns] == ["patient_id", "age", "group"], name
        total = engine.query(f"SELECT sum(patient_id) AS s FROM {name}").rows[0][0]
        assert total == sum(range(1, 21)), name


def test_format_is_detected_from_content_when_the_suffix_says_nothing(tmp_path: Path, data_dir: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes((data_dir / "diabetes.parquet").read_bytes())
    assert detect_format(blob) == "parquet"
    text = tmp_path / "text"
    text.write_text('{"a": 1}\n{"a": 2}\n')
    assert detect_format(text) == "ndjson"
    plain = tmp_path / "plain"
    plain.write_text("a,b\n1,2\n")
    assert detect_format(plain) == "csv"


def test_a_malformed_csv_gives_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n" + "1,2\n" * 30_000 + "3,4,5,6,7\n")
    engine = Engine([make_dataset("bad", bad)])
    with pytest.raises(InvalidInput) as caught:
        inspect(engine, "bad")
    assert "CSV" in str(caught.value)
    assert len(str(caught.value)) < 400


def test_the_fingerprint_notices_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("a\n1\n")
    first = fingerprint(path)
    assert fingerprint(path) == first
    stat = path.stat()
    path.write_text("a\n2\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fingerprint(path) != first
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (3 << 20))
    before = fingerprint(big)
    with big.open("r+b") as fh:
        fh.seek((3 << 20) - 10)
        fh.write(b"y")
    os.utime(big, ns=(big.stat().st_atime_ns, int(before.split("-")[1])))
    assert fingerprint(big) != before


def test_a_known_fingerprint_is_reused_only_while_the_file_is_unchanged_and_settled(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("a\n1\n")
    settled = Fingerprints(clock=lambda: path.stat().st_ctime_ns / 1e9 + 60)
    first = settled.get(path)
    assert first == fingerprint(path)
    assert settled.cached(path) == first
    assert settled.get(path) == first
    assert settled.hashed == 1
    path.write_text("a\n22\n")
    assert settled.cached(path) is None
    assert settled.get(path) == fingerprint(path) != first
    assert settled.hashed == 2
    # Hashed within the same moment as the file's last change: an edit in that tick could hide, so it is hashed again.
    racy = Fingerprints(clock=lambda: path.stat().st_ctime_ns / 1e9)
    before = racy.get(path)
    assert racy.cached(path) is None
    stat = path.stat()
    path.write_text("a\n33\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert racy.get(path) == fingerprint(path) != before
    path.unlink()
    with pytest.raises(FileNotFoundError):
        settled.cached(path)


def test_a_large_csv_is_scanned_by_duckdb_not_loaded_into_python(tmp_path: Path) -> None:
    path = tmp_path / "large.csv"
    duckdb.sql(f"COPY (SELECT i AS id, i * 0.5 AS v, 'row ' || i AS label FROM range(2000000) r(i)) TO '{path}'")
    assert path.stat().st_size > 40 << 20
    engine = Engine([make_dataset("large", path)])
    tracemalloc.start()
    try:
        info = inspect(engine, "large")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.row_count == 2_000_000
    assert peak < 8 << 20


def test_names_and_paths_are_checked() -> None:
    for bad in ["Data", "1x", "duckdb_settings", "pg_x", "a-b", "", "x" * 64]:
        with pytest.raises(InvalidInput):
            check_name(bad)
    with pytest.raises(InvalidInput, match="absolute"):
        make_dataset("x", Path("relative.csv"))
    with pytest.raises(NotFound):
        make_dataset("x", Path("/nonexistent/file.csv"))
    with pytest.raises(InvalidInput, match="share a name"):
        Engine([make_dataset("x", Path(__file__)), make_dataset("x", Path(__file__))])


def test_a_named_sheet_is_read_and_a_missing_one_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"a": [1, 2]}).to_excel(writer, sheet_name="first", index=False)
        pd.DataFrame({"b": ["x", 3, None]}).to_excel(writer, sheet_name="mixed", index=False)
    engine = Engine([make_dataset("m", path, sheet="mixed")])
    info = inspect(engine, "m")
    assert [(c.name, c.type) for c in info.columns] == [("b", "VARCHAR")]
    assert info.row_count == 3
    with pytest.raises(NotFound, match="sheet"):
        inspect(Engine([make_dataset("n", path, sheet="nope")]), "n")
