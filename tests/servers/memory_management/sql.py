"""Direct SQL for the memory tests: what the server wrote, and changes no tool can make (expiry, old models)."""

from __future__ import annotations

from typing import Any

import asyncpg

from common.runtime import resolve_admin_url
from servers.memory_management.settings import Settings


async def count_rows(settings: Settings, where: str = "true") -> int:
    """Rows of memory_management.memories matching ``where`` (SQL written by the test, not by a caller)."""
    conn = await asyncpg.connect(resolve_admin_url(settings))
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM memory_management.memories WHERE {where}"))
    finally:
        await conn.close()


async def execute(settings: Settings, sql: str, *args: Any) -> None:
    """Run one statement as the admin role."""
    conn = await asyncpg.connect(resolve_admin_url(settings))
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()
