"""Wiring of the documentation server: thin tools over :class:`~servers.documentation.service.DocumentationService`.

No ``from __future__ import annotations``: resources are registered straight with the SDK, which
reads their signatures.
"""

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer

from common.errors import InvalidInput
from common.runtime import Deps, ServiceTools, create_server
from common.tool_schema import CursorArg, P
from common.tools import DELETE, READ, WRITE, Hints
from servers.documentation.models import Endpoints, GeneratedList, Hits, Jobs, Page, Projects, Saved, SpecImport
from servers.documentation.service import DocumentationService
from servers.documentation.settings import Settings

NAME = "documentation"
TITLE = "Documentation"
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
VERSION_RE = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"

ProjectArg = Annotated[str, P("Project name.", pattern=NAME_RE)]
VersionArg = Annotated[str, P("Version, e.g. 1.2.", pattern=VERSION_RE)]
OptProject = Annotated[str | None, P("Omit for all.", pattern=NAME_RE)]
OptVersion = Annotated[str | None, P("Omit for all.", pattern=VERSION_RE)]
Limit = Annotated[int, P("Max items.", ge=1, le=50)]
Cursor = CursorArg


INSTRUCTIONS = (
    "Private, versioned docs and API specs. search_docs before answering questions about a project's "
    "APIs; cite results by their citation."
)

TOOLS = ServiceTools(DocumentationService, lean=True, outline_outputs=True)


@TOOLS.tool("Manage projects", Hints(read_only=False, destructive=True, idempotent=False))
async def manage_project(
    action: Annotated[Literal["create", "list", "describe", "delete", "reembed"], P("What to do.")],
    ctx: Context,
    project: Annotated[str | None, P("Project (all but list).", pattern=NAME_RE)] = None,
    version: Annotated[str | None, P("Version (optional).", pattern=VERSION_RE)] = None,
    description: Annotated[str, P("create: what it documents.", max_length=500)] = "",
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Projects:
    """Create, list, describe, delete or re-embed documentation projects and versions."""
    svc = await TOOLS.service(ctx)
    if action == "list":
        return await svc.list_projects(limit, cursor)
    if project is None:
        raise InvalidInput(f"manage_project(action='{action}') needs project.")
    if action == "create":
        return await svc.create_project(project, version, description)
    if action == "delete":
        return await svc.delete(project, version)
    if action == "reembed":
        return await svc.reembed(project, version, ctx.report_progress)
    return await svc.describe_project(project)


@TOOLS.tool("Ingest folder", Hints(read_only=False, destructive=True, idempotent=False))
async def ingest_folder(
    action: Annotated[Literal["start", "status", "list", "cancel", "resume"], P("start a job or manage one.")],
    ctx: Context,
    project: OptProject = None,
    version: OptVersion = None,
    path: Annotated[str | None, P("start: folder in allowed roots.")] = None,
    include: Annotated[list[str] | None, P("Globs; default md rst txt html py.")] = None,
    exclude: Annotated[list[str] | None, P("Globs to skip.")] = None,
    job_id: Annotated[str | None, P("Job to manage.")] = None,
    limit: Limit = 10,
    cursor: Cursor = None,
) -> Jobs:
    """Ingest a folder as a job (progress; re-runs redo only changed files); or status/list/cancel/resume it."""
    svc = await TOOLS.service(ctx)
    if action == "start":
        if not (project and version and path):
            raise InvalidInput("ingest_folder(action='start') needs project, version and path.")
        return await svc.start_ingest(project, version, path, include, exclude, ctx.report_progress)
    if action == "list":
        return await svc.list_jobs(project, limit, cursor)
    if job_id is None:
        raise InvalidInput(f"ingest_folder(action='{action}') needs job_id (a UUID from start or list).")
    if action == "cancel":
        return await svc.cancel_job(job_id)
    if action == "resume":
        return await svc.resume_job(job_id, ctx.report_progress)
    return await svc.job_status(job_id)


@TOOLS.tool("Ingest text", DELETE)
async def ingest_text(
    project: ProjectArg,
    version: VersionArg,
    title: Annotated[str, P("Title.", min_length=1, max_length=300)],
    content: Annotated[str, P("Markdown or plain text.", min_length=1)],
    ctx: Context,
    path: Annotated[str | None, P("Default: from title.", max_length=1000)] = None,
) -> Saved:
    """Store a document from text (replaces the same path)."""
    return await (await TOOLS.service(ctx)).ingest_text(project, version, title, content, path)


@TOOLS.tool("Search docs", READ)
async def search_docs(
    query: Annotated[str, P("What to look for.", min_length=1, max_length=2000)],
    ctx: Context,
    project: OptProject = None,
    version: OptVersion = None,
    limit: Limit = 5,
    cursor: Cursor = None,
    per_document: Annotated[bool, P("One hit per document, other sections listed.")] = True,
) -> Hits:
    """Search docs by meaning and keywords; hits carry a citation, section anchor and document_id."""
    return await (await TOOLS.service(ctx)).search(query, project, version, limit, cursor, per_document)


@TOOLS.tool("Read document", READ)
async def read_document(
    ctx: Context,
    document_id: Annotated[int | None, P("Or project+version+path.")] = None,
    project: OptProject = None,
    version: OptVersion = None,
    path: Annotated[str | None, P("Document path.")] = None,
    heading: Annotated[str | None, P("Section title or anchor.")] = None,
    offset: Annotated[int, P("Start character (list: item).", ge=0)] = 0,
    length: Annotated[int | None, P("Characters.", ge=1)] = None,
    toc: Annotated[bool, P("Add headings.")] = False,
) -> Page:
    """Read a document or section by pages (next_offset). Only project+version: list its documents."""
    svc = await TOOLS.service(ctx)
    if document_id is None and path is None and project and version:
        return await svc.list_documents(project, version, offset, toc)
    return await svc.read(document_id, project, version, path, heading, offset, length, toc)


@TOOLS.tool("Import API spec", DELETE)
async def import_api_spec(
    project: ProjectArg,
    version: VersionArg,
    ctx: Context,
    path: Annotated[str | None, P("Spec file in allowed roots.")] = None,
    content: Annotated[str | dict[str, Any] | None, P("Or the spec: JSON/YAML.")] = None,
) -> SpecImport:
    """Import an OpenAPI 3 / Swagger 2 spec into a version; returns the endpoint diff vs the previous spec."""
    return await (await TOOLS.service(ctx)).import_spec(project, version, path, content)


@TOOLS.tool("Find endpoints", READ)
async def find_endpoints(
    ctx: Context,
    query: Annotated[str | None, P("Omit to list.", max_length=2000)] = None,
    project: OptProject = None,
    version: OptVersion = None,
    tag: Annotated[str | None, P("Only this tag.")] = None,
    operation_id: Annotated[str | None, P("Get one.")] = None,
    method: Annotated[str | None, P("With path: get one.")] = None,
    path: Annotated[str | None, P("e.g. /pets/{id}")] = None,
    limit: Limit = 10,
    cursor: Cursor = None,
) -> Endpoints:
    """Search API endpoints by meaning, list them by tag, or get one with schemas."""
    svc = await TOOLS.service(ctx)
    if operation_id or method or path:
        return await svc.get_endpoint(project, version, operation_id, method, path)
    return await svc.find_endpoints(query, project, version, tag, limit, cursor)


@TOOLS.tool("Generate content", WRITE)
async def generate_content(
    kind: Annotated[
        Literal["api_reference", "api_overview", "schema_diagram", "list"],
        P("What to make, or list."),
    ],
    ctx: Context,
    project: OptProject = None,
    version: OptVersion = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> GeneratedList:
    """Generate an API reference or Mermaid diagram from a version's spec and store it; or list them."""
    svc = await TOOLS.service(ctx)
    if kind == "list":
        return await svc.list_generated(project, version, limit, cursor)
    return await svc.generate(kind, project, version)


def build(settings: Settings) -> MCPServer[Deps]:
    """The documentation server; its service marks jobs left running by a dead process as interrupted."""
    server = create_server(NAME, settings, title=TITLE, tools=TOOLS, instructions=INSTRUCTIONS)

    @server.resource("docs://documents/{document_id}", name="document", mime_type="text/markdown")
    async def document_resource(document_id: str, ctx: Context) -> str:
        """A stored document's text (bounded to DOCUMENTATION_READ_MAX_CHARS; read_document pages further)."""
        return await (await TOOLS.service(ctx)).document_text(document_id)

    @server.resource("docs://projects/{project}/{version}/toc", name="toc", mime_type="application/json")
    async def toc_resource(project: str, version: str, ctx: Context) -> str:
        """A project version's table of contents: documents and their headings."""
        return await (await TOOLS.service(ctx)).toc_json(project, version)

    return server
