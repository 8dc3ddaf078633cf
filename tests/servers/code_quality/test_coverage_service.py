"""Coverage through the service: a report the test writes is read, stored, shown, gated and hinted."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from common.errors import InvalidInput, NotFound
from common.runtime import open_deps
from servers.code_quality import coverage as coverage_module
from servers.code_quality.service import CodeQualityService
from servers.code_quality.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(make_settings: Callable[..., Any], tmp_path: Path) -> Settings:
    s: Settings = make_settings(
        Settings, allowed_roots=[tmp_path], analyzers=["ruff", "lizard"], embedding_model="hash-384", wait_s=120.0
    )
    return s


@pytest.fixture
async def svc(settings: Settings) -> AsyncIterator[CodeQualityService]:
    async with open_deps("code_quality", settings) as deps, CodeQualityService.open(deps, settings) as svc:
        yield svc


def cobertura(source: Path, files: dict[str, tuple[range, range]]) -> str:
    """A Cobertura report: per file name, the lines the tests ran and the ones they did not."""
    classes = []
    for name, (hit, missed) in files.items():
        lines = [f'<line number="{n}" hits="1"/>' for n in hit] + [f'<line number="{n}" hits="0"/>' for n in missed]
        classes.append(f'<class name="{name}" filename="{name}"><lines>{"".join(lines)}</lines></class>')
    return (
        f'<?xml version="1.0" ?>\n<coverage version="7.6"><sources><source>{source}</source></sources>'
        f"<packages><package name='p'><classes>{''.join(classes)}</classes></package></packages></coverage>\n"
    )


async def _gate(svc: CodeQualityService, root: Path, min_coverage: float | None) -> dict[str, Any]:
    await svc.gate(
        action="set", path=str(root), thresholds={"min_coverage": min_coverage}, run_id=None, base=None, name=None
    )
    result = await svc.gate(action="evaluate", path=str(root), thresholds=None, run_id=None, base=None, name=None)
    return next(c.model_dump() for c in result.checks if c.name == "coverage")


async def test_a_report_at_the_root_gives_file_coverage_totals_a_gate_and_a_complex_uncovered_hint(
    svc: CodeQualityService, sample_repo: Path
) -> None:
    # tangled() (lines 18-46 of app.py, complexity over 10) never runs; util.py runs fully.
    report = cobertura(
        sample_repo,
        {
            "pkg/app.py": (range(1, 18), range(18, 47)),
            "pkg/util.py": (range(1, 9), range(0)),
            "lib/gone.py": (range(1, 3), range(0)),
        },
    )
    (sample_repo / "coverage.xml").write_text(report)
    run = (await svc.analyze(str(sample_repo))).run
    assert run is not None
    assert run.coverage is not None
    info = run.coverage
    assert (info["format"], info["report"], info["files"]) == ("cobertura", str(sample_repo / "coverage.xml"), 2)
    assert (info["unmatched"], info["unmatched_examples"], info["stale_files"]) == (1, ["lib/gone.py"], 0)
    assert info["files_not_in_report"] == 1  # pkg/config.py
    assert (run.metrics["covered_lines"], run.metrics["coverable_lines"]) == (25, 54)
    assert run.metrics["coverage"] == round(25 / 54, 4)

    out = await svc.metrics(
        path=str(sample_repo),
        run_id=None,
        file_prefix=None,
        trend="coverage",
        limit=2,
        cursor=None,
        hints=5,
        sort="coverage",
    )
    assert [(f.path, f.covered_lines, f.coverable_lines, f.uncovered) for f in out.files.items] == [
        ("pkg/app.py", 17, 46, "18-46"),
        ("pkg/util.py", 8, 8, ""),
    ]
    assert out.files.items[0].coverage == round(17 / 46, 4)
    assert out.trend is not None
    assert [p.value for p in out.trend.points] == [round(25 / 54, 4)]
    hint = next(h for h in out.hints if h.kind == "complex_uncovered")
    assert (hint.symbol, hint.line, hint.metric, hint.value) == ("tangled", 18, "uncovered_line_share", 1.0)
    kinds = [h.kind for h in out.hints]
    assert kinds.index("complex_uncovered") < kinds.index("complex_function")  # untested complexity ranks first

    failed = await _gate(svc, sample_repo, 0.5)
    assert not failed["passed"]
    assert "under the minimum of 0.5" in failed["message"]
    assert (await _gate(svc, sample_repo, 0.4))["passed"]


async def test_a_source_changed_after_the_report_makes_it_stale(svc: CodeQualityService, sample_repo: Path) -> None:
    (sample_repo / "coverage.xml").write_text(cobertura(sample_repo, {"pkg/app.py": (range(1, 5), range(5, 8))}))
    first = (await svc.analyze(str(sample_repo))).run
    assert first is not None
    assert first.coverage is not None
    assert (first.coverage["stale_files"], first.coverage["warning"]) == (0, "")
    written = os.stat(sample_repo / "coverage.xml").st_mtime
    os.utime(sample_repo / "pkg" / "app.py", (written + 5, written + 5))
    second = (await svc.analyze(str(sample_repo))).run
    assert second is not None
    assert second.coverage is not None
    assert (second.coverage["stale_files"], second.coverage["stale_examples"]) == (1, ["pkg/app.py"])
    assert "may be stale" in second.coverage["warning"]


async def test_without_a_report_the_coverage_gate_fails_saying_none_was_found(
    svc: CodeQualityService, sample_repo: Path
) -> None:
    run = (await svc.analyze(str(sample_repo))).run
    assert run is not None
    assert run.coverage is None
    assert run.metrics["coverage"] is None
    check = await _gate(svc, sample_repo, 0.1)
    assert not check["passed"]
    assert "no coverage report was found" in check["message"]
    with pytest.raises(InvalidInput, match="share from 0 to 1"):
        await _gate(svc, sample_repo, 80)
    # A report found at the root that cannot be parsed: the run says why, and so does the gate.
    (sample_repo / "coverage.json").write_text('{"meta": {"format": 3}}')
    broken = (await svc.analyze(str(sample_repo))).run
    assert broken is not None
    assert broken.coverage is not None
    assert "KeyError" in broken.coverage["error"]
    check = await _gate(svc, sample_repo, 0.1)
    assert "coverage report cannot be read (KeyError" in check["message"]


async def test_a_named_lcov_report_elsewhere_is_read_and_bad_reports_are_refused_before_anything_starts(
    svc: CodeQualityService, sample_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifacts = tmp_path / "ci"
    artifacts.mkdir()
    (artifacts / "notes.txt").write_text("not a report")
    (artifacts / "lcov.info").write_text(f"TN:\nSF:{sample_repo}/pkg/util.py\nDA:4,1\nDA:8,0\nend_of_record\n")
    refused = [
        ("/etc/hostname", InvalidInput, "outside the allowed folders"),
        (str(artifacts / "missing.xml"), NotFound, "does not exist"),
        (str(artifacts / "notes.txt"), InvalidInput, "not a coverage report"),
    ]
    for path, error, message in refused:
        with pytest.raises(error, match=message):
            await svc.analyze(str(sample_repo), coverage=path)
    monkeypatch.setattr(coverage_module, "MAX_REPORT_BYTES", 10)
    with pytest.raises(InvalidInput, match="over the 10 byte limit"):
        await svc.analyze(str(sample_repo), coverage=str(artifacts / "lcov.info"))
    assert (await svc.list_jobs(status=None, limit=5, cursor=None)).jobs.total == 0  # type: ignore[union-attr]
    monkeypatch.undo()

    run = (await svc.analyze(str(sample_repo), coverage=str(artifacts / "lcov.info"))).run
    assert run is not None
    assert run.coverage is not None
    assert (run.coverage["format"], run.coverage["covered_lines"], run.coverage["coverable_lines"]) == ("lcov", 1, 2)
