"""structlog to stderr, because stdout of a stdio server is the protocol channel."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

_SECRET_KEYS = ("password", "secret", "token", "api_key", "apikey", "authorization")
#: Longest user name and password a URL's credentials are looked for in (real ones are far shorter).
_MAX_CRED = 256
#: The credentials after ``://``, matched only within a bounded window, so no input costs more than linear time.
_CREDENTIALS = re.compile(rf"([^:/@\s]{{0,{_MAX_CRED}}}):([^@/\s]{{1,{_MAX_CRED}}})@")
#: Longest string value a log line carries; longer ones are cut (a 1 MB argument must not become a 1 MB line).
MAX_LOGGED_CHARS = 2_000


def redact(text: str) -> str:
    """Replace the password in any ``scheme://user:password@`` with ``***`` (linear in the text's length)."""
    if "://" not in text:
        return text
    out: list[str] = []
    pos = 0
    while (at := text.find("://", pos)) >= 0:
        start = at + 3
        match = _CREDENTIALS.match(text, start, min(len(text), start + 2 * _MAX_CRED + 2))
        if match:
            out.append(text[pos:start] + match.group(1) + ":***@")
            pos = match.end()
        else:
            out.append(text[pos:start])
            pos = start
    out.append(text[pos:])
    return "".join(out)


def shorten(text: str, limit: int = MAX_LOGGED_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def _redact_value(key: str, value: Any) -> Any:
    if any(s in key.lower() for s in _SECRET_KEYS) and value not in (None, ""):
        return "***"
    if isinstance(value, str):
        return redact(shorten(value))
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    return value


def _redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        event_dict[key] = _redact_value(key, value)
    return event_dict


def configure_logging(
    level: str = "INFO", fmt: Literal["json", "console", "auto"] = "json", server: str | None = None
) -> None:
    """Route structlog and the standard library to stderr, as JSON unless asked for console output.

    Called once per process before the server is built, so nothing the SDK or a library logs can
    reach stdout.
    """
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_processor,
    ]
    renderer: Any = structlog.dev.ConsoleRenderer(colors=False) if use_console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            # First: a call below the level costs a level check, not the whole chain (28 us per call).
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDK configures its own rich handler at MCPServer construction; ours must win.
    for noisy in ("httpx", "httpcore", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    if server:
        structlog.contextvars.bind_contextvars(server=server)


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; use keyword arguments for fields."""
    return structlog.get_logger(name)
