"""Settings of the notes server: the shared ones plus ``NOTES_*``."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import BaseServerSettings


class Settings(BaseServerSettings):
    """``NOTES_MAX_BODY_CHARS`` bounds what one note may hold."""

    model_config = SettingsConfigDict(**{**BaseServerSettings.model_config, "env_prefix": "NOTES_"})

    max_body_chars: int = Field(default=20_000, ge=100, le=1_000_000)
