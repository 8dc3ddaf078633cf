"""The documentation service without MCP: jobs on the shared kit, safe file access, cursors, migration 0002."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import asyncpg
import pytest

from common import migrate
from common.errors import Conflict, InvalidInput, NotFound
from common.paging import encode_cursor
from servers.documentation.service import DocumentationService

pytestmark = pytest.mark.anyio


async def _project(svc: DocumentationService, name: str = "p") -> None:
    await svc.create_project(name, None, "")


async def test_a_fifo_in_the_folder_is_skipped_and_the_job_finishes(svc: DocumentationService, docs_root: Path) -> None:
    (docs_root / "ok.md").write_text("# Fine\n\nA normal page.\n")
    os.mkfifo(docs_root / "pipe.md")
    await _project(svc)
    with anyio.fail_after(10):  # reading the FIFO would block forever waiting for a writer
        job = await svc.start_ingest("p", "1", str(docs_root), None, None)
    done = job.jobs[0]
    assert done.status == "done"
    assert {"path": "pipe.md", "reason": "fifo"} in done.errors
    assert (done.counts["added"], done.counts["skipped"]) == (1, 1)


async def test_a_file_swapped_for_a_link_to_an_outside_file_after_the_scan_is_not_read(
    svc: DocumentationService, docs_root: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("zebracorn launch codes\n")
    (docs_root / "a.md").write_text("# A\n\nHarmless page about apples.\n")
    (docs_root / "b.md").write_text("# B\n\nHarmless page about bananas.\n")
    await _project(svc)
    swapped: list[str] = []

    async def progress(done: float, total: float | None, message: str) -> None:
        # The first report comes right after the scan, before any file is read.
        if not swapped:
            (docs_root / "b.md").unlink()
            (docs_root / "b.md").symlink_to(secret)
            swapped.append(message)

    job = (await svc.start_ingest("p", "1", str(docs_root), None, None, progress)).jobs[0]
    assert swapped == ["scanned"]
    assert job.status == "done"
    assert job.counts["added"] == 1
    assert [e["path"] for e in job.errors] == ["b.md"]
    assert "link" in job.errors[0]["reason"]
    hits = await svc.search("zebracorn launch codes", "p", None, 10, None)
    assert all("zebracorn" not in h.snippet for h in hits.hits)
    assert all(h.path != "b.md" for h in hits.hits)


async def test_a_pathological_include_glob_over_a_long_name_returns_quickly(
    svc: DocumentationService, docs_root: Path
) -> None:
    (docs_root / ("a" * 250 + ".md")).write_text("# Long\n\nA page with a long name.\n")
    await _project(svc)
    with anyio.fail_after(5):
        job = (await svc.start_ingest("p", "1", str(docs_root), ["*a*a*a*a*a*a*a*a*a*a*b"], None)).jobs[0]
    assert job.status == "done"
    assert job.counts["files_total"] == 0


async def test_bad_globs_and_paths_are_refused_before_a_job_is_recorded(
    svc: DocumentationService, docs_root: Path
) -> None:
    await _project(svc)
    with pytest.raises(InvalidInput, match="at most 500"):
        await svc.start_ingest("p", "1", str(docs_root), ["*" * 600], None)
    with pytest.raises(InvalidInput, match="must be absolute"):
        await svc.start_ingest("p", "1", "docs", None, None)
    with pytest.raises(NotFound, match="does not exist"):
        await svc.start_ingest("p", "1", str(docs_root / "missing"), None, None)
    assert (await svc.list_jobs(None, 10, None)).total == 0


async def test_jobs_list_by_project_with_cursors_bound_to_the_query(svc: DocumentationService, docs_root: Path) -> None:
    (docs_root / "x.md").write_text("# X\n\nText.\n")
    for name in ("p", "q"):
        await _project(svc, name)
    for version in ("1", "2", "3"):
        await svc.start_ingest("p", version, str(docs_root), None, None)
    await svc.start_ingest("q", "1", str(docs_root), None, None)
    first = await svc.list_jobs("p", 2, None)
    assert (first.total, len(first.jobs), first.truncated) == (3, 2, True)
    assert first.next_cursor is not None
    second = await svc.list_jobs("p", 2, first.next_cursor)
    assert [j.version for j in second.jobs] == ["1"]
    assert second.next_cursor is None
    assert {j.project for j in first.jobs + second.jobs} == {"p"}
    with pytest.raises(InvalidInput, match="cursor"):
        await svc.list_jobs("q", 2, first.next_cursor)
    with pytest.raises(InvalidInput, match="cursor"):
        await svc.list_jobs("p", 2, "o2")
    with pytest.raises(InvalidInput, match="cursor"):
        await svc.list_projects(10, encode_cursor("forged", offset=1))


async def test_one_live_job_per_folder_and_only_ended_jobs_resume(svc: DocumentationService, docs_root: Path) -> None:
    (docs_root / "x.md").write_text("# X\n\nText.\n")
    await _project(svc)
    job = (await svc.start_ingest("p", "1", str(docs_root), None, None)).jobs[0]
    with pytest.raises(Conflict, match="only interrupted"):
        await svc.resume_job(job.id)
    with pytest.raises(Conflict, match="nothing to cancel"):
        await svc.cancel_job(job.id)
    first = await svc.jobs.get(job.id)
    key = f"{first.params['version_id']}:{first.params['root']}"
    live = await svc.jobs.start("ingest_folder", key, {})
    with pytest.raises(Conflict, match=live.id):
        await svc.start_ingest("p", "1", str(docs_root), None, None)
    with pytest.raises(InvalidInput, match="job id"):
        await svc.job_status("not-a-uuid")


async def test_text_documents_are_searched_read_and_deleted(svc: DocumentationService) -> None:
    await svc.create_project("m", "1", "manual")
    body = "# Manual\n\n## Retry\n\nRetries use exponential backoff with jitter.\n"
    saved = await svc.ingest_text("m", "1", "Manual", body, None)
    assert saved.citation == "m@1:manual.md"
    hits = await svc.search("exponential backoff", "m", "1", 5, None)
    assert hits.hits[0].citation == "m@1:manual.md#retry"
    section = await svc.read(saved.document_id, None, None, None, "retry", 0, None, True)
    assert section.text.startswith("## Retry")
    assert section.toc is not None
    described = (await svc.describe_project("m")).projects[0]
    assert (described.description, described.versions[0].documents) == ("manual", 1)
    await svc.delete("m", None)
    with pytest.raises(NotFound, match="No project 'm'"):
        await svc.describe_project("m")


async def test_migration_0002_carries_old_jobs_over_and_back(database_url: str) -> None:
    await migrate.migrate(database_url, "documentation", target=1)
    conn = await asyncpg.connect(database_url)
    try:
        vid = await conn.fetchval(
            "WITH p AS (INSERT INTO documentation.projects (name) VALUES ('p') RETURNING id) "
            "INSERT INTO documentation.versions (project_id, version) SELECT id, '1' FROM p RETURNING id"
        )
        errors = json.dumps([{"path": "bad.py", "reason": "Python syntax error line 1: x"}])
        counts = json.dumps({"files_done": 3, "files_total": 5, "added": 2})
        await conn.execute(
            "INSERT INTO documentation.jobs (version_id, root, include, exclude, status, counts, errors) "
            "VALUES ($1, '/docs', '{**/*.md}', '{}', 'queued', $2::jsonb, $3::jsonb)",
            vid,
            counts,
            errors,
        )
        await migrate.migrate(database_url, "documentation")
        row = await conn.fetchrow("SELECT * FROM documentation.jobs")
        assert row is not None
        assert (row["kind"], row["key"], row["status"], row["version_id"]) == (
            "ingest_folder",
            f"{vid}:/docs",
            "interrupted",
            vid,
        )
        params = json.loads(row["params"])
        assert params == {
            "version_id": vid,
            "project": "p",
            "version": "1",
            "root": "/docs",
            "include": ["**/*.md"],
            "exclude": [],
        }
        assert json.loads(row["errors"]) == [{"item": "bad.py", "reason": "Python syntax error line 1: x"}]
        assert (row["done"], row["total"], row["errors_total"]) == (3, 5, 1)
        await migrate.rollback(database_url, "documentation", to_version=1)
        back = await conn.fetchrow("SELECT * FROM documentation.jobs")
        assert back is not None
        assert (back["root"], list(back["include"]), back["status"]) == ("/docs", ["**/*.md"], "interrupted")
        assert json.loads(back["errors"]) == json.loads(errors)
        await conn.execute("DELETE FROM documentation.versions")
        await migrate.migrate(database_url, "documentation")
        assert await conn.fetchval("SELECT count(*) FROM documentation.jobs") == 0
    finally:
        await conn.close()


async def test_a_huge_or_binary_project_name_is_not_echoed_whole(svc: DocumentationService) -> None:
    name = "\x1b[2Jevil" + "n" * 5000
    with pytest.raises(NotFound) as err:
        await svc.describe_project(name)
    text = str(err.value)
    assert len(text) < 300
    assert "\x1b" not in text
    assert "(5008 characters)" in text
    await _project(svc, "p")
    with pytest.raises(NotFound) as err:
        await svc.read(None, "p", "v" * 5000, "a.md", None, 0, None, False)
    assert len(str(err.value)) < 300
