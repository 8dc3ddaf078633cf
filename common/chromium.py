"""Headless Chromium pieces every browser-using server needs (the launch flags and a quiet close)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import Any

#: Features Playwright's launch disables; Chromium keeps only the last ``--disable-features`` flag, so ours
#: repeats them (tests/servers/ui_testing/test_browser.py checks this still covers what Playwright passes).
PLAYWRIGHT_DISABLED_FEATURES = (
    "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose",
    "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable",
    "LensOverlay",
    "MediaRouter",
    "PaintHolding",
    "ThirdPartyStoragePartitioning",
    "AvoidCorsURLLoaderRestartOnRedirect",
    "TcpPortRandomizationWin",
    "OptimizationHints",
    "NetworkTimeServiceQuerying",
    "AimEnabled",
    "PreconnectToSearch",
    "msForceBrowserSignIn",
    "msEdgeUpdateLaunchServicesPreferredVersion",
)
#: Chromium preloads the address bar's popups, WebUI pages, in a renderer of their own for every window, so for
#: every browser context: a process start and more CPU than the page's own renderer, for a bar nobody sees.
#: It also sends the shape of every form a page holds to Google's autofill server, which a server must not.
DISABLED_FEATURES = ("WebUIOmniboxPopup", "WebUIOmniboxAimPopup", "AutofillServerCommunication")
#: Flags for headless Chromium on a server: no GPU, /tmp instead of a small /dev/shm, no scrollbars; the soft
#: process limit stops Chromium starting a spare renderer next to each new context's page (contexts still
#: never share one).
BASE_ARGS = (
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--renderer-process-limit=1",
    "--disable-features=" + ",".join((*PLAYWRIGHT_DISABLED_FEATURES, *DISABLED_FEATURES)),
)


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
