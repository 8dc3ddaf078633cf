"""Settings of the analytics server: the shared ones plus ``ANALYTICS_*``."""

from pathlib import Path

from pydantic import Field, SecretStr

from common.settings import JobServerSettings, job_wait


class Settings(JobServerSettings, env_prefix="ANALYTICS_"):
    """Limits exist so one query or one file cannot flood the machine or the client's context."""

    allowed_roots: list[Path] = Field(
        default_factory=list,
        description="Folders register_dataset may read files from (JSON list). Empty: no file access.",
    )
    connections: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Named PostgreSQL URLs a dataset may be fetched from (JSON object {"name": "postgresql://..."}).',
    )
    folder: Path | None = Field(
        default=None,
        description="Where charts and fetched PostgreSQL extracts are written. Unset: MCP_SUITE_DATA_DIR/analytics.",
    )
    max_rows: int = Field(default=1_000, ge=10, le=100_000, description="Most rows one query_data page returns.")
    query_timeout_s: float = Field(default=30.0, gt=0, le=3_600, description="Seconds one DuckDB query may run.")
    memory_limit: str = Field(default="2GB", pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$", description="DuckDB memory cap.")
    threads: int = Field(default=2, ge=1, le=64, description="DuckDB threads per query.")
    model_rows: int = Field(
        default=200_000, ge=100, le=10_000_000, description="Most rows loaded for a prediction or pattern search."
    )
    fetch_max_rows: int = Field(
        default=1_000_000, ge=1, le=100_000_000, description="Most rows a PostgreSQL query may fetch into a dataset."
    )
    fetch_timeout_s: float = Field(
        default=60.0, gt=0, le=3_600, description="statement_timeout of a PostgreSQL dataset query, in seconds."
    )

    wait_s: float = job_wait(
        30.0, 300, "How long register_dataset, profile_dataset and predict wait for their job before returning it."
    )
    history_keep: int = Field(default=10_000, ge=10, le=10_000_000, description="Query history entries kept.")

    def data_folder(self) -> Path:
        """The folder charts and extracts live in."""
        return self.folder if self.folder is not None else self.data_dir / "analytics"
