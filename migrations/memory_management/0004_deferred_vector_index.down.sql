DROP INDEX memories_unindexed_idx;
DROP INDEX memories_embedding_idx;
ALTER TABLE memories DROP COLUMN indexed;
CREATE INDEX memories_embedding_idx ON memories USING hnsw (embedding vector_cosine_ops);
