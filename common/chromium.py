"""Headless Chromium pieces every browser-using server needs (the launch flags and a quiet close)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import Any

#: Flags for headless Chromium on a server: no GPU, /tmp instead of a small /dev/shm, no scrollbars.
BASE_ARGS = ("--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars")


def launch_args(extra: Iterable[str] = ()) -> list[str]:
    """Command-line flags for Chromium launched by this process: :data:`BASE_ARGS`, ``extra``, and the sandbox flag."""
    args = [*BASE_ARGS, *extra]
    # Chromium refuses to start its sandbox as root (typical in containers) and exits at once.
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")
    return args


async def close_quietly(browser: Any, playwright: Any) -> None:
    """Close a Playwright browser and its driver, ignoring one that is gone already (best effort)."""
    if browser is not None:
        with contextlib.suppress(Exception):
            await browser.close()
    if playwright is not None:
        with contextlib.suppress(Exception):
            await playwright.stop()
