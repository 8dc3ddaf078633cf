"""``mcp-suite serve NAME``: settings, logging, then the server over stdio."""

from __future__ import annotations

import asyncio
import sys

from common.embedded_pg import install_sigterm_exit
from common.errors import SuiteError
from common.logging import configure_logging, get_logger
from common.settings import SettingsError
from common.stdio import run_stdio
from servers.registry import get

log = get_logger(__name__)


def serve(name: str) -> int:
    """Run server ``name`` over stdio until the client closes stdin; the process's exit status."""
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
    except KeyboardInterrupt:
        return 130
    except SuiteError as exc:
        log.error("server_failed", error=str(exc)[:500])
        return 1
    return 0
