"""gather_all: concurrent, all or none, and the caller's task left as it was."""

from __future__ import annotations

import asyncio

import pytest

from common.concurrency import gather_all

pytestmark = pytest.mark.anyio


async def _value(v: int, delay: float) -> int:
    await asyncio.sleep(delay)
    return v


async def _fail(delay: float) -> int:
    await asyncio.sleep(delay)
    raise ValueError("broken")


async def test_results_come_back_in_order() -> None:
    assert await gather_all(_value(1, 0.02), _value(2, 0.0)) == [1, 2]


async def test_the_first_failure_cancels_the_others_and_is_raised_as_itself() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow() -> int:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 0

    with pytest.raises(ValueError, match="broken"):
        await gather_all(slow(), _fail(0.01))
    assert started.is_set()
    assert cancelled.is_set()
    # The caller's task carries no leftover cancel request (asyncio.TaskGroup on 3.11 leaves one).
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    assert await gather_all(_value(3, 0.0)) == [3]
