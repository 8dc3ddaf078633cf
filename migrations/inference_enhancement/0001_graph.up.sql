-- Runs as role `inference_enhancement` with search_path = inference_enhancement, extensions.
-- A knowledge graph: entities with observations, joined by typed relations. Every row records
-- when and by which source it was written (provenance); relations may carry a validity interval.

CREATE TABLE entities (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 500),
    entity_type text NOT NULL CHECK (length(entity_type) <= 200),
    -- Lower-cased "name \x1f type" (lowered in Python, as the reference lowers in JavaScript).
    lc text NOT NULL,
    -- The distinct 3-character substrings of lc (computed in Python: ~10x cheaper than in SQL). The
    -- embedded PostgreSQL has no pg_trgm, and substring search (what the reference server does) must
    -- stay fast at 100k entities: a GIN index on these finds the candidates, strpos() confirms them.
    grams text[] NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', name || ' ' || entity_type)) STORED,
    embedding vector(384),
    embedding_model text,
    -- version counts content changes; embedded_version is the version the embedding was made from.
    version integer NOT NULL DEFAULT 1,
    embedded_version integer NOT NULL DEFAULT 0,
    source text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A small pending list: bulk inserts are merged into the index (5x faster than without one), while
-- a search scans at most 1 MB of pending entries (an import flushes them with gin_clean_pending_list).
CREATE INDEX entities_grams_idx ON entities USING gin (grams) WITH (gin_pending_list_limit = 1024);
CREATE INDEX entities_tsv_idx ON entities USING gin (tsv) WITH (gin_pending_list_limit = 1024);
CREATE INDEX entities_embedding_idx ON entities USING hnsw (embedding vector_cosine_ops);
CREATE INDEX entities_stale_idx ON entities (id) WHERE embedded_version < version;

CREATE TABLE observations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity_id bigint NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    content text NOT NULL CHECK (length(content) > 0),
    lc text NOT NULL,
    grams text[] NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    source text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One copy of a text per entity; md5 because long observations exceed a btree entry.
CREATE UNIQUE INDEX observations_unique_idx ON observations (entity_id, md5(content));
CREATE INDEX observations_entity_idx ON observations (entity_id, id);
CREATE INDEX observations_grams_idx ON observations USING gin (grams) WITH (gin_pending_list_limit = 1024);
CREATE INDEX observations_tsv_idx ON observations USING gin (tsv) WITH (gin_pending_list_limit = 1024);

CREATE TABLE relations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_id bigint NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    to_id bigint NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    relation_type text NOT NULL CHECK (length(relation_type) BETWEEN 1 AND 200),
    valid_from timestamptz,
    valid_to timestamptz,
    source text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (from_id, to_id, relation_type),
    CHECK (valid_from IS NULL OR valid_to IS NULL OR valid_from < valid_to)
);

CREATE INDEX relations_to_idx ON relations (to_id);
