-- Vectors stay in the row: an entity's row (name, lower-cased text, trigrams, tsvector, a 1.5 KB
-- vector) is near PostgreSQL's 2 KB TOAST threshold, and the vector type's EXTERNAL storage moves
-- the vector of every row past it to the TOAST table, so the vector list paid extra page reads
-- for each similarity it returned. See memory_management 0003.
ALTER TABLE entities ALTER COLUMN embedding SET STORAGE PLAIN;
ALTER TABLE entities SET (toast_tuple_target = 8160);
-- Rewrite once so entities written before keep their vectors inline too (indexes are rebuilt).
ALTER TABLE entities ALTER COLUMN lc TYPE text USING lc || '';
