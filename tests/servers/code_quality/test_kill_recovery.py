"""A server process killed mid-analysis (SIGKILL over stdio) leaves a job that the next process marks
interrupted and resumes to one complete run, reusing the results the dead process had cached."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from common.testing import (
    call_ok,
    fetch_rows,
    heartbeats_older_than,
    kill_when,
    rpc_conversation,
    server_env,
    wait_until,
)
from servers.code_quality.server import build
from servers.code_quality.settings import Settings

pytestmark = pytest.mark.anyio


def _hold_script(path: Path, gate: Path) -> str:
    # A semgrep stand-in that hangs while ``gate`` exists (bounded: the sleep ends by itself).
    path.write_text(
        "#!/bin/sh\n"
        f'case "$1" in --version) echo 1.0;; *) if [ -f {gate} ]; then exec sleep 20; '
        """else echo '{"results": []}'; fi;; esac\n"""
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


async def test_an_analysis_killed_with_its_process_is_recovered_and_resumed_by_the_next_one(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
    sample_repo: Path,
    make_settings: Callable[..., Any],
) -> None:
    gate = tmp_path / "hold"
    gate.write_text("")
    semgrep = _hold_script(tmp_path / "semgrep", gate)
    env = server_env(
        database_url,
        redis_url,
        redis_prefix,
        tmp_path / "data",
        server_prefix="CODE_QUALITY_",
        EMBEDDING_MODEL="hash-384",
        CODE_QUALITY_ALLOWED_ROOTS=json.dumps([str(tmp_path)]),
        CODE_QUALITY_ANALYZERS='["ruff","semgrep"]',
        CODE_QUALITY_SEMGREP_EXECUTABLE=semgrep,
        CODE_QUALITY_HEARTBEAT_S="0.1",
    )
    conversation = rpc_conversation(("analyze_code", {"action": "start", "path": str(sample_repo)}))

    async def cached() -> bool:  # ruff has analysed (and cached) the three files; semgrep hangs
        rows = await fetch_rows(database_url, "SELECT done FROM code_quality.jobs")
        return bool(rows and rows[0]["done"] >= 3)

    await kill_when("code_quality", env, conversation, tmp_path, cached)
    job = (await fetch_rows(database_url, "SELECT id::text, status FROM code_quality.jobs"))[0]
    assert job["status"] == "running", "a killed process cannot have finished its job"
    assert (await fetch_rows(database_url, "SELECT count(*) AS n FROM code_quality.runs"))[0]["n"] == 0
    gate.unlink()

    settings = make_settings(
        Settings,
        allowed_roots=[tmp_path],
        analyzers=["ruff", "semgrep"],
        semgrep_executable=semgrep,
        embedding_model="hash-384",
        job_stale_s=0.5,
        heartbeat_s=0.1,
        wait_s=60.0,
    )

    await wait_until(
        lambda: heartbeats_older_than(database_url, "code_quality.jobs", 0.6),
        timeout_s=10,
        what="the dead job's heartbeat to age past job_stale_s",
    )
    async with Client(build(settings)) as client:
        status = await call_ok(client, "analyze_code", {"action": "status", "job_id": job["id"]})
        assert status["job"]["status"] == "interrupted"
        resumed = await call_ok(client, "analyze_code", {"action": "resume", "job_id": job["id"]})
        assert resumed["job"]["status"] == "done"
        outcomes = {o["analyzer"]: o for o in resumed["run"]["analyzers"]}
        assert (outcomes["ruff"]["files_cached"], outcomes["ruff"]["files_analyzed"]) == (3, 0)
        assert outcomes["semgrep"]["status"] == "ok"
        assert resumed["run"]["partial"] is False
    runs = await fetch_rows(database_url, "SELECT count(*) AS n FROM code_quality.runs")
    dupes = await fetch_rows(
        database_url, "SELECT count(*) - count(DISTINCT (run_id, fingerprint)) AS d FROM code_quality.findings"
    )
    assert runs[0]["n"] == 1
    assert dupes[0]["d"] == 0
