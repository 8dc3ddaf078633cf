"""Results of the web_access tools."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

from common.jobs import JobView
from common.paging import Paged


class FetchedPage(BaseModel):
    """A page's readable content, one slice of the stored document at a time."""

    page_id: int = Field(description="Id of the stored page (resource web://pages/{id}).")
    url: str
    final_url: str
    status: int
    content_type: str | None
    title: str | None
    format: str = Field(description="markdown, text, html, json or description (binary).")
    byte_size: int
    fetched_at: datetime = Field(description="When the body was downloaded.")
    checked_at: datetime = Field(description="When the origin last confirmed it (download or 304).")
    from_cache: bool
    revalidated: bool = Field(description="The origin answered 304 Not Modified to this call.")
    rendered: bool = Field(description="The content comes from a headless browser's DOM.")
    content: str
    start: int
    total_chars: int
    truncated: bool
    next_start: int | None = Field(default=None, description="Pass as start for the next slice (no refetch).")
    notes: list[str] = Field(default_factory=list)


class LinkItem(BaseModel):
    url: str
    text: str
    internal: bool = Field(description="Same origin (scheme, host and port) as the page.")


class LinkList(Paged):
    """A page's links, a page at a time."""

    page_id: int
    url: str
    items: list[LinkItem]
    internal_count: int
    external_count: int
    from_cache: bool


class CrawlPage(BaseModel):
    url: str
    depth: int
    state: Literal["queued", "fetched", "skipped", "failed"]
    reason: str | None
    http_status: int | None
    page_id: int | None
    title: str | None


class CrawlView(Paged):
    """A crawl job: its state, counts by page state, and (for action=pages) one page of its pages."""

    job: JobView
    pages: dict[str, int] = Field(description="Pages by state: queued, fetched, skipped, failed.")
    items: list[CrawlPage] = Field(default_factory=list)


class CrawlJobs(Paged):
    """manage_crawl's answer: one crawl (status, pages, cancel, resume) or the recent crawls (list)."""

    crawl: CrawlView | None = None
    items: list[JobView] = Field(default_factory=list)


class SearchHit(BaseModel):
    result_id: int = Field(description="Pass to fetch_result to read the page.")
    rank: int
    title: str
    url: str
    snippet: str


class SearchAnswer(BaseModel):
    search_id: int
    query: str
    provider: str
    latency_ms: int
    results: list[SearchHit]
    warning: str | None = None


class PastSearch(BaseModel):
    search_id: int
    query: str
    provider: str
    created_at: datetime
    latency_ms: int
    result_count: int
    results: list[SearchHit] = Field(description="Its first results.")


class SearchHistory(Paged):
    items: list[PastSearch]


class UsageRow(BaseModel):
    day: date
    provider: str
    requests: int = Field(description="Requests that reached the network (including errors).")
    cache_hits: int
    revalidated: int
    errors: int
    refused: int
    bytes: int
    avg_latency_ms: float
    hosts: int


class QuotaState(BaseModel):
    provider: str
    used_today: int
    warn: int | None
    hard: int | None
    state: Literal["ok", "warning", "exhausted"]


class HostUsage(BaseModel):
    host: str
    requests: int
    bytes: int


class UsageReport(Paged):
    days: int
    items: list[UsageRow]
    quotas: list[QuotaState]
    top_hosts: list[HostUsage]


class Screenshot(BaseModel):
    screenshot_id: int
    url: str
    final_url: str
    path: str = Field(description="PNG on disk, named by its sha256.")
    thumb_path: str
    sha256: str
    width: int
    height: int
    bytes: int
    full_page: bool
