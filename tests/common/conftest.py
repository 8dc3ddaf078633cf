"""Fixtures shared by the tests of common/."""

from collections.abc import AsyncIterator

import pytest

from common.redis_conn import RedisConnection


@pytest.fixture
async def conn(redis_url: str) -> AsyncIterator[RedisConnection]:
    """A RedisConnection to the test Redis, closed afterwards."""
    c = await RedisConnection.connect(redis_url, name="test")
    try:
        yield c
    finally:
        await c.close()
