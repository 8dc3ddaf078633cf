"""A server process killed mid-ingest (SIGKILL over stdio, as when a client window is closed hard) leaves a job
that the next process marks interrupted and resumes to completion, with no duplicate chunks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from mcp import Client

from common.testing import call_ok as call
from servers.documentation.chunking import parse
from servers.documentation.server import build
from servers.documentation.settings import Settings

pytestmark = pytest.mark.anyio

FILES = 600


def _rpc(id_: int, method: str, params: dict[str, Any]) -> bytes:
    return (json.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": params}) + "\n").encode()


async def _rows(url: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


async def test_a_job_killed_mid_ingest_is_recovered_and_completes_without_duplicates(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path, make_settings: Callable[..., Any]
) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    expected = 0
    for i in range(FILES):
        text = f"# Topic {i}\n\n## Details\n\n" + "\n\n".join(f"Paragraph {j} about topic {i}." for j in range(4))
        (root / f"t{i:04}.md").write_text(text)
        expected += len(parse("markdown", text, "x.md", 1200).chunks)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "DOCUMENTATION_"))}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        REDIS_PREFIX=redis_prefix,
        MCP_SUITE_DATA_DIR=str(tmp_path / "data"),
        EMBEDDING_MODEL="hash-384",
        DOCUMENTATION_ALLOWED_ROOTS=json.dumps([str(root)]),
        DOCUMENTATION_HEARTBEAT_S="0.05",
        LOG_LEVEL="WARNING",
    )
    messages = [
        _rpc(
            1,
            "initialize",
            {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
        ),
        (json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n").encode(),
        _rpc(2, "tools/call", {"name": "manage_project", "arguments": {"action": "create", "project": "p"}}),
        _rpc(
            3,
            "tools/call",
            {
                "name": "ingest_folder",
                "arguments": {"action": "start", "project": "p", "version": "1", "path": str(root)},
            },
        ),
    ]
    with (tmp_path / "out.txt").open("wb") as out, (tmp_path / "err.txt").open("wb") as err:
        proc = await anyio.open_process(
            [sys.executable, "-m", "servers", "serve", "documentation"],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
            env=env,
        )
        try:
            assert proc.stdin is not None
            await proc.stdin.send(b"".join(messages))
            progress = 0
            with anyio.fail_after(60):
                while progress < 20:
                    await anyio.sleep(0.02)
                    try:
                        rows = await _rows(
                            database_url, "SELECT (counts->>'files_done')::int AS n FROM documentation.jobs"
                        )
                    except asyncpg.UndefinedTableError:
                        continue  # migrations not applied yet
                    progress = (rows[0]["n"] or 0) if rows else 0
                    assert proc.returncode is None, (tmp_path / "err.txt").read_text()
        finally:
            proc.kill()
            await proc.wait()
            await proc.aclose()
    job = (
        await _rows(database_url, "SELECT id::text, status, (counts->>'files_done')::int AS n FROM documentation.jobs")
    )[0]
    assert job["status"] == "running", "a killed process cannot have finished its job"
    assert job["n"] < FILES, "the job finished before the kill; make the tree bigger"

    settings = make_settings(Settings, embedding_model="hash-384", allowed_roots=[root], job_stale_s=0.3)
    with anyio.fail_after(10):  # the dead process's last heartbeat must age past job_stale_s
        while True:
            age = "SELECT now() - heartbeat_at > interval '0.4 s' AS old FROM documentation.jobs"
            if (await _rows(database_url, age))[0]["old"]:
                break
            await anyio.sleep(0.05)
    async with Client(build(settings)) as client:
        status = (await call(client, "ingest_folder", {"action": "status", "job_id": job["id"]}))["jobs"][0]
        assert status["status"] == "interrupted"
        resumed = (await call(client, "ingest_folder", {"action": "resume", "job_id": job["id"]}))["jobs"][0]
        assert resumed["status"] == "done"
        assert resumed["counts"]["unchanged"] >= 20
        assert resumed["counts"]["unchanged"] + resumed["counts"]["added"] + resumed["counts"]["updated"] == FILES
    docs = await _rows(database_url, "SELECT count(*) AS n FROM documentation.documents")
    chunks = await _rows(
        database_url, "SELECT count(*) AS n, count(DISTINCT (document_id, ordinal)) AS d FROM documentation.chunks"
    )
    assert docs[0]["n"] == FILES
    assert chunks[0]["n"] == chunks[0]["d"] == expected
