ALTER TABLE chunks DROP COLUMN heading_embedding;
