"""Coverage reports: the three formats, path mapping, unmatched entries, malformed input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from common.errors import InvalidInput
from servers.code_quality.coverage import (
    compact,
    count_in,
    detect_format,
    missing_files,
    parse_report,
    stale_files,
)

ROOT = "/work/repo"
LISTED = ["pkg/app.py", "pkg/util.py", "src/lib/index.js"]

COBERTURA = b"""<?xml version="1.0" ?>
<!DOCTYPE coverage SYSTEM "https://raw.githubusercontent.com/cobertura/web/master/htdocs/xml/coverage-04.dtd">
<coverage version="7.6" line-rate="0.5">
  <sources><source>/work/repo/pkg</source></sources>
  <packages><package name="pkg"><classes>
    <class name="app.py" filename="app.py">
      <lines><line number="1" hits="1"/><line number="4" hits="0"/><line number="5" hits="0"/></lines>
    </class>
    <class name="util.py" filename="util.py">
      <lines><line number="1" hits="3"/><line number="2" hits="1"/></lines>
    </class>
    <class name="gone.py" filename="gone.py"><lines><line number="1" hits="1"/></lines></class>
  </classes></package></packages>
</coverage>
"""


def test_line_ranges_are_compact_and_countable() -> None:
    assert compact([7, 1, 2, 3, 3, 9, 10]) == "1-3,7,9-10"
    assert compact([]) == ""
    assert count_in("1-3,7,9-10", 2, 9) == 4


def test_cobertura_maps_paths_relative_to_its_source_and_counts_the_unmatched() -> None:
    data = parse_report(detect_format("coverage.xml", COBERTURA[:4096]), COBERTURA, ROOT, LISTED)
    assert data.format == "cobertura"
    app = data.files["pkg/app.py"]
    assert (app.covered_lines, app.coverable_lines, app.covered, app.uncovered) == (1, 3, "1", "4-5")
    assert data.files["pkg/util.py"].share == 1.0
    assert (data.covered_lines, data.coverable_lines, data.share) == (3, 5, 0.6)
    assert (data.unmatched, data.unmatched_examples) == (1, ["gone.py"])


def test_lcov_maps_absolute_relative_and_foreign_checkout_paths() -> None:
    report = (
        b"TN:\nSF:/work/repo/pkg/app.py\nDA:1,1\nDA:2,0\nend_of_record\n"
        b"SF:pkg/util.py\nDA:1,0\nDA:1,2\nend_of_record\n"
        b"SF:/home/runner/work/x/x/src/lib/index.js\nDA:3,5,abc\nend_of_record\n"
        b"SF:/elsewhere/other.js\nDA:1,1\nend_of_record\n"
    )
    data = parse_report(detect_format("lcov.info", report), report, ROOT, LISTED)
    assert {p: (f.covered_lines, f.coverable_lines) for p, f in data.files.items()} == {
        "pkg/app.py": (1, 2),
        "pkg/util.py": (1, 1),  # the same line reported twice counts once, covered if either hit it
        "src/lib/index.js": (1, 1),
    }
    assert data.unmatched == 1


def test_coverage_py_json_reads_executed_and_missing_lines() -> None:
    report = json.dumps(
        {
            "meta": {"format": 3},
            "files": {
                "pkg/app.py": {"executed_lines": [1, 2], "missing_lines": [5, 6, 7], "excluded_lines": [9]},
                "/tmp/not-ours.py": {"executed_lines": [1], "missing_lines": []},
            },
        }
    ).encode()
    data = parse_report(detect_format("coverage.json", report), report, ROOT, LISTED)
    app = data.files["pkg/app.py"]
    assert (app.covered_lines, app.coverable_lines, app.uncovered) == (2, 5, "5-7")
    assert data.unmatched == 1


@pytest.mark.parametrize(
    ("name", "body", "expected"),
    [
        ("notes.txt", b"hello", "not a coverage report"),
        ("coverage.xml", b"<html><body/></html>", "not a coverage report"),
    ],
)
def test_an_unknown_format_is_refused_with_the_formats_read(name: str, body: bytes, expected: str) -> None:
    with pytest.raises(InvalidInput, match=expected) as err:
        detect_format(name, body)
    assert "Cobertura" in str(err.value)


@pytest.mark.parametrize(
    ("fmt", "body", "expected"),
    [
        ("cobertura", b"<coverage><packages><class filename='a.py'>", "Cobertura coverage report cannot be read"),
        ("cobertura", b'<coverage><class filename="a.py"><line number="x" hits="1"/></class></coverage>', "no number"),
        (
            "cobertura",
            b'<!DOCTYPE c [<!ENTITY e "boom">]><coverage><source>&e;</source></coverage>',
            "cannot be read",
        ),
        ("lcov", b"DA:1,1\n", "DA before any SF"),
        ("lcov", b"SF:a.py\nDA:one,1\n", "line 2"),
        ("coverage.py", b'{"meta": {}}', "KeyError"),
        ("coverage.py", b'{"files": {"a.py": {"executed_lines": ["x"]}}}', "ValueError"),
    ],
)
def test_malformed_reports_say_what_is_wrong(fmt: str, body: bytes, expected: str) -> None:
    with pytest.raises(InvalidInput, match=expected):
        parse_report(fmt, body, ROOT, LISTED)  # type: ignore[arg-type]


def test_files_changed_after_the_report_are_stale(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    written = os.stat(tmp_path / "a.py").st_mtime
    os.utime(tmp_path / "b.py", (written + 60, written + 60))
    assert stale_files(str(tmp_path), ["a.py", "b.py", "gone.py"], written) == ["b.py"]


def test_listed_files_of_a_reported_language_missing_from_the_report_are_counted() -> None:
    data = parse_report("lcov", b"SF:pkg/app.py\nDA:1,1\nend_of_record\n", ROOT, LISTED)
    languages = {"pkg/app.py": "python", "pkg/util.py": "python", "src/lib/index.js": "javascript"}
    assert missing_files(data, languages) == 1


# Written by coverage.py 7.18 (`coverage run --branch`, then `coverage xml`, `coverage json` and
# `coverage lcov`) over a three-file project in another folder; its own summary: 9 of 14 lines run.
COVERAGE_PY = Path(__file__).parent / "data" / "coverage_py"


@pytest.mark.parametrize("name", ["coverage.xml", "coverage.json", "coverage.lcov"])
def test_the_three_reports_coverage_py_writes_agree_with_its_own_summary(name: str) -> None:
    data = (COVERAGE_PY / name).read_bytes()
    listed = ["pkg/__init__.py", "pkg/calc.py", "test_calc.py"]
    report = parse_report(detect_format(name, data[:4096]), data, "/checkout/elsewhere", listed)
    assert (report.covered_lines, report.coverable_lines, report.share, report.unmatched) == (9, 14, 0.6429, 0)
    calc = report.files["pkg/calc.py"]
    assert (calc.covered_lines, calc.coverable_lines, calc.uncovered) == (6, 11, "8-10,14-15")
