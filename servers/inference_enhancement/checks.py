"""Checks of a caller's names, types, observations and batch sizes: each raises InvalidInput saying what to fix."""

from __future__ import annotations

from collections.abc import Sequence

from common.errors import InvalidInput
from servers.inference_enhancement.settings import Settings

MAX_NAME = 500
MAX_TYPE = 200


#: Longest part of a caller's value an error message repeats.
SHOWN = 80


def clip(value: str) -> str:
    """A value as an error message may repeat it: its first SHOWN characters."""
    return value if len(value) <= SHOWN else value[:SHOWN] + "..."


def name(value: str, what: str = "name") -> str:
    """An entity name: not blank, at most MAX_NAME characters."""
    if not value.strip():
        raise InvalidInput(f"{what} is empty; give the entity's name. Nothing was written.")
    if len(value) > MAX_NAME:
        raise InvalidInput(f"{what} {value[:40]!r}... has {len(value)} characters; the limit is {MAX_NAME}.")
    return value


def type_(value: str, what: str) -> str:
    """An entity or relation type: at most MAX_TYPE characters."""
    if len(value) > MAX_TYPE:
        raise InvalidInput(f"{what} has {len(value)} characters; the limit is {MAX_TYPE}. Nothing was written.")
    return value


def relation_type(value: str) -> str:
    """A relation type: not blank, at most MAX_TYPE characters."""
    if not value.strip():
        raise InvalidInput("relationType is empty; say how the entities relate. Nothing was written.")
    return type_(value, "relationType")


def batch(settings: Settings, items: Sequence[object], what: str) -> None:
    """At most ``settings.max_batch`` items in one call."""
    if len(items) > settings.max_batch:
        raise InvalidInput(f"{len(items)} {what} given; at most {settings.max_batch} per call. Split the call.")


def observation(settings: Settings, value: str, entity: str) -> str:
    """An observation: not blank, at most ``settings.max_observation_chars`` characters."""
    if not value.strip():
        raise InvalidInput(f"an observation of {entity!r} is empty; nothing was written.")
    if len(value) > settings.max_observation_chars:
        raise InvalidInput(
            f"an observation of {entity!r} has {len(value)} characters; the limit is "
            f"{settings.max_observation_chars}. Split it. Nothing was written."
        )
    return value
