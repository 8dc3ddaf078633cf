"""The mcp-suite servers. ``registry.SERVERS`` is the one list of them."""
