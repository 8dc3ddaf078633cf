"""Wiring of the knowledge-graph server: thin tools over :class:`~servers.inference_enhancement.service.GraphService`.

The reference memory server's nine tools (same names, arguments and results) plus retrieval, prompt
enrichment, provenance and as-of-time queries. Each tool validates its arguments, calls one service
method and returns its model; ``build`` adds the resources (the tools are declared on ``TOOLS``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import unquote

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult

from common.runtime import Deps, ServiceTools, create_server, server_service
from common.tool_schema import CursorArg, P
from common.tools import DELETE, READ, WRITE, args_of
from servers.inference_enhancement import wire
from servers.inference_enhancement.models import (
    AddedAll,
    DeletionIn,
    Done,
    Entities,
    EntityIn,
    Exported,
    Graph,
    Imported,
    Nodes,
    ObservationsIn,
    Path,
    Prompt,
    Provenance,
    Ranking,
    RelationIn,
    RelationKey,
    Relations,
)
from servers.inference_enhancement.service import GRAPH_URI, NAME, SUMMARY_URI, GraphService, entity_uri
from servers.inference_enhancement.settings import Settings

TITLE = "Knowledge graph"

Names = Annotated[list[str], P("Entity names.")]
AsOf = Annotated[datetime | None, P("Graph as of this time.")]
Types = Annotated[list[str] | None, P("Only these relation types.")]
Direction = Annotated[Literal["out", "in", "both"], P("Relation direction.")]

INSTRUCTIONS = (
    "Knowledge graph of entities, relations and observations. search_nodes before answering about "
    "known people, projects or facts; create_entities/add_observations to remember."
)
# lean: the tools' schemas must fit the client's context budget (see settings.CORE_TOOLS). The nine
# reference tools advertise typed results, as the reference does; the others outline theirs (typed=False),
# so that all seventeen stay affordable in the client's context.
TOOLS = ServiceTools(GraphService, lean=True, outline_outputs=True, typed_outputs=True, bare_errors=True)


def _client(ctx: Context) -> str | None:
    """The client's name from the MCP handshake (the provenance of its writes), if it gave one."""
    try:
        params = ctx.session.client_params
        return params.client_info.name if params is not None else None
    except Exception:  # no session (in-process tests) or an older handshake
        return None


# ------------------------------------------------------------------------------------------- the nine tools


@TOOLS.tool("Create entities", WRITE)
async def create_entities(
    entities: Annotated[list[EntityIn], P("New entities.")], ctx: Context
) -> Annotated[CallToolResult, Entities]:
    """Create entities with observations; returns those that were new."""
    return wire.listed(await (await TOOLS.service(ctx)).create_entities(entities, client=_client(ctx)), "entities")


@TOOLS.tool("Create relations", WRITE)
async def create_relations(
    relations: Annotated[list[RelationIn], P("Active voice.")],
    ctx: Context,
) -> Annotated[CallToolResult, Relations]:
    """Relate entities; returns the new relations."""
    return wire.listed(await (await TOOLS.service(ctx)).create_relations(relations, client=_client(ctx)), "relations")


@TOOLS.tool("Add observations", WRITE)
async def add_observations(
    observations: Annotated[list[ObservationsIn], P("Texts per entity.")], ctx: Context
) -> Annotated[CallToolResult, AddedAll]:
    """Add observations to existing entities; returns what was new."""
    return wire.listed(await (await TOOLS.service(ctx)).add_observations(observations, client=_client(ctx)), "results")


@TOOLS.tool("Delete entities", DELETE)
async def delete_entities(entityNames: Names, ctx: Context) -> Annotated[CallToolResult, Done]:
    """Delete entities and their relations."""
    return wire.done(await (await TOOLS.service(ctx)).delete_entities(entityNames))


@TOOLS.tool("Delete observations", DELETE)
async def delete_observations(
    deletions: Annotated[list[DeletionIn], P("Texts per entity.")], ctx: Context
) -> Annotated[CallToolResult, Done]:
    """Delete observations by exact text."""
    return wire.done(await (await TOOLS.service(ctx)).delete_observations(deletions))


@TOOLS.tool("Delete relations", DELETE)
async def delete_relations(
    relations: Annotated[list[RelationKey], P("Relations.")], ctx: Context
) -> Annotated[CallToolResult, Done]:
    """Delete relations."""
    return wire.done(await (await TOOLS.service(ctx)).delete_relations(relations))


@TOOLS.tool("Read graph", READ)
async def read_graph(
    ctx: Context,
    limit: Annotated[int, P("Page size.", ge=1, le=1_000)] = 200,
    cursor: CursorArg = None,
    names_only: Annotated[bool, P("Omit observations.")] = False,
    as_of: AsOf = None,
) -> Annotated[CallToolResult, Graph]:
    """Read the graph a page at a time; follow next_cursor."""
    return wire.graph(
        await (await TOOLS.service(ctx)).read_graph(limit=limit, cursor=cursor, names_only=names_only, as_of=as_of)
    )


@TOOLS.tool("Search nodes", READ)
async def search_nodes(
    query: Annotated[str, P("Words or a question.")],
    ctx: Context,
    limit: Annotated[int, P("Most entities.", ge=1, le=200)] = 10,
    cursor: CursorArg = None,
) -> Annotated[CallToolResult, Graph]:
    """Find entities by meaning, keywords and substrings, best first; next_cursor pages on."""
    return wire.graph(await (await TOOLS.service(ctx)).search_nodes(query, limit=limit, cursor=cursor))


@TOOLS.tool("Open nodes", READ)
async def open_nodes(names: Names, ctx: Context) -> Annotated[CallToolResult, Nodes]:
    """Read entities by exact name, with their relations."""
    return wire.graph(await (await TOOLS.service(ctx)).open_nodes(names))


# ------------------------------------------------------------------------------------------- import / export


@TOOLS.tool("Import memory.jsonl", WRITE, typed=False)
async def import_memory_jsonl(
    ctx: Context,
    path: Annotated[str | None, P("memory.jsonl file in an allowed folder.")] = None,
    content: Annotated[str | None, P("Or the file's text.")] = None,
) -> Imported:
    """Import a reference memory server's memory.jsonl, merging into the graph (all or nothing)."""
    return await (await TOOLS.service(ctx)).import_jsonl(path=path, content=content)


@TOOLS.tool("Export memory.jsonl", WRITE, typed=False)
async def export_memory_jsonl(
    ctx: Context,
    path: Annotated[str | None, P("File in an allowed folder; omitted: return the text.")] = None,
) -> Exported:
    """Export the graph in the reference server's memory.jsonl format (to a file or inline if small)."""
    return await (await TOOLS.service(ctx)).export_jsonl(path=path)


# ------------------------------------------------------------------------------------------- retrieval


@TOOLS.tool("Neighbours", READ, typed=False)
async def get_neighbors(
    name: Annotated[str, P("Start entity.")],
    ctx: Context,
    depth: Annotated[int, P("Hops, 1-3.", ge=1, le=3)] = 1,
    relation_types: Types = None,
    direction: Direction = "both",
    as_of: AsOf = None,
    limit: Annotated[int, P("Page size.", ge=1, le=500)] = 50,
    cursor: CursorArg = None,
) -> Graph:
    """Entities within 1-3 hops of one entity, nearest first."""
    return await (await TOOLS.service(ctx)).neighbors(**args_of(locals()))


@TOOLS.tool("Shortest path", READ, typed=False)
async def find_path(
    source: Annotated[str, P("From entity.")],
    target: Annotated[str, P("To entity.")],
    ctx: Context,
    max_depth: Annotated[int, P("Most hops, 1-6.", ge=1, le=6)] = 4,
    relation_types: Types = None,
    direction: Direction = "both",
    as_of: AsOf = None,
) -> Path:
    """Shortest chain of relations between two entities."""
    return await (await TOOLS.service(ctx)).find_path(
        source, target, max_depth=max_depth, relation_types=relation_types, direction=direction, as_of=as_of
    )


@TOOLS.tool("Relevant subgraph", READ, typed=False)
async def get_relevant_subgraph(
    query: Annotated[str, P("What the subgraph should be about.")],
    ctx: Context,
    seeds: Annotated[int, P("Best search hits to start from.", ge=1, le=20)] = 5,
    depth: Annotated[int, P("Hops to expand, 0-2.", ge=0, le=2)] = 1,
    limit: Annotated[int, P("Most entities.", ge=1, le=200)] = 30,
) -> Graph:
    """The part of the graph most relevant to a query: best hybrid-search hits expanded by their relations."""
    return await (await TOOLS.service(ctx)).relevant_subgraph(query, seeds=seeds, depth=depth, limit=limit)


@TOOLS.tool("Enhance prompt", READ, typed=False)
async def enhance_prompt(
    query: Annotated[str, P("The request.")],
    ctx: Context,
    max_tokens: Annotated[int, P("Token budget.", ge=50, le=8_000)] = 800,
) -> Prompt:
    """Facts relevant to a query as a text block within a token budget, citing [entity]."""
    return await (await TOOLS.service(ctx)).enhance_prompt(query, max_tokens=max_tokens)


@TOOLS.tool("Rank passages", READ, typed=False)
async def rank_passages(
    query: Annotated[str, P("What the passages should answer.")],
    passages: Annotated[list[str], P("Candidate texts.", min_length=1, max_length=200)],
    ctx: Context,
    limit: Annotated[int, P("Most passages returned.", ge=1, le=200)] = 20,
) -> Ranking:
    """Order candidate passages by semantic relevance to a query (embeddings, no LLM); scores are cosine."""
    return await (await TOOLS.service(ctx)).rank_passages(query, passages, limit=limit)


@TOOLS.tool("Provenance", READ, typed=False)
async def get_provenance(
    name: Annotated[str, P("Entity name.")],
    ctx: Context,
    limit: Annotated[int, P("Most observations and relations each.", ge=1, le=500)] = 100,
    cursor: CursorArg = None,
) -> Provenance:
    """When and by which source an entity, its observations and its relations were written, with validity."""
    return await (await TOOLS.service(ctx)).provenance(name, limit=limit, cursor=cursor)


# ------------------------------------------------------------------------------------------- build


def build(settings: Settings) -> MCPServer[Deps]:
    """The knowledge-graph server; its service embeds new and changed entities in the background."""

    server = create_server(NAME, settings, title=TITLE, tools=TOOLS, instructions=INSTRUCTIONS)

    @server.resource(GRAPH_URI, name="knowledge-graph", title="Knowledge Graph", mime_type="application/json")
    async def graph_resource() -> str:
        """The knowledge graph as read_graph's first page, in the reference server's text form."""
        return wire.js_json(
            (await (await server_service(server, GraphService)).read_graph()).model_dump(
                mode="json", by_alias=True, exclude_none=True
            )
        )

    @server.resource(SUMMARY_URI, name="graph-summary", mime_type="application/json")
    async def summary_resource() -> str:
        """Counts, the most common entity and relation types, and the last change."""
        return json.dumps(await (await server_service(server, GraphService)).summary())

    @server.resource("graph://entities/{name}", name="entity", mime_type="application/json")
    async def entity_resource(name: str, ctx: Context) -> str:
        """One entity with its observations and relations (the same shape as open_nodes)."""
        result = await (await TOOLS.service(ctx)).entity(unquote(name))
        return result.model_dump_json(by_alias=True, exclude={"next_cursor"})

    return server


__all__ = ["build", "entity_uri"]
