"""The calls ``mcp-suite demo`` makes on this server, in order (none opens a page, so no network is needed)."""

CALLS: list[tuple[str, dict[str, object]]] = [
    (
        "manage_check",
        {
            "action": "save",
            "name": "home-smoke",
            "scenario": {
                "steps": [
                    {"action": "goto", "url": "http://127.0.0.1:8000/"},
                    {"action": "assert_visible", "selector": "h1"},
                    {"action": "capture", "name": "home"},
                    {"action": "audit"},
                ]
            },
        },
    ),
    ("manage_check", {"action": "list"}),
    ("list_runs", {"limit": 5}),
    ("ui_report", {}),
]
