"""Settings of the web_access server: the shared ones plus ``WEB_ACCESS_*``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from common.settings import JobServerSettings, job_wait
from servers.web_access.fetcher import DEFAULT_USER_AGENT


class Quota(BaseModel):
    """Requests per UTC day for one provider: a warning from ``warn`` on, a refusal at ``hard``."""

    warn: int | None = Field(default=None, ge=1)
    hard: int | None = Field(default=None, ge=1)


class Settings(JobServerSettings, env_prefix="WEB_ACCESS_"):
    """Ceilings exist so one call cannot hang the server, flood the database or the client's context."""

    allow_hosts: list[str] = Field(
        default_factory=list,
        description="Private or loopback destinations that may be fetched anyway: host names or CIDR networks "
        '(JSON list, e.g. ["127.0.0.1/32"]). Empty: only public addresses.',
    )
    user_agent: str = Field(default=DEFAULT_USER_AGENT, min_length=1, max_length=300)
    timeout_s: float = Field(default=20.0, gt=0, le=600, description="Default time limit of one fetch.")
    max_timeout_s: float = Field(default=60.0, gt=0, le=600, description="Ceiling a call's timeout_s may ask for.")
    max_bytes: int = Field(default=5_000_000, ge=1_000, le=200_000_000, description="Largest body downloaded.")
    max_redirects: int = Field(default=5, ge=0, le=20)
    obey_robots: bool = Field(default=True, description="Model-initiated fetches and crawls obey robots.txt.")
    robots_ttl_s: float = Field(default=3600.0, gt=0, le=86_400 * 7)
    max_chars: int = Field(default=20_000, ge=500, le=1_000_000, description="Default characters per fetch answer.")
    max_chars_ceiling: int = Field(default=100_000, ge=1_000, le=2_000_000)
    crawl_max_pages: int = Field(default=1_000, ge=1, le=100_000, description="Ceiling of a crawl's page limit.")
    crawl_max_depth: int = Field(default=10, ge=0, le=100)
    crawl_delay_s: float = Field(default=1.0, ge=0, le=60, description="Politeness delay between requests to a host.")
    crawl_concurrency: int = Field(
        default=4, ge=1, le=32, description="Pages a crawl fetches at once when no politeness delay applies."
    )
    crawl_wait_s: float = job_wait(10.0, 120, "How long crawl_site waits before returning.")
    search_provider: Literal["searxng", "brave"] | None = Field(
        default=None, description="Web search provider; unset: the first configured one (SearXNG, then Brave)."
    )
    searxng_url: str | None = Field(default=None, description="Base URL of a SearXNG instance with JSON output on.")
    brave_api_key: SecretStr | None = Field(default=None, description="Brave Search API key.")
    brave_url: str = Field(default="https://api.search.brave.com/res/v1/web/search")
    search_timeout_s: float = Field(default=15.0, gt=0, le=120)
    quotas: dict[str, Quota] = Field(
        default_factory=dict,
        description='Per-provider daily quotas, JSON: {"brave": {"warn": 1500, "hard": 2000}}. Providers: fetch, '
        "crawl, robots, render, screenshot, searxng, brave.",
    )
    browser_path: str | None = Field(
        default=None, description="Chromium executable for screenshots and rendering; unset: chromium on PATH."
    )
    render_timeout_s: float = Field(default=30.0, gt=0, le=300)
    screenshots_dir: Path | None = Field(
        default=None, description="Where screenshots are written; unset: <MCP_SUITE_DATA_DIR>/web_access/screenshots."
    )
    hot_ttl_s: int = Field(
        default=600,
        ge=0,
        le=86_400,
        description="Seconds a document (at most: a page row) stays in the Redis hot copy; 0: off.",
    )
    cache_days: int = Field(default=30, ge=1, le=3650, description="Pages unchecked this many days are deleted.")
    usage_days: int = Field(default=400, ge=1, le=3650, description="Ledger rows older than this are deleted.")
    sweep_interval_s: float = Field(default=3600.0, ge=10, le=86_400, description="How often the sweep runs.")

    def screenshot_root(self) -> Path:
        return self.screenshots_dir or self.data_dir / "web_access" / "screenshots"
