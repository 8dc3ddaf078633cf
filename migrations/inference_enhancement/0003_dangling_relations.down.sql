DELETE FROM relations WHERE from_id IS NULL OR to_id IS NULL;
DROP INDEX relations_dangling_to_idx;
DROP INDEX relations_dangling_from_idx;
ALTER TABLE relations
    DROP CONSTRAINT relations_names_key,
    DROP CONSTRAINT relations_names_check,
    ALTER COLUMN from_id SET NOT NULL,
    ALTER COLUMN to_id SET NOT NULL,
    DROP COLUMN to_name,
    DROP COLUMN from_name;
