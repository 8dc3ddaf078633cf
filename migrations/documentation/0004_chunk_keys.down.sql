ALTER TABLE chunks DROP COLUMN tsv;
ALTER TABLE chunks DROP COLUMN keys;
ALTER TABLE chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english'::regconfig, heading), 'A') || setweight(to_tsvector('english'::regconfig, content), 'B')
) STORED;
CREATE INDEX chunks_tsv_idx ON chunks USING gin (tsv);
