"""Every SQL statement on schema ``notes``. Plain async functions on a connection or the Database."""

from __future__ import annotations

from typing import Any

import asyncpg

from common.db import Database
from common.rows import decoded

UPSERT = """
INSERT INTO notes.notes (title, body, tags)
VALUES ($1, $2, $3)
ON CONFLICT (title) DO UPDATE SET body = EXCLUDED.body, tags = EXCLUDED.tags, updated_at = now()
RETURNING id::text, title, body, tags, created_at, updated_at, (xmax = 0) AS created
"""
GET = "SELECT id::text, title, body, tags, created_at, updated_at FROM notes.notes WHERE title = $1"
GET_MANY = "SELECT id::text, title, body, tags, created_at, updated_at FROM notes.notes WHERE id = ANY($1::uuid[])"
DELETE = "DELETE FROM notes.notes WHERE title = $1 RETURNING id::text"


async def upsert(conn: asyncpg.Connection, title: str, body: str, tags: list[str]) -> dict[str, Any]:
    row = await conn.fetchrow(UPSERT, title, body, tags)
    assert row is not None
    return dict(row)


async def get(db: Database, title: str) -> dict[str, Any] | None:
    return decoded(await db.fetchrow(GET, title))


async def get_many(db: Database, ids: list[str]) -> dict[str, dict[str, Any]]:
    return {r["id"]: dict(r) for r in await db.fetch(GET_MANY, ids)}


async def delete(conn: asyncpg.Connection, title: str) -> str | None:
    value: str | None = await conn.fetchval(DELETE, title)
    return value


LIST_PAGE = """
SELECT id::text, title, body, tags, created_at, updated_at, count(*) OVER () AS total
FROM notes.notes WHERE ($1::text IS NULL OR $1 = ANY(tags)) ORDER BY title LIMIT $2 OFFSET $3
"""


COUNT = "SELECT count(*) FROM notes.notes WHERE ($1::text IS NULL OR $1 = ANY(tags))"


async def list_page(db: Database, tag: str | None, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """A page of notes by title and the number matching (counted apart only past the last page)."""
    rows = [dict(r) for r in await db.fetch(LIST_PAGE, tag, limit, offset)]
    if rows:
        return rows, int(rows[0]["total"])
    return rows, int(await db.fetchval(COUNT, tag)) if offset else 0
