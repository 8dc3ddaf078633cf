-- The vector of a chunk's page title and heading path (the same for every chunk of a section): search ranks
-- a page's sections by it too. Empty for chunks embedded before it, until they are re-embedded.
ALTER TABLE chunks ADD COLUMN heading_embedding vector(384);
