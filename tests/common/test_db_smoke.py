import asyncpg
import pytest

pytestmark = pytest.mark.anyio


async def test_embedded_postgres_has_pgvector(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE SCHEMA extensions; CREATE EXTENSION vector SCHEMA extensions")
        assert await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'") >= "0.8"
    finally:
        await conn.close()
