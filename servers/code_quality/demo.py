"""The calls ``mcp-suite demo`` and the stdio end-to-end tests make on this server, in order.

They need no allowed root (the demo environment configures none): list the analyses and search the
findings of every run.
"""

CALLS: list[tuple[str, dict[str, object]]] = [
    ("analyze_code", {"action": "list"}),
    ("list_findings", {"query": "hard-coded password in the source", "limit": 5}),
]
