"""memory_management: long-term memory for agents. Memories live in PostgreSQL with their embedding
and a full-text vector in the same row, so hybrid recall (pgvector + full text, fused by reciprocal
rank) is one query, and several processes of the server share one consistent store."""
