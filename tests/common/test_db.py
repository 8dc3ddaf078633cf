"""The pool: session settings, transactions, metrics, and surviving a PostgreSQL restart."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import asyncpg
import pytest

from common import embedded_pg
from common.db import Database, DbConfig, role_url
from common.errors import DatabaseUnavailable
from common.testing import Cluster, start_cluster

pytestmark = pytest.mark.anyio


async def _prepare(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE SCHEMA IF NOT EXISTS extensions; CREATE EXTENSION IF NOT EXISTS vector SCHEMA extensions;"
            "CREATE SCHEMA IF NOT EXISTS app; CREATE TABLE IF NOT EXISTS app.items (id int PRIMARY KEY, v text)"
        )
    finally:
        await conn.close()


async def test_connections_carry_search_path_application_name_and_timeouts(database_url: str) -> None:
    await _prepare(database_url)
    db = await Database.open(DbConfig(url=database_url, schema="app", statement_timeout_ms=1234))
    try:
        row = await db.fetchrow(
            "SELECT current_setting('search_path') AS sp, current_setting('application_name') AS app, "
            "current_setting('statement_timeout') AS st, current_setting('idle_in_transaction_session_timeout') AS it"
        )
        assert row is not None
        assert row["sp"] == "app, extensions"
        assert row["app"] == "mcp-app"
        assert row["st"] == "1234ms"
        assert row["it"] == "1min"
        # Search statements are planned for their actual parameters; filtered HNSW scans iterate.
        assert await db.fetchval("SELECT current_setting('plan_cache_mode')") == "force_custom_plan"
        await db.fetchval("SELECT '[1]'::vector")  # loads pgvector, which claims its settings
        assert await db.fetchval("SELECT current_setting('hnsw.iterative_scan')") == "relaxed_order"
        # The pgvector codec is registered: a vector round-trips as numbers.
        vec = await db.fetchval("SELECT '[1,2,3]'::vector")
        assert list(vec.to_list()) == [1.0, 2.0, 3.0]
    finally:
        await db.close()


async def test_transaction_rolls_back_everything_on_error(database_url: str) -> None:
    await _prepare(database_url)
    db = await Database.open(DbConfig(url=database_url, schema="app"))
    try:

        async def half_then_fail(conn: asyncpg.Connection) -> None:
            await conn.execute("INSERT INTO items VALUES (1, 'a')")
            await conn.execute("INSERT INTO items VALUES (1, 'duplicate')")

        with pytest.raises(asyncpg.UniqueViolationError):
            await db.run_in_transaction(half_then_fail)
        assert await db.fetchval("SELECT count(*) FROM items") == 0

        async def fail_inside() -> None:
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO items VALUES (2, 'b')")
                raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            await fail_inside()
        assert await db.fetchval("SELECT count(*) FROM items") == 0
    finally:
        await db.close()


async def test_pool_metrics_count_acquires_and_report_sizes(database_url: str) -> None:
    await _prepare(database_url)
    db = await Database.open(DbConfig(url=database_url, schema="app", pool_min=1, pool_max=3))
    try:
        for _ in range(5):
            await db.fetchval("SELECT 1")
        m = db.metrics()
        assert m.acquires == 5
        assert m.max_size == 3
        assert m.size >= 1
        assert m.in_use == 0
        assert m.breaker == "closed"
        health = await db.health()
        assert health["ok"] is True
        assert health["schema"] == "app"
    finally:
        await db.close()


def test_role_url_swaps_credentials_only() -> None:
    assert (
        role_url("postgresql://admin:s3cret@db:5432/suite?sslmode=require", "notes", "pw")
        == "postgresql://notes:pw@db:5432/suite?sslmode=require"
    )
    assert role_url("postgresql://postgres:@/postgres?host=/tmp/x", "notes", None) == (
        "postgresql://notes@/postgres?host=/tmp/x"
    )


@pytest.fixture
def private_cluster(tmp_path: Path):
    server, cluster = start_cluster(tmp_path / "restart")
    try:
        yield cluster
    finally:
        if not embedded_pg.status(cluster.data_dir).running:
            embedded_pg.restart_stopped(cluster.data_dir)
        server.cleanup()


@pytest.mark.slow
async def test_pool_fails_fast_while_postgres_is_down_and_recovers_without_restart(
    private_cluster: Cluster,
) -> None:
    await _prepare(private_cluster.admin_url)
    db = await Database.open(
        DbConfig(url=private_cluster.admin_url, schema="app", breaker_threshold=2, breaker_cooldown_s=0.5)
    )
    try:
        await db.execute("INSERT INTO items VALUES (1, 'before')")
        assert embedded_pg.stop(private_cluster.data_dir) is True

        with pytest.raises(DatabaseUnavailable, match="PostgreSQL"):
            await db.fetchval("SELECT count(*) FROM items")
        assert db.breaker.state == "open"
        # While the breaker is open the call does not even try the network.
        with pytest.raises(DatabaseUnavailable, match="Retry in about"):
            await db.fetchval("SELECT 1")

        embedded_pg.restart_stopped(private_cluster.data_dir)
        deadline = time.monotonic() + 30
        value = None
        while time.monotonic() < deadline:
            try:
                value = await db.fetchval("SELECT v FROM items WHERE id = 1")
                break
            except DatabaseUnavailable:
                await anyio.sleep(0.2)
        assert value == "before"
        assert str(db.breaker.state) == "closed"
        assert db.metrics().connection_failures >= 1
    finally:
        await db.close()


async def test_a_query_that_outlives_the_client_bound_fails_with_a_clear_error_and_is_not_retried(
    database_url: str,
) -> None:
    await _prepare(database_url)
    # statement_timeout 1 s puts the client-side bound at 6 s; the server-side timeout is lifted
    # for this one statement so only the client bound can end it.
    db = await Database.open(DbConfig(url=database_url, schema="app", statement_timeout_ms=1000))
    try:

        async def slow(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute("SET LOCAL statement_timeout = 0")
                await conn.execute("INSERT INTO items VALUES (7, 'x')")
                await conn.execute("SELECT pg_sleep(30)")

        from common.errors import QueryTimeout

        with pytest.raises(QueryTimeout, match="did not answer in time"):
            await db.run(slow)
        assert await db.fetchval("SELECT count(*) FROM items WHERE id = 7") == 0
    finally:
        await db.close()


async def test_released_connections_keep_their_session_but_never_an_open_transaction(database_url: str) -> None:
    await _prepare(database_url)
    db = await Database.open(DbConfig(url=database_url, schema="app", pool_min=1, pool_max=1))
    try:

        async def fail_inside_a_transaction() -> None:
            async with db.acquire() as conn:
                await conn.execute("BEGIN")
                await conn.execute("INSERT INTO items VALUES (40, 'a'), (40, 'b')")

        with pytest.raises(asyncpg.UniqueViolationError):
            await fail_inside_a_transaction()
        # The pool's only connection came back usable: asyncpg rolled the failed transaction back.
        assert await db.fetchval("SELECT count(*) FROM items WHERE id = 40") == 0
        async with db.acquire() as conn:
            assert not conn.is_in_transaction()
    finally:
        await db.close()


async def test_embedded_cluster_starts_with_the_suites_shared_buffers(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        pages = int(await conn.fetchval("SELECT setting FROM pg_settings WHERE name = 'shared_buffers'"))
    finally:
        await conn.close()
    assert pages * 8 // 1024 == embedded_pg.shared_buffers_mb()


def test_shared_buffers_are_an_eighth_of_memory_within_bounds() -> None:
    gib = 2**30
    assert embedded_pg.shared_buffers_mb(512 * 2**20) == 128
    assert embedded_pg.shared_buffers_mb(4 * gib) == 512
    assert embedded_pg.shared_buffers_mb(64 * gib) == 1024


def test_tuning_is_written_once_and_leaves_alter_system_in_charge(tmp_path: Path) -> None:
    assert embedded_pg.tune(tmp_path) is False  # not a cluster: nothing written
    conf = tmp_path / "postgresql.conf"
    conf.write_text("max_connections = 100\n")
    assert embedded_pg.tune(tmp_path) is True
    assert embedded_pg.tune(tmp_path) is False  # already in place
    text = conf.read_text()
    assert text.startswith("max_connections = 100\n")
    assert text.count(embedded_pg.TUNING_FILE) == 1
    assert f"shared_buffers = {embedded_pg.shared_buffers_mb()}MB" in (tmp_path / embedded_pg.TUNING_FILE).read_text()
    assert not list(tmp_path.glob(".*.tmp"))


async def test_a_background_pool_has_its_own_connection_and_name(database_url: str) -> None:
    await _prepare(database_url)
    db = await Database.open(DbConfig(url=database_url, schema="app"))
    try:
        background = await db.open_background("indexer")
        try:
            assert await background.fetchval("SELECT current_setting('application_name')") == "mcp-app-indexer"
            assert await background.fetchval("SELECT pg_backend_pid()") != await db.fetchval("SELECT pg_backend_pid()")
        finally:
            await background.close()
    finally:
        await db.close()
