"""The calls ``mcp-suite demo`` and the stdio end-to-end tests make on this server, in order."""

_SPEC = (
    '{"openapi": "3.0.3", "info": {"title": "Pets", "version": "1"}, "paths": {"/pets": {"get": {"operationId": '
    '"listPets", "summary": "List all pets", "tags": ["pets"], "responses": {"200": {"description": "A list of pets", '
    '"content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Pet"}}}}}}}}}, '
    '"components": {"schemas": {"Pet": {"type": "object", "properties": {"id": {"type": "integer"}, "name": '
    '{"type": "string"}}}}}}'
)

CALLS: list[tuple[str, dict[str, object]]] = [
    ("manage_project", {"action": "create", "project": "demo", "version": "1.0", "description": "Demo docs"}),
    (
        "ingest_text",
        {
            "project": "demo",
            "version": "1.0",
            "title": "Deploying",
            "content": "# Deploying\n\n## Rollback\n\nRun `make rollback` to return to the previous release.\n",
        },
    ),
    ("search_docs", {"query": "how do I undo a release?", "project": "demo", "limit": 3}),
    ("read_document", {"project": "demo", "version": "1.0", "path": "deploying.md", "heading": "Rollback"}),
    ("import_api_spec", {"project": "demo", "version": "1.0", "content": _SPEC}),
    ("find_endpoints", {"query": "show every pet", "project": "demo"}),
    ("generate_content", {"project": "demo", "version": "1.0", "kind": "api_overview"}),
]
