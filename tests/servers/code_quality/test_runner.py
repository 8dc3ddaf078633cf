"""Running the analyzers: findings in the right place, outcomes for every failure, cancellation."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from common.testing import wait_until
from servers.code_quality.analyzers import base, build_analyzers
from servers.code_quality.files import SourceFile, list_files
from servers.code_quality.runner import MIN_BATCH_FILES, MemoryCache, plan_batches, run_analysis
from tests.servers.code_quality.conftest import APP

pytestmark = pytest.mark.anyio


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _at(findings, analyzer: str, rule: str) -> list[tuple[str, int, str]]:
    return [(f.path, f.line, f.category) for f in findings if f.analyzer == analyzer and f.rule_id == rule]


async def test_each_known_problem_is_reported_at_its_path_line_and_category(sample_repo: Path) -> None:
    listing = list_files(sample_repo)
    analyzers = build_analyzers(["ruff", "lizard", "vulture", "bandit", "detect-secrets"])
    result = await run_analysis(sample_repo, listing.files, analyzers)
    assert not result.partial, result.outcomes
    found = result.findings
    assert _at(found, "ruff", "S602") == [("pkg/app.py", 6, "security")]
    assert _at(found, "ruff", "S101") == [("pkg/app.py", 5, "security")]
    assert _at(found, "ruff", "S105") == [("pkg/app.py", 10, "security")]
    assert _at(found, "ruff", "C901") == [("pkg/app.py", 18, "complexity")]
    assert _at(found, "ruff", "F401") == [("pkg/util.py", 1, "lint")]
    assert _at(found, "bandit", "B602") == [("pkg/app.py", 6, "security")]
    assert _at(found, "detect-secrets", "aws-access-key") == [("pkg/config.py", 3, "secret")]
    assert _at(found, "vulture", "unused-function") == [
        ("pkg/app.py", 4, "dead_code"),
        ("pkg/app.py", 9, "dead_code"),
        ("pkg/app.py", 14, "dead_code"),
        ("pkg/app.py", 18, "dead_code"),
    ]
    shell = next(f for f in found if f.rule_id == "S602")
    assert shell.severity == "high"
    assert shell.symbol == "run"
    assert shell.context == "    return subprocess.call(cmd, shell=True)"
    secret = next(f for f in found if f.category == "secret")
    assert secret.context is None
    assert "AKIA" not in secret.message
    assert all("hunter2" not in (f.message + (f.context or "")) for f in found)
    assert len({f.fingerprint for f in found}) == len(found)
    tangled = next(fn for fn in result.functions if fn.name == "tangled")
    assert tangled.complexity > 10
    metrics = result.file_metrics["pkg/app.py"]
    assert metrics.functions == 4
    assert metrics.max_complexity == tangled.complexity
    assert metrics.lines == APP.count("\n")
    assert {o.analyzer: o.status for o in result.outcomes} == dict.fromkeys(
        ["ruff", "lizard", "vulture", "bandit", "detect-secrets"], "ok"
    )
    assert all(o.version for o in result.outcomes)


async def test_crashing_hanging_and_missing_analyzers_end_as_outcomes_with_reasons(
    sample_repo: Path, tmp_path: Path
) -> None:
    crash = _script(tmp_path / "crash", 'case "$1" in --version) echo "ruff 9.9.9";; *) echo boom >&2; exit 2;; esac\n')
    hang = _script(tmp_path / "hang", 'case "$1" in --version) echo 1.0;; *) exec sleep 30;; esac\n')
    garbage = _script(tmp_path / "garbage", 'case "$1" in --version) echo 1.0;; *) echo "not json";; esac\n')
    analyzers = build_analyzers(
        ["ruff", "lizard", "bandit", "semgrep", "vulture"],
        {
            "ruff": {"executable": crash},
            "lizard": {"executable": hang, "timeout_s": 0.5},
            "bandit": {"executable": garbage},
            "semgrep": {"executable": str(tmp_path / "no-such-semgrep")},
        },
    )
    listing = list_files(sample_repo)
    result = await run_analysis(sample_repo, listing.files, analyzers)
    outcomes = {o.analyzer: o for o in result.outcomes}
    assert outcomes["ruff"].status == "failed"
    assert "code 2" in outcomes["ruff"].reason
    assert "boom" in outcomes["ruff"].reason
    assert outcomes["lizard"].status == "timeout"
    assert "0.5 s" in outcomes["lizard"].reason
    assert outcomes["bandit"].status == "failed"
    assert "not JSON" in outcomes["bandit"].reason
    assert outcomes["semgrep"].status == "missing"
    assert outcomes["vulture"].status == "ok"
    assert sorted(outcomes["ruff"].files_failed) == ["pkg/app.py", "pkg/config.py", "pkg/util.py"]
    assert result.partial
    assert ("ruff", "pkg/app.py") in result.gaps()
    assert ("semgrep", "*") in result.gaps()
    assert {f.analyzer for f in result.findings} == {"vulture"}


async def test_an_analyzer_flooding_its_output_is_killed_and_reported_failed(
    sample_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "MAX_OUTPUT_BYTES", 1024 * 1024)
    flood = _script(tmp_path / "flood", 'case "$1" in --version) echo 1.0;; *) exec yes;; esac\n')
    analyzers = build_analyzers(["ruff"], {"ruff": {"executable": flood, "timeout_s": 30}})
    result = await run_analysis(sample_repo, list_files(sample_repo).files, analyzers)
    assert result.outcomes[0].status == "failed"
    assert "more than 1 MiB" in result.outcomes[0].reason


async def test_semgrep_is_missing_unless_its_executable_is_configured(sample_repo: Path) -> None:
    (semgrep,) = build_analyzers(["semgrep"])
    result = await run_analysis(sample_repo, list_files(sample_repo).files, [semgrep])
    assert result.outcomes[0].status == "missing"
    assert "not configured" in result.outcomes[0].reason


async def test_cancelling_a_run_kills_the_analyzer_processes(sample_repo: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    hang = _script(
        tmp_path / "hang", f'case "$1" in --version) echo 1.0;; *) echo $$ > {pid_file}; exec sleep 60;; esac\n'
    )
    analyzers = build_analyzers(["lizard"], {"lizard": {"executable": hang, "timeout_s": 60}})
    task = asyncio.ensure_future(run_analysis(sample_repo, list_files(sample_repo).files, analyzers))
    await wait_until(
        lambda: pid_file.exists() and pid_file.read_text().strip() != "", timeout_s=30, what="analyzer started"
    )
    pid = int(pid_file.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.fixture
def forty_files(tmp_path: Path) -> Path:
    root = tmp_path.resolve()
    for i in range(40):
        (root / f"m{i}.py").write_text(f"def f{i}(x):\n    return x + {i}\n")
    return root


async def test_progress_reaches_the_total_and_batches_run_in_parallel(forty_files: Path) -> None:
    root = forty_files
    seen: list[tuple[int, int]] = []

    async def progress(done: int, total: int, message: str) -> None:
        seen.append((done, total))

    analyzers = build_analyzers(["lizard"], {"lizard": {"batch_size": 10}})
    result = await run_analysis(
        root, list_files(root).files, analyzers, cache=MemoryCache(), progress=progress, workers=2
    )
    assert result.outcomes[0].invocations == 4
    assert seen[-1] == (40, 40)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len(result.functions) == 40


async def test_a_configured_semgrep_runs_with_version_check_off_and_its_json_is_read(
    sample_repo: Path, tmp_path: Path
) -> None:
    argv_file = tmp_path / "argv"
    fake = _script(
        tmp_path / "semgrep",
        f"""case "$1" in --version) echo 1.99.0; exit 0;; esac
echo "$@" > {argv_file}
for last; do :; done
cat <<JSON
{{"results": [{{"check_id": "py.exec", "path": "$last", "start": {{"line": 6, "col": 12}},
  "end": {{"line": 6, "col": 40}}, "extra": {{"message": "shell call", "severity": "ERROR"}}}}], "errors": []}}
JSON
""",
    )
    (semgrep,) = build_analyzers(["semgrep"], {"semgrep": {"executable": fake, "config": "rules.yml"}})
    app = [f for f in list_files(sample_repo).files if f.path == "pkg/app.py"]
    result = await run_analysis(sample_repo, app, [semgrep])
    assert result.outcomes[0].status == "ok"
    assert result.outcomes[0].version == "1.99.0"
    assert [(f.rule_id, f.path, f.line, f.severity, f.category) for f in result.findings] == [
        ("py.exec", "pkg/app.py", 6, "high", "semgrep")
    ]
    argv = argv_file.read_text()
    assert "--disable-version-check" in argv
    assert "--config rules.yml" in argv


async def test_radon_adds_maintainability_and_lizard_reports_python_complexity_when_ruff_is_off(
    sample_repo: Path,
) -> None:
    result = await run_analysis(sample_repo, list_files(sample_repo).files, build_analyzers(["lizard", "radon"]))
    mi = result.file_metrics["pkg/app.py"].maintainability
    assert mi is not None
    assert 0 < mi <= 100
    assert [(f.analyzer, f.rule_id, f.symbol, f.line) for f in result.findings] == [("lizard", "ccn", "tangled", 18)]


@pytest.fixture
def repo_with_tests(sample_repo: Path) -> Path:
    (sample_repo / "tests").mkdir()
    (sample_repo / "tests" / "test_app.py").write_text("def test_it():\n    password = 'x' * 8\n    assert password\n")
    return sample_repo


async def test_asserts_and_fixed_passwords_in_test_files_are_not_security_findings(repo_with_tests: Path) -> None:
    result = await run_analysis(repo_with_tests, list_files(repo_with_tests).files, build_analyzers(["ruff"]))
    assert {f.path for f in result.findings if f.rule_id == "S101"} == {"pkg/app.py"}
    (strict,) = build_analyzers(["ruff"], {"ruff": {"relax_tests": False}})
    again = await run_analysis(repo_with_tests, list_files(repo_with_tests).files, [strict])
    assert {f.path for f in again.findings if f.rule_id == "S101"} == {"pkg/app.py", "tests/test_app.py"}


@pytest.fixture
def repo_with_broken_file(sample_repo: Path) -> Path:
    (sample_repo / "pkg" / "broken.py").write_text("def f(:\n    pass\n")
    return sample_repo


async def test_a_file_an_analyzer_cannot_parse_is_listed_as_failed_not_dropped(repo_with_broken_file: Path) -> None:
    root = repo_with_broken_file
    result = await run_analysis(root, list_files(root).files, build_analyzers(["ruff", "bandit", "vulture", "radon"]))
    outcomes = {o.analyzer: o for o in result.outcomes}
    for name in ("bandit", "vulture", "radon"):
        assert outcomes[name].files_failed == ["pkg/broken.py"], name
        assert "pkg/broken.py" in outcomes[name].reason
        assert outcomes[name].files_analyzed == 3
    assert result.partial
    assert ("vulture", "pkg/broken.py") in result.gaps()
    syntax = [f for f in result.findings if f.path == "pkg/broken.py"]
    assert {(f.analyzer, f.rule_id, f.severity) for f in syntax} == {("ruff", "invalid-syntax", "high")}


@pytest.mark.parametrize("config_name", ["pyproject.toml", "ruff.toml"])
async def test_ruff_follows_the_folders_own_configuration_unless_isolated(tmp_path: Path, config_name: str) -> None:
    (tmp_path / "mod.py").write_text("import os\nvalue = 1   \n")  # F401 (suite rules) and W291 (theirs)
    (tmp_path / "skip_me.py").write_text("value = 2   \n")
    section = "[tool.ruff]\n" if config_name == "pyproject.toml" else ""
    config = tmp_path / config_name
    config.write_text(f'{section}extend-exclude = ["skip_me.py"]\nlint.select = ["W291"]\n')
    files = list_files(tmp_path).files

    async def rules(**options: object) -> tuple[set[tuple[str, str]], str]:
        (ruff,) = build_analyzers(["ruff"], {"ruff": {"project_root": tmp_path, **options}})
        result = await run_analysis(tmp_path, files, [ruff])
        assert not result.partial, result.outcomes
        return {(f.path, f.rule_id) for f in result.findings}, ruff.config_hash()

    theirs, theirs_hash = await rules()
    assert theirs == {("mod.py", "W291")}, "their selection and their excludes apply"
    suite, suite_hash = await rules(isolated=True)
    assert ("mod.py", "F401") in suite
    assert ("mod.py", "W291") not in suite
    assert ("skip_me.py", "W291") not in suite
    assert theirs_hash != suite_hash
    config.write_text(f'{section}lint.select = ["W291"]\n')
    changed, changed_hash = await rules()
    assert changed == {("mod.py", "W291"), ("skip_me.py", "W291")}
    assert changed_hash != theirs_hash, "a changed configuration must not reuse cached results"


async def test_a_pyproject_without_a_ruff_section_leaves_the_suites_rules(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    (tmp_path / "mod.py").write_text("import os\n")
    (ruff,) = build_analyzers(["ruff"], {"ruff": {"project_root": tmp_path}})
    assert getattr(ruff, "config", "missing") is None
    result = await run_analysis(tmp_path, list_files(tmp_path).files, [ruff])
    assert {f.rule_id for f in result.findings} == {"F401"}


def test_batches_follow_the_bytes_left_and_end_small() -> None:
    files = [SourceFile(f"m{i:03}.py", "python", 1_000 * (1 + i % 7), "0" * 64, 10, 10) for i in range(400)]
    batches = plan_batches(files, 150, 2)
    assert [f for b in batches for f in b] == files
    assert all(MIN_BATCH_FILES <= len(b) <= 150 for b in batches)
    weights = [sum(f.size for f in b) for b in batches]
    assert weights[0] > 2 * weights[-1]
    assert max(weights[1:]) <= weights[0]
    assert [len(b) for b in plan_batches(files[:15], 150, 2)] == [15]
    assert [len(b) for b in plan_batches(files, 150, 2, threaded=True)] == [134, 134, 132]
