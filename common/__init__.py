"""Shared runtime of mcp-suite: settings, logging, database, migrations, cache, events, embeddings, vectors."""
