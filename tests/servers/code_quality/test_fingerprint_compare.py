"""Fingerprints survive moved code; compare() tells new, fixed, unchanged and unproven fixes apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from servers.code_quality.analyzers import build_analyzers
from servers.code_quality.compare import check_fixed, compare
from servers.code_quality.files import list_files
from servers.code_quality.fingerprint import annotate, assign_fingerprints
from servers.code_quality.records import Finding
from servers.code_quality.runner import AnalysisResult, run_analysis
from tests.servers.code_quality.conftest import APP, commit_all

pytestmark = pytest.mark.anyio


async def _analyse(root: Path) -> AnalysisResult:
    listing = list_files(root)
    return await run_analysis(root, listing.files, build_analyzers(["ruff", "vulture"]))


def _by_rule(result: AnalysisResult, rule: str) -> Finding:
    (finding,) = [f for f in result.findings if f.rule_id == rule]
    return finding


async def test_fingerprint_survives_ten_lines_inserted_above(sample_repo: Path) -> None:
    before = await _analyse(sample_repo)
    moved = "".join(f"# note {i}\n" if i % 3 else "\n" for i in range(10)) + APP
    (sample_repo / "pkg" / "app.py").write_text(moved)
    after = await _analyse(sample_repo)
    for rule in ("S602", "S101", "S105", "C901"):
        old, new = _by_rule(before, rule), _by_rule(after, rule)
        assert new.line == old.line + 10
        assert new.fingerprint == old.fingerprint
    diff = compare(before.findings, after.findings, after.gaps())
    assert diff.new == []
    assert diff.fixed == []


async def test_a_fixing_commit_shows_fixed_and_new_findings_and_answers_is_it_fixed(sample_repo: Path) -> None:
    before = await _analyse(sample_repo)
    shell = _by_rule(before, "S602")
    fixed_app = APP.replace("subprocess.call(cmd, shell=True)", "subprocess.call(cmd)").replace(
        "def connect():", "def connect():\n    eval('1')"
    )
    (sample_repo / "pkg" / "app.py").write_text(fixed_app)
    commit_all(sample_repo, "fix the shell call")
    after = await _analyse(sample_repo)
    diff = compare(before.findings, after.findings, after.gaps())
    assert [(f.rule_id, f.path) for f in diff.fixed] == [("S602", "pkg/app.py")]
    assert sorted(f.rule_id for f in diff.new) == ["S307", "S603"]
    assert len(diff.unchanged) == len(before.findings) - 1
    assert next(f for f in diff.unchanged if f.rule_id == "S101").fingerprint != _by_rule(before, "S101").fingerprint
    check = check_fixed(shell.fingerprint, before.findings, after.findings, after.gaps())
    assert (check.status, check.passed) == ("fixed", True)
    still = check_fixed(_by_rule(before, "S101").fingerprint, before.findings, after.findings, after.gaps())
    assert (still.status, still.passed) == ("still_present", False)
    assert check_fixed("f" * 32, before.findings, after.findings).status == "not_in_base"


async def test_a_finding_in_a_file_the_later_run_did_not_analyse_is_unknown_not_fixed(sample_repo: Path) -> None:
    before = await _analyse(sample_repo)
    shell = _by_rule(before, "S602")
    after = AnalysisResult()  # a later run in which ruff could not run at all
    gaps = {("ruff", "*"), ("*", "pkg/util.py")}
    diff = compare(before.findings, after.findings, gaps)
    expected = {f.fingerprint for f in before.findings if f.analyzer == "vulture" and f.path != "pkg/util.py"}
    assert {f.fingerprint for f in diff.fixed} == expected
    assert shell in diff.unknown
    check = check_fixed(shell.fingerprint, before.findings, after.findings, gaps)
    assert (check.status, check.passed) == ("unknown", False)


def test_identical_contexts_in_one_file_get_distinct_fingerprints_that_follow_their_order() -> None:
    lines = [
        "def f():",
        "    x = 1",
        "    assert x",
        "    return x",
        "def g():",
        "    x = 1",
        "    assert x",
        "    return x",
    ]
    raw = [
        Finding("ruff", "S101", "low", "security", "a.py", 3, "assert"),
        Finding("ruff", "S101", "low", "security", "a.py", 7, "assert"),
    ]
    first = assign_fingerprints(annotate(raw, lines, python=True))
    assert first[0].fingerprint != first[1].fingerprint
    same_symbol = [line.replace("def g", "def f") for line in lines]
    twins = assign_fingerprints(annotate(raw, same_symbol, python=True))
    assert twins[0].signature == twins[1].signature
    assert twins[0].fingerprint != twins[1].fingerprint
    again = assign_fingerprints(annotate(list(reversed(raw)), same_symbol, python=True))
    assert [f.fingerprint for f in again] == [f.fingerprint for f in twins]
