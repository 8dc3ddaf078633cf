"""Wiring of the web_access server: thin tools over :class:`~servers.web_access.service.WebAccessService`."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer

from common.errors import InvalidInput
from common.jobs import check_job_id
from common.runtime import Deps, ServiceTools, create_server, server_service
from common.tool_schema import P
from common.tools import READ, READ_EXTERNAL, Hints
from servers.web_access.models import (
    CrawlJobs,
    CrawlView,
    FetchedPage,
    LinkList,
    Screenshot,
    SearchAnswer,
    SearchHistory,
    UsageReport,
)
from servers.web_access.service import WebAccessService
from servers.web_access.settings import Settings

NAME = "web_access"
TITLE = "Web access"

Url = Annotated[str, P("Absolute http(s) URL.", min_length=1, max_length=8192)]
Mode = Annotated[Literal["markdown", "text", "html"], P("markdown: main content.")]
MaxChars = Annotated[int | None, P("Characters per answer.", ge=1, le=2_000_000)]
Start = Annotated[int, P("A next_start.", ge=0, le=1_000_000_000)]
MaxAge = Annotated[float | None, P("Max cached age; 0: ask the site.", ge=0, le=31_536_000)]  # fmt: skip
Force = Annotated[bool, P("Download again.")]
Timeout = Annotated[float | None, P("Seconds.", gt=0, le=600)]
Limit = Annotated[int, P("Page size.", ge=1, le=200)]
Cursor = Annotated[str | None, P("A next_cursor.", max_length=512)]
Patterns = Annotated[list[str] | None, P("URL globs ('re:' regex).", max_length=20)]
CREATE_EXTERNAL = Hints(read_only=False, destructive=False, idempotent=False, open_world=True)
STORE_EXTERNAL = Hints(read_only=False, destructive=False, idempotent=True, open_world=True)


INSTRUCTIONS = "Fetch, crawl and search the web through a shared cache; every request is in a usage ledger."

TOOLS = ServiceTools(WebAccessService, lean=True, outline_outputs=True)


@TOOLS.tool("Fetch URL", READ_EXTERNAL)
async def fetch_url(
    ctx: Context,
    url: Annotated[str | None, P("http(s) URL.", max_length=8192)] = None,
    result_id: Annotated[int | None, P("Or a web_search result id.", ge=1, le=2**62)] = None,
    mode: Mode = "markdown",
    max_chars: MaxChars = None,
    start: Start = 0,
    timeout_s: Timeout = None,
    max_age_s: MaxAge = None,
    force_refresh: Force = False,
    render: Annotated[bool, P("Browser if no text.")] = False,
) -> FetchedPage:
    """Read a page (url or search result_id) as markdown, text or html; cached. Page on with start=next_start."""
    svc = await TOOLS.service(ctx)
    if (url is None) == (result_id is None):
        raise InvalidInput("Give exactly one of url or result_id.")
    if result_id is not None:
        url = await svc.result_url(result_id)
    assert url is not None
    return await svc.fetch_url(
        url, mode=mode, max_chars=max_chars, start=start, timeout_s=timeout_s, max_age_s=max_age_s,
        force_refresh=force_refresh, render=render,
    )  # fmt: skip


@TOOLS.tool("List links", READ_EXTERNAL)
async def list_links(
    url: Url,
    ctx: Context,
    which: Annotated[Literal["all", "internal", "external"], P("internal: same origin.")] = "all",
    limit: Limit = 100,
    cursor: Cursor = None,
) -> LinkList:
    """List a page's distinct links (absolute, normalised), internal or external."""
    return await (await TOOLS.service(ctx)).list_links(url, which=which, limit=limit, cursor=cursor)


@TOOLS.tool("Crawl site", CREATE_EXTERNAL)
async def crawl_site(
    url: Url,
    ctx: Context,
    max_pages: Annotated[int, P("Page limit.", ge=1, le=100_000)] = 50,
    max_depth: Annotated[int, P("Link hops.", ge=0, le=100)] = 3,
    include: Patterns = None,
    exclude: Patterns = None,
    same_origin: Annotated[bool, P("Stay on url's origin.")] = True,
    use_sitemap: Annotated[bool, P("Seed from sitemap.xml.")] = True,
    delay_s: Annotated[float | None, P("Seconds between hits on a host.", ge=0, le=60)] = None,
) -> CrawlView:
    """Crawl a site into the cache as a background job (obeys robots.txt); follow it with manage_crawl."""
    svc = await TOOLS.service(ctx)
    return await svc.crawler.start(
        url, max_pages=max_pages, max_depth=max_depth, include=include or [], exclude=exclude or [], same_origin=same_origin,
        use_sitemap=use_sitemap, delay_s=delay_s, wait_s=svc.settings.crawl_wait_s, timeout_s=None,
        progress=ctx.report_progress,
    )  # fmt: skip


@TOOLS.tool("Manage crawl", Hints(read_only=False, destructive=False, idempotent=False, open_world=True))
async def manage_crawl(
    action: Annotated[Literal["status", "pages", "cancel", "resume", "list"], P("pages: every page and why.")],
    ctx: Context,
    job_id: Annotated[str | None, P("Crawl job id (not for list).", max_length=36)] = None,
    state: Annotated[Literal["queued", "fetched", "skipped", "failed"] | None, P("pages: only this state.")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> CrawlJobs:
    """A crawl's status, its pages (fetched/skipped/failed and why), cancel, resume; or list crawls."""
    svc = await TOOLS.service(ctx)
    await svc.jobs.recover()
    if action == "list":
        return await svc.crawler.list(limit, cursor)
    if job_id is None:
        raise InvalidInput(f"manage_crawl(action='{action}') needs job_id (crawl_site returns it).")
    job_id = check_job_id(job_id)
    if action == "cancel":
        await svc.jobs.cancel(job_id)
        return CrawlJobs(crawl=await svc.crawler.view(job_id))
    if action == "resume":
        return CrawlJobs(crawl=await svc.crawler.resume(job_id, svc.settings.crawl_wait_s, ctx.report_progress))
    view = await svc.crawler.view(job_id, state=state, limit=limit if action == "pages" else 0, cursor=cursor)
    return CrawlJobs(crawl=view)


@TOOLS.tool("Web search", CREATE_EXTERNAL)
async def web_search(
    query: Annotated[str, P("What to search the web for.", min_length=1, max_length=2000)],
    ctx: Context,
    limit: Annotated[int, P("Most results.", ge=1, le=50)] = 10,
) -> SearchAnswer:
    """Search the web (SearXNG or Brave, as configured); results get ids for fetch_result. Every search is kept."""
    return await (await TOOLS.service(ctx)).web_search(query, limit=limit)


@TOOLS.tool("Search history", READ)
async def search_history(
    ctx: Context,
    query: Annotated[str | None, P("By meaning and words; none: newest.", max_length=2000)] = None,
    limit: Limit = 10,
    cursor: Cursor = None,
) -> SearchHistory:
    """Find earlier web searches and their results without searching again."""
    return await (await TOOLS.service(ctx)).search_history(query, limit=limit, cursor=cursor)


@TOOLS.tool("Usage report", READ)
async def usage_report(
    ctx: Context,
    days: Annotated[int, P("Days back.", ge=1, le=366)] = 7,
    provider: Annotated[str | None, P("e.g. fetch, crawl, searxng, brave.", max_length=40)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> UsageReport:
    """Requests, bytes, cache hits, errors, latency per day and provider; quotas; top hosts."""
    return await (await TOOLS.service(ctx)).usage_report(days=days, provider=provider, limit=limit, cursor=cursor)


@TOOLS.tool("Screenshot page", STORE_EXTERNAL)
async def screenshot_page(
    url: Url,
    ctx: Context,
    full_page: Annotated[bool, P("Whole page instead of the viewport.")] = False,
    width: Annotated[int, P("Viewport width.", ge=200, le=3840)] = 1280,
    height: Annotated[int, P("Viewport height.", ge=200, le=2160)] = 800,
) -> Screenshot:
    """Screenshot a page in headless Chromium; returns file paths (PNG and thumbnail), not image data."""
    return await (await TOOLS.service(ctx)).screenshot(url, full_page=full_page, width=width, height=height)


def build(settings: Settings) -> MCPServer[Deps]:
    """The web_access server: tools, resources, and the service its lifespan starts."""
    server = create_server(NAME, settings, title=TITLE, tools=TOOLS, instructions=INSTRUCTIONS)

    @server.resource("web://pages/{page_id}", name="page", mime_type="text/markdown")
    async def page_resource(page_id: str, ctx: Context) -> str:
        """A cached page's markdown (first slice; fetch_url pages further)."""
        if not page_id.isdigit() or len(page_id) > 18:
            raise InvalidInput("page id must be a number (fetch_url returns page_id).")
        return (await (await TOOLS.service(ctx)).get_page(int(page_id))).content

    @server.resource("web://usage", name="usage", mime_type="application/json")
    async def usage_resource() -> str:
        """The usage report of the last 7 days as JSON."""
        return (await (await server_service(server, WebAccessService)).usage_report()).model_dump_json()

    return server
