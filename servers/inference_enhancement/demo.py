"""The calls ``mcp-suite demo`` (and the stdio end-to-end test) make on this server, in order (default tools
only: the reference's nine)."""

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
    ("open_nodes", {"names": ["Ada"]}),
    ("read_graph", {}),
]
