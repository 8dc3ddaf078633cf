"""Settings shared by every server.

Shared variables are unprefixed (``DATABASE_URL``); a server's own are ``<NAME>_*``. Each
server subclasses :class:`BaseServerSettings` with ``env_prefix`` as a class keyword
(``class Settings(BaseServerSettings, env_prefix="NOTES_")``); the shared fields carry
a ``validation_alias`` so the prefix never applies to them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBEDDING_MODEL = "local/all-MiniLM-L6-v2-int8"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _shared(name: str) -> Any:
    """Alias for a shared (unprefixed) variable, still settable by field name in code."""
    return AliasChoices(name, name.lower())


class BaseServerSettings(BaseSettings):
    """Everything a server process needs to reach PostgreSQL, Redis, Qdrant and the embedder."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=_shared("DATABASE_URL"),
        description="Admin URL of PostgreSQL; unset starts the embedded PostgreSQL.",
    )
    redis_url: SecretStr = Field(default=SecretStr("redis://127.0.0.1:6379/0"), validation_alias=_shared("REDIS_URL"))
    redis_prefix: str = Field(default="mcp", validation_alias=_shared("REDIS_PREFIX"), pattern=r"^[a-z0-9_-]+$")
    qdrant_url: str | None = Field(default=None, validation_alias=_shared("QDRANT_URL"))
    qdrant_path: Path | None = Field(default=None, validation_alias=_shared("QDRANT_PATH"))
    qdrant_api_key: SecretStr | None = Field(default=None, validation_alias=_shared("QDRANT_API_KEY"))
    vector_backend: Literal["pgvector", "qdrant"] = Field(
        default="pgvector", validation_alias=_shared("VECTOR_BACKEND")
    )
    embedding_model: str = Field(default=DEFAULT_EMBEDDING_MODEL, validation_alias=_shared("EMBEDDING_MODEL"))
    #: When a store's recorded model differs from EMBEDDING_MODEL: embed with the store's model, or refuse.
    embedding_model_policy: Literal["follow", "refuse"] = Field(
        default="follow", validation_alias=_shared("EMBEDDING_MODEL_POLICY")
    )
    embedding_cache_dir: Path | None = Field(default=None, validation_alias=_shared("EMBEDDING_CACHE_DIR"))
    embedding_threads: int | None = Field(default=None, ge=1, le=64, validation_alias=_shared("EMBEDDING_THREADS"))
    embedding_batch_size: int = Field(default=64, ge=1, le=1024, validation_alias=_shared("EMBEDDING_BATCH_SIZE"))
    #: Most rows a keyword search ranks (common.keywords); bounds its cost on a large store.
    keyword_scan_cap: int = Field(default=500, ge=100, le=1_000_000, validation_alias=_shared("KEYWORD_SCAN_CAP"))
    log_level: LogLevel = Field(default="INFO", validation_alias=_shared("LOG_LEVEL"))
    log_format: Literal["json", "console", "auto"] = Field(default="json", validation_alias=_shared("LOG_FORMAT"))
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("mcp-suite")),
        validation_alias=_shared("MCP_SUITE_DATA_DIR"),
    )
    db_pool_min: int = Field(default=1, ge=0, le=100, validation_alias=_shared("DB_POOL_MIN"))
    db_pool_max: int = Field(default=5, ge=1, le=200, validation_alias=_shared("DB_POOL_MAX"))
    db_connect_timeout_s: float = Field(default=5.0, gt=0, le=120, validation_alias=_shared("DB_CONNECT_TIMEOUT_S"))
    db_statement_timeout_ms: int = Field(
        default=30_000, ge=0, le=3_600_000, validation_alias=_shared("DB_STATEMENT_TIMEOUT_MS")
    )
    db_idle_in_transaction_timeout_ms: int = Field(
        default=60_000, ge=0, le=3_600_000, validation_alias=_shared("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS")
    )
    db_retry_attempts: int = Field(default=3, ge=1, le=20, validation_alias=_shared("DB_RETRY_ATTEMPTS"))
    db_breaker_threshold: int = Field(default=3, ge=1, le=100, validation_alias=_shared("DB_BREAKER_THRESHOLD"))
    db_breaker_cooldown_s: float = Field(default=2.0, gt=0, le=300, validation_alias=_shared("DB_BREAKER_COOLDOWN_S"))
    db_role_password: SecretStr | None = Field(
        default=None,
        validation_alias=_shared("DB_ROLE_PASSWORD"),
        description="Password given to every per-server role (none needed for the embedded PostgreSQL).",
    )
    events_signing_key: SecretStr | None = Field(
        default=None,
        validation_alias=_shared("EVENTS_SIGNING_KEY"),
        description=(
            "Key that signs events on Redis; by default one made in MCP_SUITE_DATA_DIR/secrets.json. Set the "
            "same value for every server when they do not share a data directory."
        ),
    )
    cache_ttl_s: int = Field(default=300, ge=1, le=86_400 * 30, validation_alias=_shared("CACHE_TTL_S"))

    # Server-specific (these take the server's env prefix, e.g. MEMORY_MANAGEMENT_TOOLS).
    migrate_on_start: bool = True
    tools: list[str] | None = Field(default=None, description="Allow-list of tool names to expose.")

    @field_validator("tools", mode="before")
    @classmethod
    def _split_tools(cls, value: Any) -> Any:
        """``a,b`` or a JSON list; ``all`` means every tool (a server's default may be a core subset)."""
        if isinstance(value, str) and not value.strip().startswith("["):
            value = [t.strip() for t in value.split(",") if t.strip()]
        if isinstance(value, list) and [str(v).lower() for v in value] == ["all"]:
            return None
        return value

    @model_validator(mode="after")
    def _check_pool(self) -> BaseServerSettings:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("DB_POOL_MIN must not exceed DB_POOL_MAX")
        if self.vector_backend == "qdrant" and not (self.qdrant_url or self.qdrant_path):
            raise ValueError("VECTOR_BACKEND=qdrant needs QDRANT_URL or QDRANT_PATH")
        return self


class JobServerSettings(BaseServerSettings):
    """The settings of a server that runs jobs of the shared kit (``common.jobs``)."""

    job_stale_s: float = Field(default=60.0, gt=0, le=86_400, description="A running job silent this long is dead.")
    heartbeat_s: float = Field(default=2.0, gt=0, le=3_600, description="How often a running job reports.")

    @model_validator(mode="after")
    def _check_jobs(self) -> JobServerSettings:
        # A live job must get at least two heartbeats in before it can be taken for dead.
        if self.job_stale_s <= self.heartbeat_s * 2:
            prefix = self.model_config.get("env_prefix", "")
            raise ValueError(f"{prefix}JOB_STALE_S must be more than twice {prefix}HEARTBEAT_S")
        return self


def job_wait(default: float, most: float, description: str) -> Any:
    """A job server's setting of how long a tool waits for the job it started before answering with the job.

    0 answers at once; ``most`` bounds how long a call may hold the client.
    """
    return Field(default=default, ge=0, le=most, description=description)


def fusion_depth(default: int) -> Any:
    """The setting of a server that fuses ranked lists (``common.retrieval.rrf``): how deep each list goes."""
    return Field(default=default, ge=10, le=1_000, description="Depth of each ranked list fused.")


class SettingsError(SystemExit):
    """Start-up stops here: the message names the variable and says what to fix."""


S = TypeVar("S", bound=BaseServerSettings)


def env_name(cls: type[BaseServerSettings], field: str) -> str:
    """The environment variable that sets ``field`` on ``cls``."""
    info = cls.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        return first if isinstance(first, str) else field.upper()
    prefix = str(cls.model_config.get("env_prefix") or "")
    return f"{prefix}{field}".upper()


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Read settings from the environment and ``.env``; a bad value raises :class:`SettingsError`."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            field = loc[0] if loc else ""
            name = env_name(cls, field) if field in cls.model_fields else (field.upper() or "settings")
            lines.append(f"  {name}: {err['msg']}")
        raise SettingsError("Invalid configuration:\n" + "\n".join(lines)) from None
