"""The calls ``mcp-suite demo`` makes on this server, in order."""

CALLS: list[tuple[str, dict[str, object]]] = [
    ("save_note", {"title": "Standup", "body": "The team meets every weekday at 9:30 in room B.", "tags": ["team"]}),
    ("save_note", {"title": "Deploys", "body": "Production deploys happen on Tuesdays after the test suite passes."}),
    ("search_notes", {"query": "when do we release to production?", "limit": 2}),
    ("get_note", {"title": "Standup"}),
]
