"""The code_quality service on a real database: runs, triage, comparison, cache, concurrency, bad input."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import stat
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from common.errors import InvalidInput, NotFound
from common.runtime import open_deps
from common.testing import wait_until
from servers.code_quality import service as service_module
from servers.code_quality.files import load_stamps
from servers.code_quality.service import CodeQualityService
from servers.code_quality.settings import Settings
from tests.servers.code_quality.conftest import commit_all

pytestmark = pytest.mark.anyio

FIXED_APP_HEAD = "import subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd)\n"


@pytest.fixture
def settings(make_settings: Callable[..., Any], tmp_path: Path) -> Settings:
    s: Settings = make_settings(
        Settings, allowed_roots=[tmp_path], analyzers=["ruff"], embedding_model="hash-384", wait_s=120.0
    )
    return s


@pytest.fixture
async def svc(settings: Settings) -> AsyncIterator[CodeQualityService]:
    async with open_deps("code_quality", settings) as deps, CodeQualityService.open(deps, settings) as svc:
        yield svc


async def _findings(svc: CodeQualityService, root: Path, **filters: Any) -> list[Any]:
    page = await svc.list_findings(
        path=str(root),
        run_id=filters.pop("run_id", None),
        severity=None,
        category=None,
        status=filters.pop("status", None),
        file_prefix=None,
        analyzer=None,
        limit=200,
        cursor=None,
    )
    return page.items


def _at(items: list[Any], rule: str) -> list[tuple[str, int, str]]:
    return [(f.path, f.line, f.category) for f in items if f.rule_id == rule]


async def test_known_problems_are_found_then_fixed_and_new_after_a_fixing_commit(
    svc: CodeQualityService, sample_repo: Path
) -> None:
    first = await svc.analyze(str(sample_repo), analyzers=["ruff", "vulture", "lizard", "detect-secrets"])
    assert first.job is not None
    assert first.job.status == "done", first.job
    assert first.run is not None
    assert not first.run.partial
    assert first.run.git_commit
    assert first.run.branch == "main"
    assert first.run.dirty is False
    items = await _findings(svc, sample_repo)
    assert _at(items, "S602") == [("pkg/app.py", 6, "security")]
    assert _at(items, "S105") == [("pkg/app.py", 10, "security")]
    assert _at(items, "F401") == [("pkg/util.py", 1, "lint")]
    assert _at(items, "C901") == [("pkg/app.py", 18, "complexity")]
    assert _at(items, "aws-access-key") == [("pkg/config.py", 3, "secret")]
    assert ("pkg/app.py", 14, "dead_code") in _at(items, "unused-function")
    assert all("hunter2" not in (f.message + (f.context or "")) for f in items)
    shell = next(f for f in items if f.rule_id == "S602")
    assert shell.severity == "high"
    assert shell.status == "open"

    app = (sample_repo / "pkg" / "app.py").read_text()
    (sample_repo / "pkg" / "app.py").write_text(app.replace("subprocess.call(cmd, shell=True)", "subprocess.call(cmd)"))
    (sample_repo / "pkg" / "util.py").write_text("import pickle\n\n\ndef load(b):\n    return pickle.loads(b)\n")
    commit_all(sample_repo, "fix the shell call, add pickle")
    second = await svc.analyze(str(sample_repo), analyzers=["ruff", "vulture", "lizard", "detect-secrets"])
    assert second.run is not None
    assert second.run.seq == 2
    diff = await svc.compare_runs(path=str(sample_repo), head_run=None, base=None, kind="fixed", limit=50, cursor=None)
    assert diff.findings is not None
    assert ("S602", "pkg/app.py") in {(f.rule_id, f.path) for f in diff.findings.items}
    assert ("F401", "pkg/util.py") in {(f.rule_id, f.path) for f in diff.findings.items}
    new = await svc.compare_runs(path=str(sample_repo), head_run=None, base=None, kind="new", limit=50, cursor=None)
    assert new.findings is not None
    assert "S301" in {f.rule_id for f in new.findings.items}
    assert new.counts["new"] == len(new.findings.items)
    fixed_status = await _findings(svc, sample_repo, run_id=first.run.id, status="fixed")
    assert "S602" in {f.rule_id for f in fixed_status}
    check = await svc.check_finding(str(sample_repo), shell.fingerprint)
    assert (check.status, check.passed) == ("fixed", True)
    still = next(f for f in items if f.rule_id == "S105")
    assert (await svc.check_finding(str(sample_repo), still.fingerprint)).passed is False
    assert (await svc.check_finding(str(sample_repo), "nope")).status == "not_in_base"


async def test_an_accepted_finding_stays_accepted_across_reruns_and_line_moves(
    svc: CodeQualityService, sample_repo: Path
) -> None:
    await svc.analyze(str(sample_repo))
    items = await _findings(svc, sample_repo)
    password = next(f for f in items if f.rule_id == "S105")
    result = await svc.set_status(
        str(sample_repo), [password.fingerprint, "unknown-fp"], "accepted", actor="alice", reason="test fixture"
    )
    assert result.updated == [password.fingerprint]
    assert result.unknown == ["unknown-fp"]
    with pytest.raises(InvalidInput, match="reason"):
        await svc.set_status(str(sample_repo), [password.fingerprint], "false_positive", actor="a", reason=" ")
    app = sample_repo / "pkg" / "app.py"
    app.write_text("# a header comment\n# and another\n\n" + app.read_text())
    commit_all(sample_repo, "move lines")
    await svc.analyze(str(sample_repo))
    await svc.analyze(str(sample_repo))
    moved = next(f for f in await _findings(svc, sample_repo) if f.rule_id == "S105")
    assert moved.line == password.line + 3
    assert (moved.status, moved.status_by, moved.status_reason) == ("accepted", "alice", "test fixture")


async def test_a_rerun_after_changing_two_of_five_hundred_files_analyses_only_those_and_equals_a_full_run(
    svc: CodeQualityService, settings: Settings, tmp_path: Path
) -> None:
    root = tmp_path / "tree"
    for d in range(10):
        (root / f"d{d}").mkdir(parents=True)
        for i in range(50):
            body = f"import os\n\n\ndef f(x):\n    return x + {i}\n" if i % 7 == 0 else f"V = {i}\n"
            (root / f"d{d}" / f"m{i}.py").write_text(body)
    first = await svc.analyze(str(root))
    assert first.run is not None
    assert first.run.analyzers[0].files_analyzed == 500
    (root / "d3" / "m5.py").write_text("import sys\nimport json\n")
    (root / "d8" / "m14.py").write_text("V = 14\n")
    second = await svc.analyze(str(root))
    assert second.run is not None
    outcome = second.run.analyzers[0]
    assert (outcome.files_analyzed, outcome.files_cached) == (2, 498)
    real = svc.resolve_root(str(root))
    stamps = load_stamps(settings.stamps_file(real), real)  # what the next listing starts from
    assert len(stamps.entries) == 500
    assert stamps.entries["d8/m14.py"][6] == hashlib.sha256(b"V = 14\n").hexdigest()
    incremental = await _findings(svc, root)
    # A service on a fresh cache table analyses everything: its findings must be the same.
    await svc.deps.db.execute("TRUNCATE code_quality.result_cache")
    full = await svc.analyze(str(root))
    assert full.run is not None
    assert full.run.analyzers[0].files_analyzed == 500
    again = await _findings(svc, root)
    key = [(f.fingerprint, f.rule_id, f.path, f.line, f.message) for f in incremental]
    assert key == [(f.fingerprint, f.rule_id, f.path, f.line, f.message) for f in again]
    assert full.run.metrics["findings"] == second.run.metrics["findings"]
    await svc.deps.db.execute(
        "UPDATE code_quality.result_cache SET created_at = now() - interval '40 days' WHERE content_hash < '8'"
    )
    pruned = await svc.prune_cache()
    assert 0 < pruned < 500


def _sparse(path: Path, size: int) -> None:
    with path.open("wb") as fh:
        fh.truncate(size)


def _head(path: str, n: int) -> bytes:
    with Path(path).open("rb") as fh:
        return fh.read(n)


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ('case "$1" in --version) echo "ruff 9.9.9";; *) echo boom >&2; exit 2;; esac\n', "failed"),
        ('case "$1" in --version) echo 1.0;; *) exec sleep 30;; esac\n', "timeout"),
        (None, "missing"),
    ],
)
async def test_a_crashing_hanging_or_missing_analyzer_leaves_a_partial_run_with_the_reason(
    make_settings: Callable[..., Any], tmp_path: Path, sample_repo: Path, body: str | None, status: str
) -> None:
    exe = _script(tmp_path / "fake", body) if body else str(tmp_path / "absent")
    settings = make_settings(
        Settings,
        allowed_roots=[tmp_path],
        analyzers=["ruff", "semgrep"],
        semgrep_executable=exe,
        analyzer_timeout_s=2.0,
        embedding_model="hash-384",
        wait_s=60.0,
    )
    async with open_deps("code_quality", settings) as deps, CodeQualityService.open(deps, settings) as svc:
        out = await svc.analyze(str(sample_repo))
    assert out.job is not None
    assert out.job.status == "done"
    assert out.run is not None
    assert out.run.partial
    outcomes = {o.analyzer: o for o in out.run.analyzers}
    assert outcomes["ruff"].status == "ok"
    assert outcomes["semgrep"].status == status
    assert outcomes["semgrep"].reason
    assert any(e["item"] == "semgrep" for e in out.job.errors)


async def test_four_instances_analysing_one_repository_make_consistent_runs_without_duplicates(
    settings: Settings, sample_repo: Path
) -> None:
    async with (
        open_deps("code_quality", settings) as d1,
        open_deps("code_quality", settings) as d2,
        CodeQualityService.open(d1, settings) as a,
        CodeQualityService.open(d2, settings) as b,
        CodeQualityService.open(d1, settings) as c,
        CodeQualityService.open(d2, settings) as d,
    ):
        results = await asyncio.gather(*(s.analyze(str(sample_repo), wait_s=120.0) for s in (a, b, c, d)))
        job_ids = {r.job.id for r in results if r.job}
        run_ids = {r.run.id for r in results if r.run}
        assert all(r.job and r.job.status == "done" for r in results)
        # Calls that met a live analysis followed it; any later one made its own, complete run.
        assert len(run_ids) == len(job_ids)
        assert any(r.joined for r in results) or len(run_ids) == 4
        seqs = sorted(r.run.seq for r in results if r.run)
        assert sorted(set(seqs)) == list(range(1, len(run_ids) + 1))
        counts = set()
        for run_id in run_ids:
            items = await _findings(a, sample_repo, run_id=run_id)
            assert len({f.fingerprint for f in items}) == len(items)
            counts.add(len(items))
        assert len(counts) == 1


async def test_paths_outside_the_roots_symlink_escapes_and_missing_folders_are_refused(
    svc: CodeQualityService, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "a.py").write_text("import os\n")
    with pytest.raises(InvalidInput, match="outside the allowed folders"):
        await svc.analyze(str(outside))
    link = tmp_path / "escape"
    os.symlink(outside, link)
    with pytest.raises(InvalidInput, match="outside the allowed folders"):
        await svc.analyze(str(link))
    with pytest.raises(NotFound):
        await svc.analyze(str(tmp_path / "nope"))
    with pytest.raises(InvalidInput, match="unknown analyzer"):
        await svc.analyze(str(tmp_path), analyzers=["pylint-ish"])
    jobs = (await svc.list_jobs(status=None, limit=10, cursor=None)).jobs
    assert jobs is not None
    assert jobs.total == 0


async def test_binary_only_folders_and_huge_files_are_listed_as_skips_with_reasons(
    svc: CodeQualityService, tmp_path: Path
) -> None:
    root = tmp_path / "bins"
    root.mkdir()
    (root / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    _sparse(root / "huge.py", 50 * 1024 * 1024)
    out = await svc.analyze(str(root))
    assert out.run is not None
    assert out.job is not None
    reasons = {s.path: s.reason for s in out.run.skipped}
    assert reasons == {"blob.bin": "binary", "image.png": "binary", "huge.py": "too_large"}
    assert out.run.metrics["files"] == 0
    assert {e["item"] for e in out.job.errors} >= {"blob.bin", "huge.py"}


async def test_a_cancelled_analysis_ends_cancelled_records_no_run_and_can_be_resumed(
    make_settings: Callable[..., Any], tmp_path: Path, sample_repo: Path
) -> None:
    slow = _script(tmp_path / "slow", 'case "$1" in --version) echo 1.0;; *) exec sleep 30;; esac\n')
    settings = make_settings(
        Settings,
        allowed_roots=[tmp_path],
        analyzers=["semgrep"],
        semgrep_executable=slow,
        embedding_model="hash-384",
        heartbeat_s=0.2,
        job_stale_s=5.0,
    )
    async with open_deps("code_quality", settings) as deps, CodeQualityService.open(deps, settings) as svc:
        started = await svc.analyze(str(sample_repo), wait_s=0)
        assert started.job is not None
        assert started.job.status == "running"
        await svc.cancel(started.job.id)
        done = await svc.jobs.wait(started.job.id, timeout_s=20)
        assert done.status == "cancelled"
        assert (await svc.job_status(done.id)).run is None
        again = await svc.resume(done.id, wait_s=0)
        assert again.job is not None
        assert again.job.attempts == 2
        await svc.cancel(again.job.id)


async def test_gate_metrics_trend_hints_and_search_answer_from_the_runs(
    svc: CodeQualityService, sample_repo: Path
) -> None:
    await svc.analyze(str(sample_repo), analyzers=["ruff", "lizard"])
    (sample_repo / "pkg" / "extra.py").write_text("import sys\n")
    commit_all(sample_repo, "more")
    await svc.analyze(str(sample_repo), analyzers=["ruff", "lizard"])
    root = str(sample_repo)
    gate = await svc.gate(action="evaluate", path=root, thresholds=None, run_id=None, base=None, name=None)
    assert gate.passed is True, gate.reasons
    await svc.gate(action="set", path=root, thresholds={"max_complexity": 5}, run_id=None, base=None, name=None)
    failed = await svc.gate(action="evaluate", path=root, thresholds=None, run_id=None, base=None, name=None)
    assert failed.passed is False
    assert any("complexity" in r for r in failed.reasons)
    with pytest.raises(InvalidInput, match="unknown threshold"):
        await svc.gate(action="set", path=root, thresholds={"max_bogus": 1}, run_id=None, base=None, name=None)
    await svc.gate(action="baseline", path=root, thresholds=None, run_id=None, base=None, name="release-1")
    vs = await svc.compare_runs(path=root, head_run=None, base="release-1", kind="new", limit=10, cursor=None)
    assert vs.counts["new"] == 0

    metrics = await svc.metrics(path=root, run_id=None, file_prefix="pkg/", trend="findings", limit=2, cursor=None)
    assert metrics.files.items[0].path == "pkg/app.py"
    assert metrics.files.truncated
    assert metrics.trend is not None
    assert [p.seq for p in metrics.trend.points] == [1, 2]
    assert metrics.trend.chart_path
    assert _head(metrics.trend.chart_path, 8) == b"\x89PNG\r\n\x1a\n"

    hinted = await svc.metrics(path=root, run_id=None, file_prefix=None, trend=None, hints=5, limit=1, cursor=None)
    assert hinted.hints[0].path == "pkg/app.py"
    assert hinted.hints[0].fingerprints
    tangled = next(h for h in hinted.hints if h.symbol == "tangled")
    assert (tangled.kind, tangled.line) == ("complex_function", 18)

    hits = await svc.search("F401 imported but unused", path=root, status=None, limit=5, cursor=None)
    assert hits.items
    assert hits.items[0].rule_id == "F401"
    assert len({h.fingerprint for h in hits.items}) == len(hits.items)


async def test_dependencies_without_a_reachable_source_never_read_as_clean(
    svc: CodeQualityService, tmp_path: Path
) -> None:
    root = tmp_path / "deps"
    root.mkdir()
    (root / "requirements.txt").write_text("requests==2.0.0\nflask>=1\n")
    none = await svc.dependencies(str(root), None, 20)
    assert none.status == "no_source"
    assert "no advisory source" in none.reason
    export = tmp_path / "osv"
    export.mkdir()
    unreachable = await svc.dependencies(str(root), str(export), 20)
    assert unreachable.status == "unreachable"
    assert not unreachable.vulnerabilities
    (export / "r.json").write_text(
        '{"id": "GHSA-x", "summary": "bad", "affected": [{"package": {"ecosystem": "PyPI", "name": "requests"},'
        ' "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.3.0"}]}]}]}'
    )
    ok = await svc.dependencies(str(root), str(export), 20)
    assert ok.status == "ok"
    assert [v.package for v in ok.vulnerabilities] == ["requests"]
    assert [u.name for u in ok.unchecked] == ["flask"]
    down = await svc.dependencies(str(root), "http://127.0.0.1:9/v1/query", 20)
    assert down.status == "unreachable"
    assert "nothing was checked" in down.reason
    with pytest.raises(InvalidInput, match="outside"):
        await svc.dependencies(str(root), "/etc", 20)


async def test_an_analysis_interrupted_by_a_stopping_process_is_marked_and_resumes_from_the_cache(
    make_settings: Callable[..., Any], tmp_path: Path, sample_repo: Path
) -> None:
    gate = tmp_path / "hold"
    gate.write_text("")
    semgrep = _script(
        tmp_path / "semgrep",
        f'case "$1" in --version) echo 1.0;; *) if [ -f {gate} ]; then exec sleep 30; '
        """else echo '{"results": []}'; fi;; esac\n""",
    )
    settings = make_settings(
        Settings,
        allowed_roots=[tmp_path],
        analyzers=["ruff", "semgrep"],
        semgrep_executable=semgrep,
        embedding_model="hash-384",
        heartbeat_s=0.2,
        job_stale_s=1.0,
    )
    async with open_deps("code_quality", settings) as deps:
        async with CodeQualityService.open(deps, settings) as first:
            started = await first.analyze(str(sample_repo), wait_s=0)
            assert started.job is not None
            job_id = started.job.id

            async def ruff_done() -> bool:
                return (await first.jobs.get(job_id)).done >= 3

            await wait_until(ruff_done, timeout_s=30, what="ruff's progress")
        # The service stopped with the job running, as a killed process leaves it.
        gate.unlink()
        async with CodeQualityService.open(deps, settings) as second:

            async def interrupted() -> bool:
                await second.jobs.recover()
                return (await second.jobs.get(job_id)).status == "interrupted"

            await wait_until(interrupted, timeout_s=15, what="the job to be marked interrupted")
            resumed = await second.resume(job_id, wait_s=60)
    assert resumed.job is not None
    assert (resumed.job.status, resumed.job.attempts) == ("done", 2)
    assert resumed.run is not None
    assert not resumed.run.partial
    ruff = next(o for o in resumed.run.analyzers if o.analyzer == "ruff")
    assert (ruff.files_cached, ruff.files_analyzed) == (3, 0)


async def test_changed_since_is_recorded_and_a_bad_ref_is_refused_before_any_job(
    svc: CodeQualityService, sample_repo: Path
) -> None:
    (sample_repo / "pkg" / "util.py").write_text("import json\n")
    out = await svc.analyze(str(sample_repo), analyzers=["ruff", "bandit"], changed_since_ref="HEAD")
    assert out.run is not None
    assert (out.run.changed_since, out.run.dirty) == ("HEAD", True)
    bandit = next(o for o in out.run.analyzers if o.analyzer == "bandit")
    assert bandit.files_analyzed == 1
    with pytest.raises(InvalidInput, match="no commit named"):
        await svc.analyze(str(sample_repo), changed_since_ref="no-such-branch")
    jobs = (await svc.list_jobs(status=None, limit=10, cursor=None)).jobs
    assert jobs is not None
    assert jobs.total == 1


async def test_search_finds_findings_by_meaning_with_the_real_model(
    settings: Settings, sample_repo: Path, embedder: Any
) -> None:
    async with open_deps("code_quality", settings) as deps:
        real = dataclasses.replace(deps, embedder=embedder)
        async with CodeQualityService.open(real, settings) as svc:
            await svc.analyze(str(sample_repo))
            await svc.embed_pending()
            hits = await svc.search(
                "secret credentials written into the program", path=None, status=None, limit=3, cursor=None
            )
            assert hits.items[0].rule_id == "S105"
            shell = await svc.search(
                "running an operating system command through a shell",
                path=str(sample_repo),
                status=None,
                limit=3,
                cursor=None,
            )
            assert shell.items[0].rule_id == "S602"
            page = await svc.search("problem", path=None, status=None, limit=2, cursor=None)
            assert page.truncated
            rest = await svc.search("problem", path=None, status=None, limit=2, cursor=page.next_cursor)
            assert not {h.fingerprint for h in page.items} & {h.fingerprint for h in rest.items}


async def test_the_findings_are_embedded_in_the_background_after_the_job(
    svc: CodeQualityService, sample_repo: Path
) -> None:
    done = await svc.analyze(str(sample_repo))
    assert done.job is not None
    assert done.job.status == "done"
    texts = "SELECT count(*), count(embedding) FROM code_quality.finding_texts"

    async def embedded() -> bool:
        row = await svc.deps.db.fetchrow(texts)
        assert row is not None
        return bool(row[0] > 0 and row[1] == row[0])

    await wait_until(embedded, timeout_s=30, what="the findings' vectors", every_s=0.05)
    # Texts a stopped process left without a vector are embedded by the next process's first pass.
    await svc.embedder.stop()
    await svc.deps.db.execute("UPDATE code_quality.finding_texts SET embedding = NULL, embedding_model = NULL")
    assert not await embedded()
    async with CodeQualityService.open(svc.deps, svc.settings):
        await wait_until(embedded, timeout_s=30, what="the left-behind vectors", every_s=0.05)


async def test_files_past_the_file_limit_are_listed_as_skipped(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(3):
        (root / f"m{i}.py").write_text(f"V = {i}\n")
    settings = make_settings(
        Settings, allowed_roots=[tmp_path], analyzers=["ruff"], embedding_model="hash-384", max_files=2
    )
    async with open_deps("code_quality", settings) as deps, CodeQualityService.open(deps, settings) as svc:
        out = await svc.analyze(str(root), wait_s=60)
    assert out.run is not None
    assert out.run.metrics["files"] == 2
    assert [(s.path, s.reason) for s in out.run.skipped] == [("m2.py", "over_file_limit")]


async def test_the_background_embedder_fills_only_texts_without_a_vector(svc: CodeQualityService) -> None:
    # A text the store-model switch already embedded with its target model stays as the switch left it.
    db = svc.deps.db
    project = await db.fetchval("INSERT INTO code_quality.projects (root) VALUES ('/tmp/embed-fill') RETURNING id")
    await db.execute(
        "INSERT INTO code_quality.finding_texts (project_id, fingerprint, text, embedding, embedding_model) "
        "VALUES ($1, 'switched', 'unused import os', array_fill(0.05, ARRAY[384])::real[]::vector, 'hash-384:b'), "
        "($1, 'empty', 'line too long', NULL, NULL)",
        project,
    )
    await svc.embed_pending()
    found = await db.fetch(
        "SELECT fingerprint, embedding_model FROM code_quality.finding_texts WHERE project_id = $1", project
    )
    rows = {r["fingerprint"]: r["embedding_model"] for r in found}
    assert rows == {"switched": "hash-384:b", "empty": svc.deps.embedder.model_name}


SNIPPET = """import os


def run(cmd, mode):
    if mode == "a":
        exec(cmd)
    elif mode == "b":
        return 1
    return 0
"""


def _scratch_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("code-quality-check-*")}


async def test_code_given_as_text_is_checked_in_a_folder_removed_afterwards_and_nothing_is_recorded(
    svc: CodeQualityService,
) -> None:
    before = _scratch_folders()
    out = await svc.check_code({"tool/run.py": SNIPPET, "README.md": "# notes\n"}, ["ruff", "lizard"])
    assert [(f.rule_id, f.severity, f.path, f.line) for f in out.findings] == [
        ("S102", "high", "tool/run.py", 6),
        ("F401", "low", "tool/run.py", 1),
    ]
    assert out.findings_total == 2
    assert [(fn.name, fn.line, fn.complexity, fn.parameters) for fn in out.functions] == [("run", 4, 3, 2)]
    assert {o.analyzer: (o.status, o.files_analyzed) for o in out.analyzers} == {"ruff": ("ok", 1), "lizard": ("ok", 1)}
    assert _scratch_folders() == before
    jobs = (await svc.list_jobs(status=None, limit=10, cursor=None)).jobs
    assert jobs is not None
    assert jobs.total == 0
    # The per-file result cache is shared with folder runs: the same code again is not analysed again.
    again = await svc.check_code({"tool/run.py": SNIPPET}, ["ruff", "lizard"])
    assert again.findings == out.findings
    assert {o.analyzer: o.files_cached for o in again.analyzers} == {"ruff": 1, "lizard": 1}


async def test_code_given_as_text_that_no_analyzer_reads_or_bad_names_are_refused_before_or_after_writing(
    svc: CodeQualityService,
) -> None:
    before = _scratch_folders()
    with pytest.raises(InvalidInput, match="extension"):
        await svc.check_code({"notes.txt": SNIPPET}, ["ruff"])
    with pytest.raises(InvalidInput, match=r"a\.py was skipped \(binary\)"):
        await svc.check_code({"a.py": "x = 1\0\n"}, ["ruff"])
    with pytest.raises(InvalidInput, match="unknown analyzer"):
        await svc.check_code({"a.py": SNIPPET}, ["pylint-ish"])
    with pytest.raises(InvalidInput, match="relative path"):
        await svc.check_code({"../a.py": SNIPPET})
    assert _scratch_folders() == before


async def test_checks_at_once_beyond_the_worker_count_wait_their_turn(
    make_settings: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(
        Settings, allowed_roots=[tmp_path], analyzers=["ruff"], embedding_model="hash-384", workers=1
    )
    running, most = 0, 0
    analyse = service_module.run_analysis

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            return await analyse(*args, **kwargs)
        finally:
            running -= 1

    monkeypatch.setattr(service_module, "run_analysis", counted)
    async with open_deps("code_quality", settings) as deps, CodeQualityService.open(deps, settings) as svc:
        outs = await asyncio.gather(*(svc.check_code({f"m{i}.py": f"import os{i}\n"}) for i in range(3)))
    assert [[f.rule_id for f in out.findings] for out in outs] == [["F401"]] * 3
    assert most == 1


async def test_code_sent_as_text_with_a_folder_follows_that_folders_ruff_configuration(
    svc: CodeQualityService, tmp_path: Path
) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "ruff.toml").write_text(
        '[lint]\nselect = ["F"]\nignore = ["F401"]\n\n[lint.per-file-ignores]\n"tests/*" = ["F821"]\n'
    )
    code = "import os\nexec(x)\n"
    plain = await svc.check_code({"app.py": code}, ["ruff"])
    assert [f.rule_id for f in plain.findings] == ["F821", "S102", "F401"]
    configured = await svc.check_code({"app.py": code, "tests/test_app.py": code}, ["ruff"], str(project))
    # The folder's selection and ignores apply, and so do its per-file ignores, by the same relative paths.
    assert [(f.rule_id, f.path) for f in configured.findings] == [("F821", "app.py")]
    again = await svc.check_code({"app.py": code}, ["ruff"], str(project))
    assert again.findings == configured.findings[:1]
    assert again.analyzers[0].files_cached == 1
    with pytest.raises(InvalidInput, match="ruff configuration"):
        await svc.check_code({"ruff.toml": "", "app.py": code}, ["ruff"], str(project))
    with pytest.raises(InvalidInput, match="outside the allowed folders"):
        await svc.check_code({"app.py": code}, ["ruff"], "/etc")
