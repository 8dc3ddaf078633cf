import re

import pytest

from common import migrate as m
from common.schema_dump import parse_shared, render_shared
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


def test_every_shared_table_is_listed_by_a_schema_and_round_trips() -> None:
    shared = m.shared_tables()
    assert {"jobs", "schema_migrations", "store_model"} <= set(shared)
    assert parse_shared(render_shared(shared)) == shared
    listed = set()
    for server in names():
        text = m.snapshot_path(server).read_text()
        listed |= set(re.findall(r"^-- shared tables \(.*\): (.*)$", text, re.M)[0].split(", "))
        listed |= set(re.findall(r"^-- table \w+\.(\w+): as in", text, re.M))
    assert listed == set(shared)


def test_shared_table_names_come_from_the_kits_and_the_ledger() -> None:
    assert m.shared_table_names() == {"jobs", "schema_migrations", "store_model"}
