"""notes: the example server. Small on purpose: it exercises every part of ``common/`` end to end
(embedded PostgreSQL, migrations, role isolation, pool, cache, events, embeddings, vector index,
tool rules) and is the template to copy for a new server."""
