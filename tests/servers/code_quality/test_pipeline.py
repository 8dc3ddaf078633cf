"""The end-to-end analysis of a tree, with slow analyzers limited to the files changed since a ref."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import InvalidInput
from servers.code_quality.analyzers import build_analyzers
from servers.code_quality.compare import compare
from servers.code_quality.pipeline import analyze_tree
from servers.code_quality.runner import MemoryCache

pytestmark = pytest.mark.anyio


@pytest.fixture
def edited(sample_repo: Path) -> Path:
    (sample_repo / "pkg" / "util.py").write_text("import pickle\n\n\ndef load(b):\n    return pickle.loads(b)\n")
    (sample_repo / "blob.bin").write_bytes(b"\0\1\2")
    return sample_repo


async def test_changed_since_limits_the_slow_analyzer_to_changed_files_and_reports_the_rest_as_gaps(
    edited: Path,
) -> None:
    report = await analyze_tree(
        edited, build_analyzers(["ruff", "bandit"]), cache=MemoryCache(), changed_since_ref="HEAD"
    )
    assert report.changed == ["blob.bin", "pkg/util.py"]
    assert report.git is not None
    assert report.git.dirty
    outcomes = {o.analyzer: o for o in report.result.outcomes}
    assert outcomes["ruff"].files_analyzed == 3
    assert (outcomes["bandit"].files_analyzed, sorted(outcomes["bandit"].files_out_of_scope)) == (
        1,
        ["pkg/app.py", "pkg/config.py"],
    )
    assert {f.rule_id for f in report.result.findings if f.analyzer == "bandit"} == {"B403", "B301"}
    gaps = report.gaps()
    assert ("bandit", "pkg/app.py") in gaps
    assert ("*", "blob.bin") in gaps
    assert report.metrics.files == 3
    assert report.metrics.skipped_files == {"binary": 1}
    # Bandit did not look at app.py this time: its old findings there are unknown, not fixed.
    full = await analyze_tree(edited, build_analyzers(["ruff", "bandit"]))
    diff = compare(full.result.findings, report.result.findings, gaps)
    assert not [f for f in diff.fixed if f.analyzer == "bandit"]
    assert {f.path for f in diff.unknown} == {"pkg/app.py"}


async def test_an_unknown_ref_is_invalid_input(sample_repo: Path) -> None:
    with pytest.raises(InvalidInput):
        await analyze_tree(sample_repo, build_analyzers(["ruff"]), changed_since_ref="nope")
