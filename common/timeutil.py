"""Time values from tool arguments: a timestamp without a zone means UTC (what a client most likely meant)."""

from __future__ import annotations

from datetime import UTC, datetime


def aware_utc(value: datetime | None) -> datetime | None:
    """``value`` with UTC attached when it has no zone; aware values and ``None`` pass through."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
