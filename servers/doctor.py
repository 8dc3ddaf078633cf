"""``mcp-suite doctor``: is everything a server needs there, and if not, what to do about it."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from typing import Any

from common.logging import redact
from common.settings import BaseServerSettings
from servers import registry
from servers.cli import table


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


async def _postgres(settings: BaseServerSettings, checks: list[Check]) -> str | None:
    import asyncpg

    from common.runtime import resolve_admin_url

    try:
        url = await asyncio.to_thread(resolve_admin_url, settings)
    except Exception as exc:
        checks.append(
            Check(
                "postgresql",
                False,
                redact(str(exc))[:200],
                "Set DATABASE_URL, or check that MCP_SUITE_DATA_DIR is writable for the embedded PostgreSQL.",
            )
        )
        return None
    try:
        conn = await asyncpg.connect(url, timeout=settings.db_connect_timeout_s)
    except Exception as exc:
        checks.append(
            Check(
                "postgresql",
                False,
                redact(str(exc))[:200] or type(exc).__name__,
                "Start PostgreSQL (`mcp-suite db start`, or `docker compose -f docker/compose.yaml up -d`) "
                "or fix DATABASE_URL.",
            )
        )
        return None
    try:
        version = await conn.fetchval("SHOW server_version")
        kind = "external" if settings.database_url else "embedded"
        checks.append(Check("postgresql", True, f"{kind}, version {version}"))
        available = await conn.fetchval("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
        installed = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        if available is None:
            checks.append(
                Check(
                    "pgvector",
                    False,
                    "extension not available",
                    "Use a PostgreSQL with pgvector (image pgvector/pgvector, or unset DATABASE_URL).",
                )
            )
        else:
            detail = f"installed {installed}" if installed else f"available {available}, installed at first start"
            checks.append(Check("pgvector", True, detail))
    finally:
        await conn.close()
    return url


async def _store_model(url: str, name: str, configured: str) -> str:
    """The store's embedding model (and a switch under way) as a note for its schema's check."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(f"SELECT model, target_model FROM {name}.store_model")
    except asyncpg.UndefinedTableError:
        return ""
    finally:
        await conn.close()
    if row is None:
        return "; no embedding model recorded yet"
    note = f"; embeddings: {row['model']}"
    if row["model"] != configured:
        note += f" (EMBEDDING_MODEL here: {configured})"
    if row["target_model"]:
        note += f", switching to {row['target_model']}: resume with `mcp-suite reembed {name} --model {row['target_model']}`"
    return note


async def _migrations(url: str, checks: list[Check], configured: str) -> None:
    from common import migrate

    for name in registry.names():
        try:
            states = await migrate.status(url, name)
            problems = await migrate.verify(url, name)
            if not any(s.applied for s in states) and not any(s.dirty for s in states):
                detail = f"not created yet ({len(states)} migrations pending); the server creates it at start-up"
                checks.append(Check(f"schema {name}", True, detail))
                continue
        except Exception as exc:
            checks.append(Check(f"schema {name}", False, redact(str(exc))[:200], "Run `mcp-suite migrate`."))
            continue
        applied = [s for s in states if s.applied]
        pending = [s for s in states if not s.applied]
        if problems:
            checks.append(
                Check(f"schema {name}", False, "; ".join(problems)[:200], "Restore the file or run `migrate repair`.")
            )
        elif pending:
            detail = f"{len(applied)} applied, {len(pending)} pending"
            checks.append(Check(f"schema {name}", True, detail + " (applied when the server starts)"))
        else:
            note = await _store_model(url, name, configured)
            checks.append(Check(f"schema {name}", True, f"up to date ({len(applied)} migrations){note}"))


async def _redis(settings: BaseServerSettings, checks: list[Check]) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(settings.redis_url.get_secret_value(), socket_connect_timeout=2, socket_timeout=2)
    try:
        started = time.perf_counter()
        await client.ping()
        info = await client.info("server")
        ms = (time.perf_counter() - started) * 1000
        checks.append(Check("redis", True, f"version {info.get('redis_version')}, {ms:.1f} ms"))
    except Exception as exc:
        checks.append(
            Check(
                "redis",
                False,
                redact(str(exc))[:200] or type(exc).__name__,
                "Start Redis (`redis-server --daemonize yes`) or fix REDIS_URL. Servers still run without it "
                "(in-process cache, PostgreSQL events).",
            )
        )
    finally:
        await client.aclose()


async def _model(settings: BaseServerSettings, checks: list[Check]) -> None:
    from common.embeddings import make_embedder

    try:
        embedder = make_embedder(settings)
        started = time.perf_counter()
        vector = await embedder.embed_one("mcp-suite doctor")
        ms = (time.perf_counter() - started) * 1000
        checks.append(
            Check("embedding model", True, f"{embedder.model_name}, dim {len(vector)}, first call {ms:.0f} ms")
        )
    except Exception as exc:
        checks.append(
            Check(
                "embedding model",
                False,
                str(exc)[:200],
                "Unset EMBEDDING_MODEL to use the offline default, or allow the download of the model.",
            )
        )


async def _qdrant(settings: BaseServerSettings, checks: list[Check]) -> None:
    if not (settings.qdrant_url or settings.qdrant_path):
        checks.append(Check("qdrant", True, "not configured (pgvector is the vector backend)"))
        return
    from qdrant_client import AsyncQdrantClient

    key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    client = (
        AsyncQdrantClient(url=settings.qdrant_url, api_key=key, timeout=3)
        if settings.qdrant_url
        else AsyncQdrantClient(path=str(settings.qdrant_path))
    )
    try:
        collections = await client.get_collections()
        where = settings.qdrant_url or settings.qdrant_path
        checks.append(Check("qdrant", True, f"{where}: {len(collections.collections)} collections"))
    except Exception as exc:
        checks.append(Check("qdrant", False, redact(str(exc))[:200], "Start Qdrant or fix QDRANT_URL/QDRANT_PATH."))
    finally:
        await client.close()


async def collect(settings: BaseServerSettings, *, load_model: bool = True) -> list[Check]:
    """Run every check; never raises."""
    checks: list[Check] = []
    url = await _postgres(settings, checks)
    if url:
        await _migrations(url, checks, settings.embedding_model)
    await _redis(settings, checks)
    if load_model:
        await _model(settings, checks)
    await _qdrant(settings, checks)
    return checks


async def run_doctor(settings: BaseServerSettings, *, load_model: bool = True) -> int:
    """Print the table; exit 1 if anything needs fixing."""
    checks = await collect(settings, load_model=load_model)
    rows: list[tuple[Any, ...]] = [(c.name, "ok" if c.ok else "FAIL", c.detail, c.fix) for c in checks]
    sys.stdout.write(table(rows, ["check", "status", "detail", "fix"]) + "\n")
    return 0 if all(c.ok for c in checks) else 1
