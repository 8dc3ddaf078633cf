"""The workers kit: periodic loops that survive failures and stop cleanly."""

from __future__ import annotations

import asyncio

import pytest

from common.testing import wait_until
from common.workers import Periodic

pytestmark = pytest.mark.anyio


async def test_a_loop_runs_again_after_a_failing_pass_and_stops_on_exit() -> None:
    calls: list[int] = []

    async def work() -> None:
        calls.append(len(calls))
        if len(calls) == 2:
            raise RuntimeError("database went away")

    async with Periodic("test", work, interval_s=0.01, max_backoff_s=0.05) as loop:
        await wait_until(lambda: len(calls) >= 4, timeout_s=5, what="four passes")
    assert loop.failures == 1
    assert loop.runs >= 3
    stopped_at = len(calls)
    assert loop.failing == 0
    # Stopped: no further passes (the task is gone).
    assert loop._task is None
    assert len(calls) == stopped_at


async def test_wake_runs_a_pass_before_the_interval() -> None:
    calls: list[int] = []

    async def work() -> None:
        calls.append(1)

    async with Periodic("test", work, interval_s=3600) as loop:
        assert calls == []
        loop.wake()
        await wait_until(lambda: len(calls) == 1, timeout_s=5, what="the woken pass")


async def test_backoff_grows_while_passes_fail_and_is_capped() -> None:
    async def fail() -> None:
        raise RuntimeError("down")

    loop = Periodic("test", fail, interval_s=1, max_backoff_s=10)
    assert loop._pause() == 1
    for _ in range(3):
        assert not await loop.run_once()
    assert loop._pause() == 8
    for _ in range(5):
        await loop.run_once()
    assert loop._pause() == 10


def test_a_non_positive_interval_is_refused() -> None:
    async def work() -> None:
        return None

    with pytest.raises(ValueError, match="positive"):
        Periodic("x", work, interval_s=0)


async def test_stop_right_after_wake_never_hangs() -> None:
    async def work() -> None:
        return None

    for _ in range(200):
        loop = Periodic("test", work, interval_s=3600)
        loop.start()
        await asyncio.sleep(0)
        loop.wake()
        await asyncio.wait_for(loop.stop(), timeout=5)
