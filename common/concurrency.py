"""Running a few coroutines side by side, all or none.

``asyncio.TaskGroup`` would do, but on Python 3.11 a task group that saw a child fail leaves the
calling task with a pending cancel request (``Task.cancelling()`` stays raised; fixed in 3.12), and
the SDK's anyio cancel scopes then cancel the rest of the tool call. :func:`gather_all` starts each
awaitable as a task, waits for all, and on the first failure cancels the others and raises that
failure itself, leaving the caller's task untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


async def gather_all(*coros: Coroutine[Any, Any, Any]) -> list[Any]:
    """The results of ``coros`` run concurrently, in order; the first exception cancels the rest and is raised."""
    if not coros:
        return []
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = next((t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None), None)
        if failed is not None:
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(BaseException):
                    await task
            exc = failed.exception()
            assert exc is not None
            raise exc
        return [t.result() for t in tasks]
    except BaseException:
        for task in tasks:
            if not task.done():
                task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        raise
