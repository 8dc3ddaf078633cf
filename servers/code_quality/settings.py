"""Settings of the code_quality server: the shared ones plus ``CODE_QUALITY_*``."""

import hashlib
from pathlib import Path

from pydantic import Field

from common.settings import JobServerSettings, job_wait
from servers.code_quality.analyzers import DEFAULT_SET


class Settings(JobServerSettings, env_prefix="CODE_QUALITY_"):
    """Limits exist so one repository or one call cannot flood the database or the client's context."""

    allowed_roots: list[Path] = Field(
        default_factory=list,
        description="Folders the server may analyse and read advisory exports from (JSON list). Empty: none.",
    )
    analyzers: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SET),
        description="Analyzers a run uses unless the call names others.",
    )
    analyzer_timeout_s: float = Field(default=300.0, gt=0, le=7_200, description="Limit per analyzer invocation.")
    ruff_isolated: bool = Field(
        default=False,
        description="True: ruff ignores the analysed folder's own ruff configuration and uses the suite's rules.",
    )
    semgrep_executable: str | None = Field(default=None, description="Path of semgrep; unset: semgrep is missing.")
    max_file_bytes: int = Field(default=1_000_000, ge=1_000, le=100_000_000, description="Larger files are skipped.")
    max_files: int = Field(default=50_000, ge=1, le=1_000_000, description="Files past this count are skipped.")
    workers: int = Field(default=0, ge=0, le=64, description="Analyzer processes at once; 0: the CPU count.")
    wait_s: float = job_wait(20.0, 300, "How long analyze_code waits for a run before returning the job.")
    advisory_source: str | None = Field(
        default=None,
        description="OSV export (folder or zip under an allowed root) or OSV query URL for check_dependencies.",
    )
    charts_dir: Path | None = Field(default=None, description="Where trend charts go; default DATA_DIR/code_quality.")
    cache_max_age_days: int = Field(
        default=30, ge=1, le=3_650, description="Cached analyzer results older than this are pruned (hourly)."
    )

    def chart_folder(self) -> Path:
        return self.charts_dir or self.data_dir / "code_quality" / "charts"

    def stamps_file(self, root: Path) -> Path:
        """Where the listing of the folder ``root`` keeps what it learnt of each file between runs."""
        name = hashlib.sha256(str(root).encode()).hexdigest()[:32]
        return self.data_dir / "code_quality" / "stamps" / f"{name}.json"
