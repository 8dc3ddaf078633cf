import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from common.testing import Cluster

pytestmark = pytest.mark.anyio


async def test_embedded_postgres_has_pgvector(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE SCHEMA extensions; CREATE EXTENSION vector SCHEMA extensions")
        assert await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'") >= "0.8"
    finally:
        await conn.close()


def test_the_embedded_socket_is_reachable_only_through_a_folder_of_the_owner(pg_cluster: Cluster) -> None:
    # Trust authentication is only as safe as the socket's folder: no other user may enter it.
    folder = Path(parse_qs(urlsplit(pg_cluster.admin_url).query)["host"][0])
    sockets = list(folder.glob(".s.PGSQL.*[0-9]"))
    assert sockets, f"no socket in {folder}"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
