"""The calls ``mcp-suite demo`` and the stdio end-to-end tests make on this server, in order."""

CALLS: list[tuple[str, dict[str, object]]] = [
    (
        "store_memory",
        {"content": "The billing service deploys on Tuesdays after the test suite passes.", "tags": ["ops"]},
    ),
    ("store_memory", {"content": "Maria prefers short pull requests with one change each.", "kind": "preference"}),
    ("recall", {"query": "when do we release billing to production?", "limit": 2}),
    ("build_context", {"query": "how should I prepare my pull request?", "budget": 200}),
    ("forget", {"workspace": "default", "tags": ["ops"]}),  # a dry run: only counts
]
