import pytest

from common import migrate as m
from servers.registry import names

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("server", names())
async def test_a_freshly_migrated_schema_matches_its_committed_snapshot(database_url: str, server: str) -> None:
    path = m.snapshot_path(server)
    assert path.exists(), f"{path} is missing: run `mcp-suite migrate snapshot` and commit it."
    await m.migrate(database_url, server)
    actual = await m.dump_schema(database_url, server)
    assert actual == path.read_text(), (
        f"Schema {server} after all migrations differs from {path}. If the migrations changed on purpose, "
        "run `mcp-suite migrate snapshot` and commit the result."
    )
