"""Wiring of the knowledge-graph server: thin tools over :class:`~servers.inference_enhancement.service.GraphService`.

The reference memory server's nine tools (same names, arguments and results) plus retrieval, prompt
enrichment, provenance and as-of-time queries. Each tool validates its arguments, calls one service
method and returns its model; ``build`` lists the tools and the two resources.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import unquote

from mcp.server.mcpserver import Context, MCPServer

from common.runtime import Deps, create_server, server_service, service
from common.tool_schema import CursorArg, P
from common.tools import DELETE, READ, WRITE, ToolSet
from servers.inference_enhancement.models import (
    AddedAll,
    DeletionIn,
    Done,
    Entities,
    EntityIn,
    Exported,
    Graph,
    Imported,
    ObservationsIn,
    Path,
    Prompt,
    Provenance,
    Ranking,
    RelationIn,
    RelationKey,
    Relations,
)
from servers.inference_enhancement.service import NAME, SUMMARY_URI, GraphService, entity_uri
from servers.inference_enhancement.settings import Settings

TITLE = "Knowledge graph"

Names = Annotated[list[str], P("Entity names.")]
AsOf = Annotated[datetime | None, P("Graph as of this time.")]
Types = Annotated[list[str] | None, P("Only these relation types.")]
Direction = Annotated[Literal["out", "in", "both"], P("Relation direction.")]


async def _svc(ctx: Context) -> GraphService:
    return await service(ctx, GraphService)


def _client(ctx: Context) -> str | None:
    """The client's name from the MCP handshake (the provenance of its writes), if it gave one."""
    try:
        params = ctx.session.client_params
        return params.client_info.name if params is not None else None
    except Exception:  # no session (in-process tests) or an older handshake
        return None


# ------------------------------------------------------------------------------------------- the nine tools


async def create_entities(entities: Annotated[list[EntityIn], P("New entities.")], ctx: Context) -> Entities:
    """Create entities with observations; returns those that were new."""
    return await (await _svc(ctx)).create_entities(entities, client=_client(ctx))


async def create_relations(
    relations: Annotated[list[RelationIn], P("Active voice; validFrom/To optional.")],
    ctx: Context,
) -> Relations:
    """Relate existing entities; returns the new relations."""
    return await (await _svc(ctx)).create_relations(relations, client=_client(ctx))


async def add_observations(
    observations: Annotated[list[ObservationsIn], P("Texts per entity.")], ctx: Context
) -> AddedAll:
    """Add observations to existing entities; returns what was new."""
    return await (await _svc(ctx)).add_observations(observations, client=_client(ctx))


async def delete_entities(entityNames: Names, ctx: Context) -> Done:
    """Delete entities and their relations."""
    return await (await _svc(ctx)).delete_entities(entityNames)


async def delete_observations(deletions: Annotated[list[DeletionIn], P("Texts per entity.")], ctx: Context) -> Done:
    """Delete observations by exact text."""
    return await (await _svc(ctx)).delete_observations(deletions)


async def delete_relations(relations: Annotated[list[RelationKey], P("Relations.")], ctx: Context) -> Done:
    """Delete relations."""
    return await (await _svc(ctx)).delete_relations(relations)


async def read_graph(
    ctx: Context,
    limit: Annotated[int, P("Page size.", ge=1, le=1_000)] = 200,
    cursor: CursorArg = None,
    names_only: Annotated[bool, P("Omit observations.")] = False,
    as_of: AsOf = None,
) -> Graph:
    """Read the graph a page at a time; follow next_cursor."""
    return await (await _svc(ctx)).read_graph(limit=limit, cursor=cursor, names_only=names_only, as_of=as_of)


async def search_nodes(
    query: Annotated[str, P("Words or a question.")],
    ctx: Context,
    limit: Annotated[int, P("Most entities.", ge=1, le=200)] = 10,
    cursor: CursorArg = None,
) -> Graph:
    """Find entities by meaning, keywords and substrings, best first; next_cursor pages on."""
    return await (await _svc(ctx)).search_nodes(query, limit=limit, cursor=cursor)


async def open_nodes(names: Names, ctx: Context) -> Graph:
    """Read entities by exact name, with their relations."""
    return await (await _svc(ctx)).open_nodes(names)


# ------------------------------------------------------------------------------------------- import / export


async def import_memory_jsonl(
    ctx: Context,
    path: Annotated[str | None, P("memory.jsonl file in an allowed folder.")] = None,
    content: Annotated[str | None, P("Or the file's text.")] = None,
) -> Imported:
    """Import a reference memory server's memory.jsonl, merging into the graph (all or nothing)."""
    return await (await _svc(ctx)).import_jsonl(path=path, content=content)


async def export_memory_jsonl(
    ctx: Context,
    path: Annotated[str | None, P("File in an allowed folder; omitted: return the text.")] = None,
) -> Exported:
    """Export the graph in the reference server's memory.jsonl format (to a file or inline if small)."""
    return await (await _svc(ctx)).export_jsonl(path=path)


# ------------------------------------------------------------------------------------------- retrieval


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
    return await (await _svc(ctx)).neighbors(
        name,
        depth=depth,
        relation_types=relation_types,
        direction=direction,
        as_of=as_of,
        limit=limit,
        cursor=cursor,
    )


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
    return await (await _svc(ctx)).find_path(
        source, target, max_depth=max_depth, relation_types=relation_types, direction=direction, as_of=as_of
    )


async def get_relevant_subgraph(
    query: Annotated[str, P("What the subgraph should be about.")],
    ctx: Context,
    seeds: Annotated[int, P("Best search hits to start from.", ge=1, le=20)] = 5,
    depth: Annotated[int, P("Hops to expand, 0-2.", ge=0, le=2)] = 1,
    limit: Annotated[int, P("Most entities.", ge=1, le=200)] = 30,
) -> Graph:
    """The part of the graph most relevant to a query: best hybrid-search hits expanded by their relations."""
    return await (await _svc(ctx)).relevant_subgraph(query, seeds=seeds, depth=depth, limit=limit)


async def enhance_prompt(
    query: Annotated[str, P("The request.")],
    ctx: Context,
    max_tokens: Annotated[int, P("Token budget.", ge=50, le=8_000)] = 800,
) -> Prompt:
    """Facts relevant to a query as a text block within a token budget, citing [entity]."""
    return await (await _svc(ctx)).enhance_prompt(query, max_tokens=max_tokens)


async def rank_passages(
    query: Annotated[str, P("What the passages should answer.")],
    passages: Annotated[list[str], P("Candidate texts.", min_length=1, max_length=200)],
    ctx: Context,
    limit: Annotated[int, P("Most passages returned.", ge=1, le=200)] = 20,
) -> Ranking:
    """Order candidate passages by semantic relevance to a query (embeddings, no LLM); scores are cosine."""
    return await (await _svc(ctx)).rank_passages(query, passages, limit=limit)


async def get_provenance(
    name: Annotated[str, P("Entity name.")],
    ctx: Context,
    limit: Annotated[int, P("Most observations and relations each.", ge=1, le=500)] = 100,
    cursor: CursorArg = None,
) -> Provenance:
    """When and by which source an entity, its observations and its relations were written, with validity."""
    return await (await _svc(ctx)).provenance(name, limit=limit, cursor=cursor)


# ------------------------------------------------------------------------------------------- build


def build(settings: Settings) -> MCPServer[Deps]:
    """The knowledge-graph server; its service embeds new and changed entities in the background."""

    # lean: the seventeen tools' schemas must fit the client's context budget (see settings.CORE_TOOLS).
    tools = ToolSet(settings, lean=True, outline_outputs=True, bare_errors=True)
    tools.add(create_entities, "Create entities", WRITE)
    tools.add(create_relations, "Create relations", WRITE)
    tools.add(add_observations, "Add observations", WRITE)
    tools.add(delete_entities, "Delete entities", DELETE)
    tools.add(delete_observations, "Delete observations", DELETE)
    tools.add(delete_relations, "Delete relations", DELETE)
    tools.add(read_graph, "Read graph", READ)
    tools.add(search_nodes, "Search nodes", READ)
    tools.add(open_nodes, "Open nodes", READ)
    tools.add(import_memory_jsonl, "Import memory.jsonl", WRITE)
    tools.add(export_memory_jsonl, "Export memory.jsonl", WRITE)
    tools.add(get_neighbors, "Neighbours", READ)
    tools.add(find_path, "Shortest path", READ)
    tools.add(get_relevant_subgraph, "Relevant subgraph", READ)
    tools.add(enhance_prompt, "Enhance prompt", READ)
    tools.add(rank_passages, "Rank passages", READ)
    tools.add(get_provenance, "Provenance", READ)
    server = create_server(
        NAME,
        settings,
        title=TITLE,
        tools=tools,
        service=lambda deps: GraphService.open(deps, settings),
        instructions=(
            "Knowledge graph of entities, relations and observations. search_nodes or enhance_prompt before "
            "answering about known people, projects or facts; create_entities/add_observations to remember."
        ),
    )

    @server.resource(SUMMARY_URI, name="graph-summary", mime_type="application/json")
    async def summary_resource() -> str:
        """Counts, the most common entity and relation types, and the last change."""
        return json.dumps(await (await server_service(server, GraphService)).summary())

    @server.resource("graph://entities/{name}", name="entity", mime_type="application/json")
    async def entity_resource(name: str, ctx: Context) -> str:
        """One entity with its observations and relations (the same shape as open_nodes)."""
        result = await (await _svc(ctx)).entity(unquote(name))
        return result.model_dump_json(by_alias=True, exclude={"next_cursor"})

    return server


__all__ = ["build", "entity_uri"]
