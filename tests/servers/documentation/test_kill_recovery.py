"""A server process killed mid-ingest (SIGKILL over stdio, as when a client window is closed hard) leaves a job
that the next process marks interrupted and resumes to completion, with no duplicate chunks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from common.testing import call_ok as call
from common.testing import fetch_rows, heartbeats_older_than, kill_when, rpc_conversation, server_env, wait_until
from servers.documentation.chunking import parse
from servers.documentation.server import build
from servers.documentation.settings import Settings

pytestmark = pytest.mark.anyio

FILES = 600


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
    env = server_env(
        database_url,
        redis_url,
        redis_prefix,
        tmp_path / "data",
        server_prefix="DOCUMENTATION_",
        EMBEDDING_MODEL="hash-384",
        DOCUMENTATION_ALLOWED_ROOTS=json.dumps([str(root)]),
        DOCUMENTATION_HEARTBEAT_S="0.05",
    )
    conversation = rpc_conversation(
        ("manage_project", {"action": "create", "project": "p"}),
        ("ingest_folder", {"action": "start", "project": "p", "version": "1", "path": str(root)}),
    )

    async def under_way() -> bool:
        rows = await fetch_rows(database_url, "SELECT (counts->>'files_done')::int AS n FROM documentation.jobs")
        return bool(rows and (rows[0]["n"] or 0) >= 20)

    await kill_when("documentation", env, conversation, tmp_path, under_way)
    job = (
        await fetch_rows(
            database_url, "SELECT id::text, status, (counts->>'files_done')::int AS n FROM documentation.jobs"
        )
    )[0]
    assert job["status"] == "running", "a killed process cannot have finished its job"
    assert job["n"] < FILES, "the job finished before the kill; make the tree bigger"

    settings = make_settings(
        Settings, embedding_model="hash-384", allowed_roots=[root], job_stale_s=0.3, heartbeat_s=0.05
    )
    await wait_until(
        lambda: heartbeats_older_than(database_url, "documentation.jobs", 0.4),
        timeout_s=10,
        what="the dead job's heartbeat to age past job_stale_s",
    )
    async with Client(build(settings)) as client:
        status = (await call(client, "ingest_folder", {"action": "status", "job_id": job["id"]}))["jobs"][0]
        assert status["status"] == "interrupted"
        resumed = (await call(client, "ingest_folder", {"action": "resume", "job_id": job["id"]}))["jobs"][0]
        assert resumed["status"] == "done"
        assert resumed["counts"]["unchanged"] >= 20
        assert resumed["counts"]["unchanged"] + resumed["counts"]["added"] + resumed["counts"]["updated"] == FILES
    docs = await fetch_rows(database_url, "SELECT count(*) AS n FROM documentation.documents")
    chunks = await fetch_rows(
        database_url, "SELECT count(*) AS n, count(DISTINCT (document_id, ordinal)) AS d FROM documentation.chunks"
    )
    assert docs[0]["n"] == FILES
    assert chunks[0]["n"] == chunks[0]["d"] == expected
