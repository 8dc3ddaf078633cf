"""Domain errors. Each says what was wrong and what to do; the runtime turns them into ``ToolError``."""

from __future__ import annotations

#: The most characters of a caller's value an error message repeats.
MAX_SHOWN_CHARS = 60


def shown(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """A caller's value for an error message: quoted, cut to ``limit`` characters, non-printables as '?'.

    Error texts go back to the model, so a huge or binary input must not be repeated whole.
    """
    raw = value if isinstance(value, str) else str(value)
    head = "".join(c if c.isprintable() else "?" for c in raw[:limit])
    more = f"… ({len(raw)} characters)" if len(raw) > limit else ""
    return f"'{head}'{more}"


class SuiteError(Exception):
    """Base for errors the client may see verbatim: their message must help the model fix the call."""


class InvalidInput(SuiteError):
    """The arguments are wrong; the message says which and how to fix them."""


class NotFound(SuiteError):
    """The thing named does not exist."""


class Conflict(SuiteError):
    """The write conflicts with the current state (duplicate, cycle, stale version)."""


class DatabaseUnavailable(SuiteError):
    """PostgreSQL cannot be reached; the call failed fast and may be retried later."""


class QueryTimeout(SuiteError):
    """PostgreSQL did not answer within the time limit; the statement was abandoned, not retried."""


class DimensionMismatch(SuiteError):
    """A vector's model or dimension differs from the collection's."""


class MigrationError(Exception):
    """A migration cannot be applied; the message names the file. Stops start-up."""
