"""The calls ``mcp-suite demo`` and the stdio end-to-end tests make on this server, in order.

They stay off the network (the tests never leave loopback): the ledger, the search history and
the crawl list of a fresh schema.
"""

CALLS: list[tuple[str, dict[str, object]]] = [
    ("manage_crawl", {"action": "list"}),
    ("usage_report", {"days": 1}),
    ("search_history", {"limit": 5}),
]
