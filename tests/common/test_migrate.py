import json
import shutil
import sys
import uuid
from collections import Counter
from pathlib import Path

import anyio
import asyncpg
import pytest

from common import migrate as m
from common.errors import MigrationError
from servers.registry import names

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import asyncio, json, sys
from pathlib import Path
from common.logging import configure_logging
from common.migrate import migrate_all
configure_logging("WARNING")
results = asyncio.run(migrate_all(sys.argv[1], sys.argv[3].split(","), migrations_dir=Path(sys.argv[2])))
print(json.dumps({name: r.applied for name, r in results.items()}))
"""


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    """A private copy of the repository's migrations that a test may edit."""
    return Path(shutil.copytree(m.DEFAULT_MIGRATIONS_DIR, tmp_path / "migrations"))


async def ledger(url: str, server: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(f'SELECT version, sha256, success FROM "{server}".schema_migrations ORDER BY version')
    finally:
        await conn.close()


@pytest.mark.slow
async def test_eight_processes_migrating_an_empty_database_at_once_apply_every_version_exactly_once(
    database_url: str, migrations_copy: Path
) -> None:
    # A never-seen server name makes the processes race on creating a cluster-wide role too.
    racer = f"race_{uuid.uuid4().hex[:8]}"
    shutil.copytree(migrations_copy / "notes", migrations_copy / racer)
    servers = [*names(), racer]
    outputs: list[tuple[int, str, str]] = []

    async def run_one() -> None:
        proc = await anyio.run_process(
            [sys.executable, "-c", CHILD, database_url, str(migrations_copy), ",".join(servers)],
            cwd=REPO,
            check=False,
        )
        outputs.append((proc.returncode, proc.stdout.decode(), proc.stderr.decode()))

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(run_one)

    assert [code for code, _, _ in outputs] == [0] * 8, [(code, err[-1500:]) for code, _, err in outputs if code]
    for server in servers:
        on_disk = m.discover(server, migrations_copy)
        applied = Counter(v for _, out, _ in outputs for v in json.loads(out)[server])
        assert applied == Counter(x.version for x in on_disk), server
        rows = await ledger(database_url, server)
        assert [(r["version"], r["sha256"], r["success"]) for r in rows] == [
            (x.version, x.sha256, True) for x in on_disk
        ]


async def test_a_changed_applied_file_is_refused_with_a_message_naming_the_file(
    database_url: str, migrations_copy: Path
) -> None:
    await m.migrate(database_url, "notes", migrations_dir=migrations_copy)
    edited = migrations_copy / "notes" / "0001_create_notes.up.sql"
    edited.write_text(edited.read_text() + "\n-- an innocent-looking edit\n")

    with pytest.raises(MigrationError, match=r"0001_create_notes\.up\.sql: changed after it was applied"):
        await m.migrate(database_url, "notes", migrations_dir=migrations_copy)
    problems = await m.verify(database_url, "notes", migrations_copy)
    assert any("0001_create_notes.up.sql" in p and "changed" in p for p in problems)


async def test_ensure_migrated_refuses_a_changed_applied_file(database_url: str, migrations_copy: Path) -> None:
    await m.migrate(database_url, "notes", migrations_dir=migrations_copy)
    edited = migrations_copy / "notes" / "0002_notes_search.up.sql"
    edited.write_text(edited.read_text().replace("'B'", "'C'"))

    with pytest.raises(MigrationError, match=r"0002_notes_search\.up\.sql"):
        await m.ensure_migrated(database_url, "notes", migrations_dir=migrations_copy)


async def test_a_failed_migration_is_rolled_back_marked_dirty_and_refused_until_repaired(
    database_url: str, migrations_copy: Path
) -> None:
    broken = migrations_copy / "notes" / "0003_add_pinned.up.sql"
    broken.write_text("ALTER TABLE notes ADD COLUMN pinned boolean;\nSELECT no_such_column FROM notes;\n")
    (migrations_copy / "notes" / "0003_add_pinned.down.sql").write_text("ALTER TABLE notes DROP COLUMN pinned;\n")

    with pytest.raises(MigrationError, match=r"0003_add_pinned\.up\.sql failed.*no_such_column.*line 2"):
        await m.migrate(database_url, "notes", migrations_dir=migrations_copy)
    rows = await ledger(database_url, "notes")
    assert [(r["version"], r["success"]) for r in rows] == [(1, True), (2, True), (3, False)]
    conn = await asyncpg.connect(database_url)
    try:
        # Rolled back: the first statement of the failed file left nothing behind.
        assert not await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'notes' AND column_name = 'pinned'"
        )
    finally:
        await conn.close()

    with pytest.raises(MigrationError, match=r"0003_add_pinned\.up\.sql: version 3 failed earlier.*dirty"):
        await m.migrate(database_url, "notes", migrations_dir=migrations_copy)
    [dirty] = [s for s in await m.status(database_url, "notes", migrations_copy) if s.version == 3]
    assert dirty.dirty
    assert not dirty.applied

    broken.write_text("ALTER TABLE notes ADD COLUMN pinned boolean NOT NULL DEFAULT false;\n")
    await m.repair(database_url, "notes", 3)
    result = await m.migrate(database_url, "notes", migrations_dir=migrations_copy)
    assert result.applied == [3]
    assert result.version == 3
    with pytest.raises(MigrationError, match="not marked dirty"):
        await m.repair(database_url, "notes", 3)


@pytest.mark.parametrize("server", names())
async def test_up_rollback_up_leaves_the_schema_identical_to_its_snapshot(database_url: str, server: str) -> None:
    first = await m.migrate(database_url, server)
    assert first.applied == [x.version for x in m.discover(server)]
    undone = await m.rollback(database_url, server, to_version=0)
    assert undone == sorted(first.applied, reverse=True)
    assert [s for s in await m.status(database_url, server) if s.applied] == []
    again = await m.migrate(database_url, server)
    assert again.applied == first.applied

    snapshot = m.snapshot_path(server).read_text()
    assert await m.dump_schema(database_url, server) == snapshot
    assert (await m.migrate(database_url, server)).applied == []
    assert await m.verify(database_url, server) == []


async def test_rollback_to_a_version_undoes_only_the_newer_ones(database_url: str) -> None:
    await m.migrate(database_url, "notes")
    assert await m.rollback(database_url, "notes", to_version=1) == [2]
    assert [r["version"] for r in await ledger(database_url, "notes")] == [1]
    result = await m.migrate(database_url, "notes", target=1)
    assert result.applied == []
    assert (await m.migrate(database_url, "notes")).applied == [2]


async def test_ensure_migrated_costs_one_query_when_already_up_to_date(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await m.ensure_migrated(database_url, "notes") == "migrated"

    queries: list[str] = []
    real_connect = m._connect

    async def counting_connect(url: str) -> asyncpg.Connection:
        conn = await real_connect(url)
        conn.add_query_logger(lambda q: queries.append(q.query))
        return conn

    monkeypatch.setattr(m, "_connect", counting_connect)
    assert await m.ensure_migrated(database_url, "notes") == "up_to_date"
    assert len(queries) == 1, queries


async def test_status_and_verify_report_a_pending_migration(database_url: str, migrations_copy: Path) -> None:
    await m.migrate(database_url, "notes", migrations_dir=migrations_copy, target=1)
    pending = [s for s in await m.status(database_url, "notes", migrations_copy) if not s.applied]
    assert [(s.version, s.checksum_ok, s.dirty) for s in pending] == [(2, None, False)]
    problems = await m.verify(database_url, "notes", migrations_copy)
    assert len(problems) == 1
    assert "0002_notes_search.up.sql: not applied yet" in problems[0]


async def test_discovery_rejects_bad_names_and_unpaired_files(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "0001_ok.up.sql").write_text("SELECT 1;")
    (folder / "0001_ok.down.sql").write_text("SELECT 1;")
    assert [x.version for x in m.discover("notes", tmp_path)] == [1]

    (folder / "0002_no_down.up.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"0002_no_down\.up\.sql: has no matching \.down\.sql"):
        m.discover("notes", tmp_path)
    (folder / "0002_no_down.up.sql").unlink()

    (folder / "2_Bad Name.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"2_Bad Name\.sql: not a migration file name"):
        m.discover("notes", tmp_path)


async def test_server_names_that_are_not_safe_identifiers_are_refused(database_url: str) -> None:
    for bad in ('x"; DROP SCHEMA public; --', "Notes", "public", "pg_x", "9lives"):
        with pytest.raises(MigrationError, match="Invalid server name"):
            await m.migrate(database_url, bad)


async def test_an_include_line_runs_and_checksums_the_kit_and_a_changed_kit_is_a_changed_migration(
    tmp_path: Path,
) -> None:
    (tmp_path / "kits").mkdir()
    (tmp_path / "kits" / "t.sql").write_text("-- a shared table\nCREATE TABLE t (id int);\n")
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "0001_ok.up.sql").write_text("SELECT 1;\n-- @include t\nSELECT 2;\n")
    (folder / "0001_ok.down.sql").write_text("SELECT 1;")
    up = folder / "0001_ok.up.sql"
    assert m.read_up(up, tmp_path) == b"SELECT 1;\nCREATE TABLE t (id int);\nSELECT 2;\n"
    first = m.discover("notes", tmp_path)[0].sha256
    (tmp_path / "kits" / "t.sql").write_text("CREATE TABLE t (id bigint);\n")
    assert m.discover("notes", tmp_path)[0].sha256 != first

    up.write_text("-- @include missing\n")
    with pytest.raises(MigrationError, match=r"no such kit; `-- @include missing`"):
        m.discover("notes", tmp_path)


def test_the_servers_that_include_the_jobs_kit_have_the_checksums_their_files_had_before_it() -> None:
    # Existing databases recorded these when the DDL was written out in each file; they must still match.
    expected = {
        "code_quality": "64479824cc673627",
        "ui_testing": "90bdab14bf6b712b",
        "web_access": "4dfcc6b8ce09b08f",
    }
    for server, sha in expected.items():
        first = m.discover(server)[0]
        assert b"-- @include jobs" in first.up_path.read_bytes()
        assert first.sha256.startswith(sha), server
