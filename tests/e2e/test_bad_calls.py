"""Each registered server over stdio, fed seeded bad calls to every tool (a small share of the probe
``tests/probes/bad_calls.py``): every call answered, no crash, no internal error, short error texts,
no row written by a failed call."""

from __future__ import annotations

from pathlib import Path

import pytest

from servers import registry
from tests.probes.bad_calls import broken, probe_server

pytestmark = pytest.mark.anyio

CALLS_PER_SERVER = 40
#: Wider than the probe's 10 s: the first semantic call loads the embedding model on a shared machine.
TIMEOUT = 30.0


@pytest.mark.parametrize("name", registry.names())
async def test_bad_calls_get_short_errors_without_crashes_hangs_or_writes(
    name: str, database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    done = await probe_server(name, CALLS_PER_SERVER, 7, database_url, redis_url, redis_prefix, tmp_path, TIMEOUT)
    assert len(done) == CALLS_PER_SERVER
    faults = [(o.tool, broken(o), args) for o, args in done if broken(o)]
    assert not faults, faults[:5]
    assert sum(o.is_error for o, _ in done) >= CALLS_PER_SERVER // 2, "the generated calls should mostly be refused"
