"""A re-run analyses only files whose content changed and merges into what a full run gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from servers.code_quality.analyzers import build_analyzers
from servers.code_quality.files import list_files
from servers.code_quality.runner import AnalysisResult, MemoryCache, run_analysis

pytestmark = pytest.mark.anyio


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = (tmp_path / "tree").resolve()
    for d in range(10):
        (root / f"d{d}").mkdir(parents=True)
        for i in range(50):
            body = f"import os\n\n\ndef f(x):\n    return x + {i}\n" if i % 7 == 0 else f"V = {i}\n"
            (root / f"d{d}" / f"m{i}.py").write_text(body)
    return root


def _change_two(root: Path) -> None:
    (root / "d3" / "m5.py").write_text("import sys\nimport json\n")
    (root / "d8" / "m14.py").write_text("V = 14\n")


def _comparable(result: AnalysisResult) -> tuple[object, object]:
    return [f.to_dict() for f in result.findings], sorted(m.to_dict().items() for m in result.file_metrics.values())


async def test_rerun_analyses_only_the_two_changed_files_of_five_hundred_and_equals_a_full_run(tree: Path) -> None:
    cache = MemoryCache()
    first = await run_analysis(tree, list_files(tree).files, build_analyzers(["ruff"]), cache=cache)
    assert len(first.file_metrics) == 500
    assert first.outcomes[0].files_analyzed == 500
    unused_before = {f.path for f in first.findings if f.rule_id == "F401"}
    assert "d8/m14.py" in unused_before

    _change_two(tree)
    files = list_files(tree).files
    second = await run_analysis(tree, files, build_analyzers(["ruff"]), cache=cache)
    outcome = second.outcomes[0]
    assert (outcome.files_analyzed, outcome.files_cached, outcome.invocations) == (2, 498, 1)
    full = await run_analysis(tree, files, build_analyzers(["ruff"]), cache=MemoryCache())
    assert full.outcomes[0].files_analyzed == 500
    assert _comparable(second) == _comparable(full)
    changed = {f.path for f in second.findings if f.rule_id == "F401"}
    assert changed == (unused_before - {"d8/m14.py"}) | {"d3/m5.py"}


async def test_whole_program_analyzer_reuses_its_result_until_any_file_changes(tree: Path) -> None:
    cache = MemoryCache()
    files = list_files(tree).files[:20]
    first = await run_analysis(tree, files, build_analyzers(["vulture"]), cache=cache)
    again = await run_analysis(tree, files, build_analyzers(["vulture"]), cache=cache)
    assert (again.outcomes[0].invocations, again.outcomes[0].files_cached) == (0, 20)
    assert [f.to_dict() for f in again.findings] == [f.to_dict() for f in first.findings]
    (tree / files[0].path).write_text("W = 1\n")
    changed = list_files(tree).files[:20]
    third = await run_analysis(tree, changed, build_analyzers(["vulture"]), cache=cache)
    assert third.outcomes[0].invocations == 1


async def test_a_scoped_run_analyses_only_the_scope_uses_the_cache_elsewhere_and_lists_the_rest_as_gaps(
    tree: Path,
) -> None:
    cache = MemoryCache()
    files = list_files(tree).files
    scoped = await run_analysis(tree, files, build_analyzers(["ruff"]), cache=cache, scope={"ruff": ["d0/m0.py"]})
    outcome = scoped.outcomes[0]
    assert (outcome.files_analyzed, len(outcome.files_out_of_scope)) == (1, 499)
    assert ("ruff", "d5/m7.py") in scoped.gaps()
    assert not scoped.partial
    await run_analysis(tree, files, build_analyzers(["ruff"]), cache=cache)
    _change_two(tree)
    files = list_files(tree).files
    changed = await run_analysis(
        tree, files, build_analyzers(["ruff"]), cache=cache, scope={"ruff": ["d3/m5.py", "d8/m14.py"]}
    )
    outcome = changed.outcomes[0]
    assert (outcome.files_analyzed, outcome.files_cached, outcome.files_out_of_scope) == (2, 498, [])
    assert changed.gaps() == set()


class _BrokenCache:
    async def get_many(self, keys):
        raise ConnectionError("database down")

    async def put_many(self, items):
        raise ConnectionError("database down")


async def test_a_failing_cache_costs_time_not_the_run(tree: Path) -> None:
    files = list_files(tree).files[:30]
    result = await run_analysis(tree, files, build_analyzers(["ruff", "vulture"]), cache=_BrokenCache())
    assert [(o.status, o.files_analyzed) for o in result.outcomes] == [("ok", 30), ("ok", 30)]
