"""The calls ``mcp-suite demo`` (and the stdio end-to-end test) make on this server, in order."""

CALLS: list[tuple[str, dict[str, object]]] = [
    (
        "create_entities",
        {
            "entities": [
                {"name": "Ada", "entityType": "person", "observations": ["Leads the billing team", "Prefers tea"]},
                {"name": "Billing", "entityType": "team", "observations": ["Owns invoices and payment retries"]},
            ]
        },
    ),
    ("create_relations", {"relations": [{"from": "Ada", "to": "Billing", "relationType": "leads"}]}),
    ("add_observations", {"observations": [{"entityName": "Ada", "contents": ["Joined in 2021"]}]}),
    ("search_nodes", {"query": "who runs payments?"}),
    ("get_neighbors", {"name": "Ada", "depth": 1}),
    ("enhance_prompt", {"query": "Who should review the invoice retry change?", "max_tokens": 200}),
    ("read_graph", {}),
]
