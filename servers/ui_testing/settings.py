"""Settings of the ui_testing server: the shared ones plus ``UI_TESTING_*``."""

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator

from common.errors import InvalidInput
from common.netguard import NetPolicy
from common.settings import JobServerSettings, job_wait

#: A fraction from 0 to 1.
Share = Annotated[float, Field(ge=0, le=1)]


class Settings(JobServerSettings, env_prefix="UI_TESTING_"):
    """Where Chromium and the images are, how long a page may take, and when a comparison fails."""

    allowed_roots: list[Path] = Field(
        default_factory=list,
        description="Folders whose local HTML files may be captured, audited or opened by checks (JSON list).",
    )
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="Loopback, private or link-local destinations the browser may open anyway: host names or CIDR "
        'networks (JSON list, e.g. ["127.0.0.1/32"]). Empty: only public addresses.',
    )
    images_dir: Path | None = Field(
        default=None, description="Where screenshots, thumbnails and diff images go; unset: <data dir>/ui_testing."
    )
    chromium_path: str | None = Field(default=None, description="Chromium executable; unset: chromium on PATH.")
    launch_timeout_s: float = Field(default=30.0, gt=0, le=300, description="Bound on starting Chromium.")
    navigation_timeout_s: float = Field(default=15.0, gt=0, le=120, description="Bound on loading one page.")
    max_full_page_height: int = Field(
        default=20_000, ge=500, le=100_000, description="Tallest full-page capture, in CSS px."
    )
    max_diff_ratio: Share = Field(default=0.0, description="Default share of changed pixels a comparison tolerates.")
    pixel_threshold: Share = Field(
        default=0.1, description="Colour distance (0..1) under which a pixel counts as unchanged."
    )
    check_wait_s: float = job_wait(20.0, 120, "How long run_check waits for its run before answering.")
    keep_captures: int = Field(
        default=20, ge=1, le=100_000, description="Newest captures kept per page key and viewport (baselines always)."
    )
    keep_runs: int = Field(
        default=10, ge=1, le=100_000, description="Check runs per check whose captures are kept (and the last pass)."
    )
    image_grace_s: float = Field(
        default=3600.0, ge=0, le=30 * 86_400, description="Images written or reused this recently are never pruned."
    )
    sweep_interval_s: float = Field(default=3600.0, ge=10, le=86_400, description="How often images are pruned.")

    @field_validator("allow_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        try:
            NetPolicy.from_entries(value)
        except InvalidInput as exc:
            raise ValueError(f"UI_TESTING_ALLOW_HOSTS: {exc}") from None
        return value

    def image_root(self) -> Path:
        """The folder images are stored in."""
        return self.images_dir or self.data_dir / "ui_testing"
