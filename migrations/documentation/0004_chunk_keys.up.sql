-- API names a chunk defines (``functools.lru_cache``, space separated): exact keys for search, weighted
-- with the heading path; dots and underscores become spaces so the name and its parts both match.
ALTER TABLE chunks ADD COLUMN keys text NOT NULL DEFAULT '';
ALTER TABLE chunks DROP COLUMN tsv;
ALTER TABLE chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english'::regconfig, heading || ' ' || keys || ' ' || translate(keys, '._:', '   ')), 'A')
    || setweight(to_tsvector('english'::regconfig, content), 'B')
) STORED;
CREATE INDEX chunks_tsv_idx ON chunks USING gin (tsv);
