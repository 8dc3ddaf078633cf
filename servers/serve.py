"""``mcp-suite serve NAME``: settings, logging, then the server over stdio."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import sys
import threading
from typing import NoReturn

from common.embedded_pg import install_sigterm_exit
from common.errors import SuiteError
from common.logging import configure_logging, get_logger
from common.settings import SettingsError
from common.stdio import run_stdio
from servers.registry import get

log = get_logger(__name__)


def serve(name: str) -> int:
    """Run server ``name`` over stdio until the client closes stdin, then end the process (see :func:`exit_now`).

    Returns only for a usage error (unknown server, missing extra, bad settings): its exit status.
    """
    try:
        spec = get(name)
    except KeyError as exc:
        sys.stderr.write(f"{exc.args[0]}\n")
        return 2
    missing = spec.missing_extra()
    if missing is not None:
        sys.stderr.write(f"{missing}\n")
        return 2
    try:
        settings = spec.load_settings()
    except SettingsError as exc:
        sys.stderr.write(f"{exc.code}\n")
        return 2
    configure_logging(settings.log_level, settings.log_format, server=name)
    install_sigterm_exit()
    server = spec.build(settings)
    # The SDK installs its own stdlib handler when the server is built; ours goes back on top.
    configure_logging(settings.log_level, settings.log_format, server=name)
    try:
        asyncio.run(run_stdio(server))
    except BaseException as exc:
        code = _exit_code(exc)
        if code is None:  # a bug: Python prints the traceback
            raise
        exit_now(code)
    exit_now(0)


def _exit_code(exc: BaseException) -> int | None:
    """The exit status for how the server stopped: SIGTERM, Ctrl-C, a start-up failure (also inside task groups)."""
    if isinstance(exc, SystemExit):  # SIGTERM (install_sigterm_exit)
        return exc.code if isinstance(exc.code, int) else 1
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, SuiteError):
        log.error("server_failed", error=str(exc)[:500])
        return 1
    if isinstance(exc, BaseExceptionGroup):
        codes = [_exit_code(e) for e in exc.exceptions]
        return next((c for c in codes if c is not None), None)
    return None


def exit_now(code: int) -> NoReturn:
    """End the process once the server has closed: exit handlers, flushed streams, no interpreter teardown.

    The lifespan has closed every connection and the exit handlers leave the embedded PostgreSQL;
    what remains is freeing a thousand modules one by one, which takes seconds when a client
    closes many servers at once on a busy machine, and clients kill servers that are slow to go.
    """
    if threading.current_thread() is threading.main_thread():
        # A client closing its servers may send SIGTERM now: it must not cut the exit handlers short.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
