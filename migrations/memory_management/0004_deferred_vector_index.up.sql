-- A single store answers before its vector enters the HNSW graph. Inserting into the graph is
-- the costliest part of a store and grows with the store (measured on this 2-core machine: ~1.5 ms
-- at 1k memories, 10-20 ms at 100k); the row is written with indexed = false, outside the partial
-- index below, and a moment later (batched, after the answer) flipped to true, which inserts it.
-- Until then recall compares the query with the not-yet-indexed rows exactly
-- (memories_unindexed_idx), so a stored memory is found at once either way.
ALTER TABLE memories ADD COLUMN indexed boolean NOT NULL DEFAULT true;
DROP INDEX memories_embedding_idx;
CREATE INDEX memories_embedding_idx ON memories USING hnsw (embedding vector_cosine_ops) WHERE indexed;
CREATE INDEX memories_unindexed_idx ON memories (created_at) WHERE NOT indexed;
