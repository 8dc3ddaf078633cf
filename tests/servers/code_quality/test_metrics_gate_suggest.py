"""Run metrics, duplicated blocks, the quality gate and ranked refactoring suggestions."""

from __future__ import annotations

from pathlib import Path

import pytest

from servers.code_quality.analyzers import build_analyzers
from servers.code_quality.compare import compare
from servers.code_quality.duplication import considered, file_lines, find_duplicates
from servers.code_quality.files import SkippedFile, list_files
from servers.code_quality.gate import GateThresholds, evaluate_gate
from servers.code_quality.metrics import RunMetrics, compute_metrics, diff_metrics
from servers.code_quality.pipeline import DUPLICATION, measure_duplication
from servers.code_quality.records import AnalyzerOutcome, FunctionMetrics
from servers.code_quality.runner import AnalysisResult, MemoryCache, run_analysis
from servers.code_quality.suggest import suggest_refactorings
from tests.servers.code_quality.conftest import APP, commit_all, git

pytestmark = pytest.mark.anyio

BLOCK = """
def normalise(rows):
    cleaned = []
    for row in rows:
        name = row["name"].strip().lower()
        email = row["email"].strip().lower()
        cleaned.append({"name": name, "email": email})
    cleaned.sort(key=lambda r: r["name"])
    return cleaned
"""


@pytest.fixture
def copied(sample_repo: Path) -> Path:
    (sample_repo / "pkg" / "a.py").write_text("X = 1\n" + BLOCK)
    (sample_repo / "pkg" / "b.py").write_text("Y = 2\n\n" + BLOCK.replace("normalise", "normalise_again"))
    commit_all(sample_repo, "copy")
    return sample_repo


async def _run(root: Path, *extra: str) -> tuple[AnalysisResult, list[SkippedFile]]:
    listing = list_files(root)
    result = await run_analysis(root, listing.files, build_analyzers(["ruff", "lizard", "vulture", *extra]))
    return result, listing.skipped


def test_duplicate_blocks_are_found_with_their_other_location_and_share(copied: Path) -> None:
    listing = list_files(copied)
    report = find_duplicates(copied, listing.files, min_lines=5)
    assert [(b.path, b.line, b.end_line) for b in report.blocks] == [("pkg/a.py", 4, 10), ("pkg/b.py", 5, 11)]
    assert report.blocks[0].others == (("pkg/b.py", 5),)
    assert report.duplicated_lines == 14
    assert 0 < report.share < 0.5
    bounded = find_duplicates(copied, listing.files, min_lines=5, max_lines=10)
    assert bounded.truncated


def test_meaningful_lines_are_numbered_as_python_numbers_them_and_compared_without_blanks() -> None:
    text = (
        b"import os\n"  # 1: an import
        b"  # a comment\n"  # 2
        b"value = compute(1, 2)\r\n"  # 3
        b"}\n"  # 4: too short to mean anything
        b"\n"  # 5: blank
        b"page = 1\x0c  # a form feed is not a line break\r"  # 6
        b"value=compute(1,2)\n"  # 7: line 3 again, blanks aside
        b"   \t  "  # 8: blanks only, no final newline
    )
    lines = file_lines(text)
    assert lines.numbers.tolist() == [3, 6, 7]
    assert lines.hashes[0] == lines.hashes[2] != lines.hashes[1]
    assert file_lines(b"").numbers.tolist() == []


async def test_duplication_takes_each_files_lines_from_the_cache_and_reads_only_changed_files(copied: Path) -> None:
    listing = list_files(copied)
    cache = MemoryCache()
    first = await measure_duplication(copied, listing.files, cache)
    assert first.blocks
    assert first == find_duplicates(copied, listing.files)
    stored = {k for k in cache.data if k.analyzer == DUPLICATION}
    assert {k.content_hash for k in stored} == {f.sha256 for f in listing.files if considered(f)}
    # With every file gone, the cached lines alone give the same report: nothing was read again.
    for f in listing.files:
        (copied / f.path).unlink()
    assert await measure_duplication(copied, listing.files, cache) == first
    git(copied, "checkout", "--", ".")
    (copied / "pkg" / "b.py").write_text("Y = 2\n")
    changed = list_files(copied)
    assert await measure_duplication(copied, changed.files, cache) == find_duplicates(copied, changed.files)
    assert not find_duplicates(copied, changed.files).blocks
    assert len({k for k in cache.data if k.analyzer == DUPLICATION}) == len(stored) + 1


async def test_an_unusable_cached_entry_means_the_file_is_read_again(copied: Path) -> None:
    listing = list_files(copied)
    cache = MemoryCache()
    first = await measure_duplication(copied, listing.files, cache)
    for key in cache.data:
        cache.data[key] = {"numbers": "not base64!", "hashes": ""}
    assert await measure_duplication(copied, listing.files, cache) == first


async def test_metrics_count_size_complexity_duplication_and_findings_by_kind(copied: Path) -> None:
    result, skipped = await _run(copied)
    duplication = find_duplicates(copied, list_files(copied).files, min_lines=5)
    metrics = compute_metrics(result, skipped=skipped, duplication=duplication)
    assert metrics.files == 5
    assert metrics.lines == sum(m.lines for m in result.file_metrics.values())
    assert metrics.functions == 7
    assert metrics.max_complexity == max(fn.complexity for fn in result.functions)
    assert metrics.by_category["security"] == 3
    assert metrics.by_category["dead_code"] >= 4
    assert metrics.by_severity["high"] == 1
    assert sum(metrics.by_severity.values()) == metrics.findings == len(result.findings)
    assert metrics.duplication_share == duplication.share
    assert metrics.partial is False


async def test_gate_fails_on_new_high_findings_secrets_and_complexity_and_passes_once_they_are_gone(
    sample_repo: Path,
) -> None:
    base, _ = await _run(sample_repo, "detect-secrets")
    strict = GateThresholds(max_new_high=0, max_complexity=15, allow_secrets=False)
    first = evaluate_gate(strict, findings=base.findings, metrics=compute_metrics(base), outcomes=base.outcomes)
    assert not first.passed
    assert {c.name for c in first.checks if not c.passed} == {"new_high", "secrets", "max_complexity"}
    assert "no earlier run" in first.note
    assert any("possible secrets" in r for r in first.reasons)

    clean = (
        APP.replace("subprocess.call(cmd, shell=True)", "subprocess.call(cmd)")
        .replace('"hunter2-correct-horse"', 'os.environ["DB_PASSWORD"]')
        .replace("import subprocess\n", "import os\nimport subprocess\n")
    )
    (sample_repo / "pkg" / "app.py").write_text(clean)
    (sample_repo / "pkg" / "config.py").write_text("import os\n\nREGION = os.environ.get('REGION')\n")
    head, _ = await _run(sample_repo, "detect-secrets")
    diff = compare(base.findings, head.findings, head.gaps())
    relaxed = GateThresholds(max_new_high=0, max_complexity=None, max_new_findings=2)
    gate = evaluate_gate(
        relaxed, findings=head.findings, metrics=compute_metrics(head), outcomes=head.outcomes, new=diff.new
    )
    assert gate.passed, gate.reasons
    assert gate.note == ""


def test_gate_fails_a_partial_run_and_names_the_analyzer() -> None:
    outcomes = [AnalyzerOutcome("ruff", "ok"), AnalyzerOutcome("bandit", "timeout", reason="killed after 5 s")]
    result = AnalysisResult(outcomes=outcomes)
    gate = evaluate_gate(GateThresholds(), findings=[], metrics=compute_metrics(result), outcomes=outcomes, new=[])
    assert not gate.passed
    assert gate.reasons == ["analyzers that did not cover every file: bandit (timeout)"]
    lenient = evaluate_gate(
        GateThresholds(require_complete=False), findings=[], metrics=compute_metrics(result), outcomes=outcomes, new=[]
    )
    assert lenient.passed


async def test_suggestions_rank_the_tangled_hot_spot_first_and_link_its_findings(copied: Path) -> None:
    result, _ = await _run(copied)
    duplication = find_duplicates(copied, list_files(copied).files, min_lines=5)
    suggestions = suggest_refactorings(result, duplication, limit=10, max_file_lines=40)
    kinds = [s.kind for s in suggestions]
    assert set(kinds) >= {"complex_function", "hot_spot", "dead_code", "duplicate_block", "long_file"}
    top = suggestions[0]
    assert (top.kind, top.path) == ("hot_spot", "pkg/app.py")
    complex_fn = next(s for s in suggestions if s.kind == "complex_function")
    assert complex_fn.symbol == "tangled"
    assert complex_fn.value > complex_fn.threshold
    c901 = next(f for f in result.findings if f.rule_id == "C901")
    assert c901.fingerprint in complex_fn.fingerprints
    dead = next(s for s in suggestions if s.kind == "dead_code" and s.path == "pkg/app.py")
    assert "never_called_helper" in dead.reason
    assert [s.score for s in suggestions] == sorted((s.score for s in suggestions), reverse=True)
    assert len(suggest_refactorings(result, duplication, limit=2)) == 2


def test_metric_changes_say_what_got_worse() -> None:
    base = RunMetrics(files=3, lines=100, max_complexity=8, findings=4, by_severity={"high": 0, "low": 4})
    head = RunMetrics(files=3, lines=130, max_complexity=12, findings=3, by_severity={"high": 1, "low": 2})
    changes = {c.name: c for c in diff_metrics(base, head)}
    assert set(changes) == {"lines", "max_complexity", "findings", "findings_high", "findings_low"}
    assert (changes["max_complexity"].delta, changes["max_complexity"].worse) == (4, True)
    assert changes["findings_high"].worse
    assert not changes["findings"].worse
    assert not changes["findings_low"].worse
    assert not changes["lines"].worse


def test_the_coverage_gate_compares_the_share_and_fails_without_coverage_data() -> None:
    def check(metrics: RunMetrics, error: str = "") -> tuple[bool, str]:
        gate = evaluate_gate(
            GateThresholds(max_new_high=None, min_coverage=0.8),
            findings=[],
            metrics=metrics,
            outcomes=[],
            new=[],
            coverage_error=error,
        )
        found = next(c for c in gate.checks if c.name == "coverage")
        return found.passed, found.message

    assert check(RunMetrics(coverage=0.8)) == (
        True,
        "share of lines covered by tests: 0.8 (at or above the minimum of 0.8)",
    )
    assert check(RunMetrics(coverage=0.79))[0] is False
    assert "no coverage report was found" in check(RunMetrics())[1]
    assert check(RunMetrics(), "bad XML")[1] == "coverage unknown: bad XML"
    assert not [
        c
        for c in evaluate_gate(GateThresholds(), findings=[], metrics=RunMetrics(), outcomes=[]).checks
        if c.name == "coverage"
    ]


def test_a_complex_function_mostly_uncovered_is_suggested_above_its_complexity_hint() -> None:
    tangled = FunctionMetrics("pkg/app.py", "tangled", 18, 46, 17, 27)
    result = AnalysisResult(functions=[tangled])

    def kinds(covered: str, uncovered: str) -> list[str]:
        return [s.kind for s in suggest_refactorings(result, coverage={"pkg/app.py": (covered, uncovered)})]

    assert kinds("1-17,18-20", "21-46") == ["complex_uncovered", "complex_function"]
    assert kinds("1-17,18-32", "33-46") == ["complex_function"]  # 14 of 29 lines uncovered: not "mostly"
    assert kinds("", "") == ["complex_function"]
    hint = suggest_refactorings(result, coverage={"pkg/app.py": ("18-20", "21-46")})[0]
    assert (hint.metric, hint.value, hint.threshold) == ("uncovered_line_share", round(26 / 29, 3), 0.5)
