-- Recall stays fast as the store grows.
-- The access counts recall updates live in the row; room on each page lets those updates be HOT
-- (no new entries in the vector and text indexes). Applies to pages written from now on.
ALTER TABLE memories SET (fillfactor = 80);
-- "Is any memory embedded by another model?" answered by two short index range scans.
CREATE INDEX memories_model_idx ON memories (embedding_model);
