from pathlib import Path

import asyncpg
import pytest

from common import migrate as m
from common.db import role_url
from servers.registry import names

pytestmark = pytest.mark.anyio

PROBE = "probe"


@pytest.fixture
def probe_migrations(tmp_path: Path) -> Path:
    """A throwaway second server, so the pairwise checks run even while the registry holds one server."""
    folder = tmp_path / "migrations" / PROBE
    folder.mkdir(parents=True)
    (folder / "0001_things.up.sql").write_text("CREATE TABLE things (id integer PRIMARY KEY, label text);\n")
    (folder / "0001_things.down.sql").write_text("DROP TABLE things;\n")
    return folder.parent


async def in_rolled_back_tx(conn: asyncpg.Connection, sql: str) -> None:
    """Run ``sql`` and undo it, so proving a write is allowed leaves no trace."""
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(sql)
    finally:
        await tx.rollback()


async def test_each_server_role_can_use_only_its_own_schema(database_url: str, probe_migrations: Path) -> None:
    servers = [*names(), PROBE]
    await m.bootstrap(database_url, servers)
    for server in names():
        await m.migrate(database_url, server)
    await m.migrate(database_url, PROBE, migrations_dir=probe_migrations)

    conns = {s: await asyncpg.connect(role_url(database_url, s, None)) for s in servers}
    try:
        for a, conn in conns.items():
            assert await conn.fetchval("SELECT current_user") == a
            # Its own schema: read, write and create all work (undone so the ledger stays true).
            await conn.fetch(f"SELECT * FROM {a}.schema_migrations")
            await in_rolled_back_tx(
                conn,
                f"INSERT INTO {a}.schema_migrations (version, description, sha256, execution_ms, success) "
                "VALUES (9999, 'x', 'x', 0, true); "
                f"CREATE TABLE {a}.isolation_probe (id integer)",
            )
            for b in servers:
                if b == a:
                    continue
                # Denied at the schema, not just the table: a cannot even see what b contains.
                assert not await conn.fetchval("SELECT has_schema_privilege($1, 'USAGE')", b)
                with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError, match=f"schema {b}"):
                    await conn.fetch(f"SELECT * FROM {b}.schema_migrations")
                with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                    await conn.execute(
                        f"INSERT INTO {b}.schema_migrations (version, description, sha256, execution_ms, success) "
                        "VALUES (9999, 'x', 'x', 0, true)"
                    )
                with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                    await conn.execute(f"CREATE TABLE {b}.isolation_probe (id integer)")
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await conn.execute("CREATE TABLE public.isolation_probe (id integer)")
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await conn.execute("CREATE TABLE extensions.isolation_probe (id integer)")
            # The shared extension stays usable by everyone.
            assert await conn.fetchval("SELECT extensions.vector_dims('[1,2,3]'::extensions.vector)") == 3
        # The probe's own table is reachable only by the probe.
        await conns[PROBE].execute("INSERT INTO probe.things VALUES (1, 'mine')")
        for a in names():
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await conns[a].fetch("SELECT * FROM probe.things")
    finally:
        for conn in conns.values():
            await conn.close()


async def test_every_object_a_migration_creates_is_owned_by_the_server_role(database_url: str) -> None:
    for server in names():
        await m.migrate(database_url, server)
        conn = await asyncpg.connect(database_url)
        try:
            owners = await conn.fetch(
                "SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
                server,
            )
        finally:
            await conn.close()
        assert [r["owner"] for r in owners] == [server]
