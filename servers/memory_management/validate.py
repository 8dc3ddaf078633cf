"""Checks and normalisation of what callers send: workspaces, content, tags, kinds, metadata.

Each function returns the cleaned value or raises :class:`~common.errors.InvalidInput` saying what
to change; the service calls them before it touches the database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from common.errors import InvalidInput

WORKSPACE_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9_.:/@-]{0,99}|\*)$"
MAX_TAGS = 20
MAX_METADATA_BYTES = 8_192


def workspace(given: str | None, default: str, *, allow_all: bool = False) -> str | None:
    """``given`` or ``default``; None for ``'*'`` (all workspaces), where ``allow_all`` permits it."""
    if given is not None and not re.match(WORKSPACE_PATTERN, given):
        raise InvalidInput(
            f"workspace {given[:80]!r} is not valid: use up to 100 letters, digits and _.:/@- (starting with a "
            "letter or digit)."
        )
    if given == "*":
        if not allow_all:
            raise InvalidInput("workspace '*' (all workspaces) is only valid for recall and build_context.")
        return None
    return given or default


def one_workspace(given: str | None, default: str) -> str:
    """``given`` or ``default``, where ``'*'`` is refused."""
    ws = workspace(given, default)
    assert ws is not None  # '*' raised above
    return ws


def content(text: str, max_chars: int) -> str:
    """The text stripped; refused when empty or longer than ``max_chars``."""
    if not text.strip():
        raise InvalidInput("content is empty; give the fact, decision or observation to remember.")
    if len(text) > max_chars:
        raise InvalidInput(
            f"content has {len(text)} characters; the limit is {max_chars}. "
            "Split it into several memories (store_memories) or summarise it."
        )
    return text.strip()


def tags(given: Sequence[str] | None) -> list[str]:
    """The tags stripped and de-duplicated, in order; each 1-50 characters, at most MAX_TAGS."""
    out = []
    for tag in given or []:
        tag = tag.strip()
        if not 1 <= len(tag) <= 50:
            raise InvalidInput(f"tag {tag[:80]!r} must be 1 to 50 characters.")
        out.append(tag)
    if len(out) > MAX_TAGS:
        raise InvalidInput(f"{len(out)} tags given; at most {MAX_TAGS}.")
    return list(dict.fromkeys(out))


def kind(given: str) -> str:
    """The kind stripped; 1-50 characters."""
    given = given.strip()
    if not 1 <= len(given) <= 50:
        raise InvalidInput("kind must be 1 to 50 characters, e.g. note, decision, preference, fact.")
    return given


def metadata(given: dict[str, Any] | None) -> dict[str, Any]:
    """The metadata as plain JSON values; refused over MAX_METADATA_BYTES."""
    given = given or {}
    size = len(json.dumps(given, default=str))
    if size > MAX_METADATA_BYTES:
        raise InvalidInput(f"metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}.")
    return json.loads(json.dumps(given, default=str))  # type: ignore[no-any-return]
