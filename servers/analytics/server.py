"""Wiring of the analytics server: thin tools over :class:`~servers.analytics.service.AnalyticsService`.

No ``from __future__ import annotations``: resources are registered straight with the SDK, which
reads their annotations at runtime.
"""

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer

from common.errors import InvalidInput
from common.jobs import Progress
from common.runtime import Deps, ServiceTools, create_server, server_service
from common.tool_schema import P
from common.tools import APPEND, DELETE, EXTERNAL, WRITE, Hints, args_of
from servers.analytics.models import (
    ChartOut,
    DatasetsOut,
    PatternsOut,
    PredictionOut,
    PredictionsOut,
    ProfileOut,
    QueryOut,
    Registered,
    SavedQueryResult,
)
from servers.analytics.service import AnalyticsService
from servers.analytics.settings import Settings

NAME = "analytics"
TITLE = "Analytics"

DatasetName = Annotated[str, P("Dataset name.", max_length=63)]
Source = Annotated[str, P("Dataset or SELECT.", max_length=20_000)]
Column = Annotated[str, P("X column.", max_length=200)]
Columns = Annotated[list[str] | None, P("Default: all.", max_length=100)]
Cursor = Annotated[str | None, P("next_cursor.", max_length=512)]


INSTRUCTIONS = (
    "Register data files or PostgreSQL queries as datasets, then profile, query (read-only DuckDB SQL), "
    "chart, predict and find patterns. Results are paged; charts are files."
)

TOOLS = ServiceTools(AnalyticsService, lean=True, outline_outputs=True)


def _progress(ctx: Context) -> Progress:
    async def progress(done: float, total: float | None, message: str) -> None:
        await ctx.report_progress(done, total, message)

    return progress


@TOOLS.tool("Register", EXTERNAL)
async def register_dataset(
    name: DatasetName,
    ctx: Context,
    path: Annotated[str | None, P("File path.", max_length=4096)] = None,
    connection: Annotated[str | None, P("Connection name.", max_length=100)] = None,
    sql: Annotated[str | None, P("SELECT on it.", max_length=20_000)] = None,
    description: Annotated[str, P("What it is.", max_length=2000)] = "",
    replace: Annotated[bool, P("Replace.")] = False,
) -> Registered:
    """Register a CSV, Parquet, JSON or Excel file, or a PostgreSQL query."""
    return await (await TOOLS.service(ctx)).register(**args_of(locals()), progress=_progress(ctx))


@TOOLS.tool("Datasets", DELETE)
async def manage_datasets(
    ctx: Context,
    action: Annotated[Literal["list", "remove", "job", "cancel", "resume"], P("Action.")] = "list",
    name: Annotated[str | None, P("Dataset name.", max_length=63)] = None,
    job_id: Annotated[str | None, P("Job id.", max_length=36)] = None,
    limit: Annotated[int, P("Page size.", ge=1, le=100)] = 20,
    cursor: Cursor = None,
) -> DatasetsOut:
    """List or remove datasets; jobs: list, follow, cancel, resume."""
    svc = await TOOLS.service(ctx)
    if action == "list":
        page = await svc.list_datasets(limit=limit, cursor=cursor)
        return DatasetsOut(items=page.items, total=page.total, truncated=page.truncated, next_cursor=page.next_cursor)
    if action == "job" and not job_id:
        jobs = await svc.list_jobs(limit=limit, cursor=cursor)
        return DatasetsOut(
            jobs=[j.view(5) for j in jobs.items],
            total=jobs.total,
            truncated=jobs.truncated,
            next_cursor=jobs.next_cursor,
        )
    if action == "remove":
        if not name:
            raise InvalidInput("action remove needs name")
        return DatasetsOut(removed=await svc.remove(name))
    if not job_id:
        raise InvalidInput(f"action {action} needs job_id (a job's id from action=jobs or a tool's answer)")
    if action == "job":
        return DatasetsOut(job=(await svc.job_status(job_id)).view())
    if action == "cancel":
        return DatasetsOut(job=(await svc.cancel_job(job_id)).view())
    return DatasetsOut(job=(await svc.resume_job(job_id, _progress(ctx))).view())


@TOOLS.tool("Profile", WRITE)
async def profile_dataset(
    name: DatasetName,
    ctx: Context,
) -> ProfileOut:
    """Per-column statistics of a dataset."""
    return await (await TOOLS.service(ctx)).profile(name, progress=_progress(ctx))


@TOOLS.tool("Query", APPEND)
async def query_data(
    ctx: Context,
    sql: Annotated[str | None, P("DuckDB SELECT.", max_length=20_000)] = None,
    saved: Annotated[str | None, P("Saved query.", max_length=100)] = None,
    limit: Annotated[int | None, P("Rows per page.", ge=1, le=100_000)] = None,
    cursor: Cursor = None,
) -> QueryOut:
    """One read-only SELECT over datasets, paged."""
    return await (await TOOLS.service(ctx)).query(sql, saved=saved, limit=limit, cursor=cursor)


@TOOLS.tool("Saved queries", Hints(read_only=False, destructive=True, idempotent=True))
async def manage_saved_query(
    action: Annotated[Literal["save", "get", "list", "delete", "history"], P("Action.")],
    ctx: Context,
    name: Annotated[str | None, P("Query name.", max_length=100)] = None,
    sql: Annotated[str | None, P("SELECT to save.", max_length=20_000)] = None,
    limit: Annotated[int, P("Page size.", ge=1, le=100)] = 20,
    cursor: Cursor = None,
) -> SavedQueryResult:
    """Saved queries and query history."""
    svc = await TOOLS.service(ctx)
    if action == "history":
        page = await svc.history(limit=limit, cursor=cursor)
        return SavedQueryResult(
            history=page.items, total=page.total, truncated=page.truncated, next_cursor=page.next_cursor
        )
    return await svc.saved_query(action, name=name, sql=sql, limit=limit, cursor=cursor)


@TOOLS.tool("Chart", WRITE)
async def create_chart(
    source: Source,
    kind: Annotated[Literal["bar", "line", "area", "scatter", "histogram", "box", "heatmap"], P("Type.")],
    x: Column,
    ctx: Context,
    y: Annotated[str | None, P("Y column.", max_length=200)] = None,
    color: Annotated[str | None, P("Colour by.", max_length=200)] = None,
    aggregate: Annotated[Literal["none", "count", "sum", "mean", "median", "min", "max"], P("Of y per x.")] = "none",
    width: Annotated[int, P("px.", ge=50, le=4000)] = 640,
    height: Annotated[int, P("px.", ge=50, le=4000)] = 400,
) -> ChartOut:
    """Chart data to PNG and SVG files."""
    spec = {
        "kind": kind,
        "x": x,
        "y": y,
        "color": color,
        "aggregate": aggregate,
        "width": width,
        "height": height,
    }
    return await (await TOOLS.service(ctx)).chart(source, spec)


@TOOLS.tool("Predict", APPEND)
async def predict(
    source: Source,
    target: Annotated[str, P("Target column.", max_length=200)],
    ctx: Context,
    task: Annotated[Literal["forecast", "auto", "regression", "classification"], P("Kind.")] = "auto",
    time_column: Annotated[str | None, P("Time column.", max_length=200)] = None,
    horizon: Annotated[int, P("Steps ahead.", ge=1, le=1000)] = 12,
    features: Columns = None,
    model: Annotated[Literal["linear", "forest"], P("Model.")] = "linear",
) -> PredictionOut:
    """Forecast, or fit a model scored on held-out rows."""
    return await (await TOOLS.service(ctx)).predict(
        source,
        target,
        task=task,
        time_column=time_column,
        horizon=horizon,
        features=features,
        model=model,
        progress=_progress(ctx),
    )


@TOOLS.tool("Predictions", WRITE)
async def manage_predictions(
    action: Annotated[Literal["list", "get", "rescore"], P("Action.")],
    ctx: Context,
    id: Annotated[int | None, P("Prediction id.", ge=1)] = None,
    actuals: Annotated[dict[str, Any] | None, P("Actuals by key.")] = None,
    limit: Annotated[int, P("Page size.", ge=1, le=500)] = 20,
    cursor: Cursor = None,
) -> PredictionsOut:
    """List, read or rescore stored predictions."""
    svc = await TOOLS.service(ctx)
    if action == "list":
        page = await svc.list_predictions(source=None, limit=limit, cursor=cursor)
        return PredictionsOut(
            items=page.items, total=page.total, truncated=page.truncated, next_cursor=page.next_cursor
        )
    if id is None:
        raise InvalidInput(f"action {action} needs id")
    if action == "get":
        got = await svc.get_prediction(id, limit=limit, cursor=cursor)
        return PredictionsOut(**got.model_dump())
    if actuals is None:
        raise InvalidInput("action rescore needs actuals")
    return PredictionsOut(prediction=await svc.rescore(id, actuals))


@TOOLS.tool("Patterns", WRITE)
async def find_patterns(
    ctx: Context,
    source: Annotated[str | None, P("Dataset or SELECT.", max_length=20_000)] = None,
    query: Annotated[str | None, P("Search stored ones.", max_length=2000)] = None,
    kinds: Annotated[
        list[Literal["correlations", "outliers", "trend", "change_points", "segments"]] | None,
        P("Default: the first two."),
    ] = None,
    columns: Columns = None,
    time_column: Annotated[str | None, P("Trend of columns[0].", max_length=200)] = None,
) -> PatternsOut:
    """Detect and store patterns, or search them."""
    svc = await TOOLS.service(ctx)
    if query is not None:
        return await svc.search_patterns(query, source=source, limit=10)
    if source is None:
        raise InvalidInput("give source (to detect patterns) or query (to search stored ones)")
    return await svc.find_patterns(
        source,
        kinds=kinds or ("correlations", "outliers"),
        columns=columns,
        time_column=time_column,
        value_column=columns[0] if columns else None,
        limit=20,
    )


def build(settings: Settings) -> MCPServer[Deps]:
    """The analytics server: tools, the catalogue and profile resources, and the service."""
    server = create_server(NAME, settings, title=TITLE, tools=TOOLS, instructions=INSTRUCTIONS)

    @server.resource("analytics://datasets", name="datasets", mime_type="application/json")
    async def catalogue_resource() -> str:
        """The dataset catalogue (first 100 by name)."""
        page = await (await server_service(server, AnalyticsService)).list_datasets(limit=100, cursor=None)
        return page.model_dump_json()

    @server.resource("analytics://datasets/{name}/profile", name="profile", mime_type="application/json")
    async def profile_resource(name: str, ctx: Context) -> str:
        """One dataset's profile (stored, or computed now)."""
        return (await (await TOOLS.service(ctx)).profile(name)).model_dump_json()

    return server


__all__ = ["build"]
