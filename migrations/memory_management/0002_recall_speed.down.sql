DROP INDEX memories_model_idx;
ALTER TABLE memories RESET (fillfactor);
