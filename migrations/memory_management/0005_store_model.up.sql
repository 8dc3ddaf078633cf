-- One embedding model per store (common/embeddings/store_model.py): the model this schema's vectors
-- are made by; a process configured with another one follows it or refuses, and only
-- `mcp-suite reembed memory_management --model M` changes it. Seeded with the model most of the existing rows use.
-- @include store_model
INSERT INTO store_model (model)
SELECT embedding_model FROM memories WHERE embedding_model IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1;
