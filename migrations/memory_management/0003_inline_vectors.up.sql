-- Vectors stay in the row. A memory's row (content, its tsvector, a 1.5 KB vector) passes
-- PostgreSQL's 2 KB TOAST threshold, and the vector type's EXTERNAL storage then moved nearly every
-- vector to the TOAST table: each distance computed from the table (the vector list's similarities,
-- exact scans of small stores, consolidation) cost three extra page reads, and each store an extra
-- TOAST insert. Measured on 1.7k memories: the vector list 5.0 -> 2.1 ms.
ALTER TABLE memories ALTER COLUMN embedding SET STORAGE PLAIN;
-- Rows up to a page stay whole (the content and tsvector are only compressed or moved out when a
-- row would not fit), so ranking keywords does not decompress every candidate either.
ALTER TABLE memories SET (toast_tuple_target = 8160);
-- Rewrite the table once so rows written before keep their vectors inline too (an expression in
-- USING forces the rewrite; the value is unchanged; the indexes are rebuilt).
ALTER TABLE memories ALTER COLUMN content_hash TYPE text USING content_hash || '';
