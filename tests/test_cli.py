"""The ``mcp-suite`` command line, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import psutil
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from common import embedded_pg

pytestmark = pytest.mark.anyio


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "QDRANT_", "NOTES_"))}
    env["LOG_LEVEL"] = "WARNING"
    env.update(extra)
    return env


def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "servers", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def test_config_claude_prints_desktop_json_and_claude_code_lines() -> None:
    out = _cli("config", "claude", "--format", "json", "--include-examples", env=_env())
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    entry = doc["mcpServers"]["mcp-suite-notes"]
    assert entry["args"][-2:] == ["serve", "notes"]
    assert Path(entry["command"]).is_absolute()
    lines = _cli("config", "claude", "--format", "cli", "--include-examples", env=_env()).stdout.splitlines()
    assert any(line.startswith("claude mcp add mcp-suite-notes ") and line.endswith("serve notes") for line in lines)


def test_config_claude_with_env_carries_the_connection_settings_in_force() -> None:
    env = _env(DATABASE_URL="postgresql://suite:pw@db.internal:5432/suite", REDIS_PREFIX="team")
    out = _cli("config", "claude", "--format", "json", "--include-examples", "--with-env", env=env)
    entry = json.loads(out.stdout)["mcpServers"]["mcp-suite-notes"]
    assert entry["env"] == {"DATABASE_URL": "postgresql://suite:pw@db.internal:5432/suite", "REDIS_PREFIX": "team"}
    lines = _cli("config", "claude", "--format", "cli", "--include-examples", "--with-env", env=env).stdout
    assert "-e REDIS_PREFIX=team" in lines


def test_a_bad_setting_stops_with_exit_2_naming_the_variable() -> None:
    out = _cli("serve", "notes", env=_env(DB_POOL_MAX="many"))
    assert out.returncode == 2
    assert "DB_POOL_MAX" in out.stderr
    assert out.stdout == ""
    assert "Traceback" not in out.stderr


def test_a_server_that_keeps_its_vectors_in_postgres_refuses_vector_backend_qdrant() -> None:
    out = _cli("serve", "memory_management", env=_env(VECTOR_BACKEND="qdrant", QDRANT_URL="http://127.0.0.1:1"))
    assert out.returncode == 2
    assert "VECTOR_BACKEND" in out.stderr
    assert "memory_management keeps its vectors in its own PostgreSQL schema" in out.stderr
    assert "Traceback" not in out.stderr


def test_migrate_status_and_verify_report_every_version(database_url: str, redis_url: str) -> None:
    env = _env(DATABASE_URL=database_url, REDIS_URL=redis_url)
    assert _cli("migrate", env=env).returncode == 0
    status = _cli("migrate", "status", "--server", "notes", env=env)
    assert status.returncode == 0, status.stderr
    assert "create_notes" in status.stdout
    assert "applied" in status.stdout
    verify = _cli("migrate", "verify", "--server", "notes", env=env)
    assert verify.returncode == 0
    assert "notes: ok" in verify.stdout


def test_doctor_reports_every_check_and_a_fix_for_each_failure(database_url: str, redis_url: str) -> None:
    ok = _cli("doctor", env=_env(DATABASE_URL=database_url, REDIS_URL=redis_url))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for check in ("postgresql", "pgvector", "schema notes", "redis", "embedding model", "qdrant"):
        assert check in ok.stdout
    assert "FAIL" not in ok.stdout

    bad = _cli("doctor", "--skip-model", env=_env(DATABASE_URL=database_url, REDIS_URL="redis://127.0.0.1:1/0"))
    assert bad.returncode == 1
    redis_row = next(line for line in bad.stdout.splitlines() if line.startswith("redis"))
    assert "FAIL" in redis_row
    assert "REDIS_URL" in redis_row


def _postmasters(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(pgdata) in cmd:
            found.append(proc)
    return found


@pytest.mark.slow
async def test_servers_without_database_url_share_one_embedded_postgres_that_lives_while_any_runs(
    tmp_path: Path, redis_url: str
) -> None:
    data_dir = tmp_path / "suite-data"
    env = _env(MCP_SUITE_DATA_DIR=str(data_dir), REDIS_URL=redis_url, REDIS_PREFIX="embtest")
    params = StdioServerParameters(command=sys.executable, args=["-m", "servers", "serve", "notes"], env=env)
    pgdata = embedded_pg.pgdata_dir(data_dir)
    try:
        async with AsyncExitStack() as outer:
            first = await outer.enter_async_context(Client(params, read_timeout_seconds=120))
            async with AsyncExitStack() as inner:
                others = [await inner.enter_async_context(Client(params, read_timeout_seconds=120)) for _ in range(2)]
                for i, client in enumerate([first, *others]):
                    result = await client.call_tool("save_note", {"title": f"t{i}", "body": f"body {i}"})
                    assert not result.is_error, result.content
                status = embedded_pg.status(data_dir)
                assert status.running
                assert len(status.handles) == 3
                assert len(_postmasters(pgdata)) == 1
            # Two servers gone: the third still has its database.
            assert embedded_pg.status(data_dir).running
            found = await first.call_tool("get_note", {"title": "t2"})
            assert not found.is_error
        # The last one gone: PostgreSQL stopped with it.
        status = embedded_pg.status(data_dir)
        assert not status.running
        assert status.handles == []
    finally:
        embedded_pg.stop(data_dir)


@pytest.mark.slow
def test_db_commands_start_report_and_stop_the_embedded_postgres(tmp_path: Path) -> None:
    env = _env(MCP_SUITE_DATA_DIR=str(tmp_path / "d"))
    try:
        started = _cli("db", "start", env=env)
        assert started.returncode == 0, started.stderr
        assert "running" in started.stdout
        status = _cli("db", "status", env=env)
        assert "True" in status.stdout
        url = _cli("db", "url", env=env).stdout.strip()
        assert url.startswith("postgresql://")
        # Started with `db start`, it outlives the command that started it.
        assert embedded_pg.status(tmp_path / "d").running
        stopped = _cli("db", "stop", env=env)
        assert stopped.stdout.strip() == "stopped"
        assert not embedded_pg.status(tmp_path / "d").running
        assert _cli("db", "url", env=env).returncode == 1
    finally:
        embedded_pg.stop(tmp_path / "d")
