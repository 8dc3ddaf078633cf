"""Settings of the notes server: the shared ones plus ``NOTES_*``."""

from pydantic import Field

from common.settings import BaseServerSettings


class Settings(BaseServerSettings, env_prefix="NOTES_"):
    """``NOTES_MAX_BODY_CHARS`` bounds what one note may hold."""

    max_body_chars: int = Field(default=20_000, ge=100, le=1_000_000)
