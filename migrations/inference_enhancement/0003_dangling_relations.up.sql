-- Relations keep their ends' names, so a relation to an entity that does not exist (yet) is stored as the
-- reference memory server stores it: from_id/to_id are NULL while no entity has that name and are set
-- when one is created; the names, not the ids, identify a relation.
ALTER TABLE relations ADD COLUMN from_name text, ADD COLUMN to_name text;
UPDATE relations r SET from_name = f.name, to_name = t.name
FROM entities f, entities t WHERE f.id = r.from_id AND t.id = r.to_id;
ALTER TABLE relations
    ALTER COLUMN from_name SET NOT NULL,
    ALTER COLUMN to_name SET NOT NULL,
    ALTER COLUMN from_id DROP NOT NULL,
    ALTER COLUMN to_id DROP NOT NULL,
    ADD CONSTRAINT relations_names_check CHECK (length(from_name) BETWEEN 1 AND 500 AND length(to_name) BETWEEN 1 AND 500),
    ADD CONSTRAINT relations_names_key UNIQUE (from_name, to_name, relation_type);
-- The ends still waiting for their entity (few): found when the entity is created or deleted by name.
CREATE INDEX relations_dangling_from_idx ON relations (from_name) WHERE from_id IS NULL;
CREATE INDEX relations_dangling_to_idx ON relations (to_name) WHERE to_id IS NULL;
