-- Runs as role `memory_management` with search_path = memory_management, extensions.
-- Vectors live in this table (not in a VectorIndex collection) so hybrid recall is one SQL query.
CREATE TABLE memories (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace text NOT NULL CHECK (workspace ~ '^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,99}$'),
    scope text NOT NULL DEFAULT 'project' CHECK (scope IN ('session', 'project', 'global')),
    parent_id uuid REFERENCES memories (id) ON DELETE SET NULL,
    kind text NOT NULL DEFAULT 'note' CHECK (length(kind) BETWEEN 1 AND 50),
    content text NOT NULL CHECK (length(content) > 0),
    content_hash text NOT NULL,
    tags text[] NOT NULL DEFAULT '{}',
    metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    importance real NOT NULL DEFAULT 0.5 CHECK (importance BETWEEN 0 AND 1),
    embedding vector(384),
    embedding_model text NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'archived')),
    expires_at timestamptz,
    access_count integer NOT NULL DEFAULT 0,
    last_accessed_at timestamptz,
    useful_count integer NOT NULL DEFAULT 0,
    not_useful_count integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    archived_at timestamptz,
    version integer NOT NULL DEFAULT 1,
    CHECK (parent_id IS DISTINCT FROM id)
);

-- Dedupe: one active memory per content in a workspace; concurrent writers meet here (ON CONFLICT).
CREATE UNIQUE INDEX memories_dedupe_idx ON memories (workspace, content_hash) WHERE state = 'active';
CREATE INDEX memories_embedding_idx ON memories USING hnsw (embedding vector_cosine_ops);
CREATE INDEX memories_tsv_idx ON memories USING gin (tsv);
CREATE INDEX memories_tags_idx ON memories USING gin (tags);
CREATE INDEX memories_listing_idx ON memories (workspace, state, created_at);
CREATE INDEX memories_parent_idx ON memories (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX memories_expiry_idx ON memories (expires_at) WHERE expires_at IS NOT NULL;

-- Every update, merge, archive, restore and move keeps the previous state here.
CREATE TABLE memory_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    memory_id uuid NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    version integer NOT NULL,
    action text NOT NULL CHECK (action IN ('update', 'merge', 'archive', 'restore', 'move')),
    content text NOT NULL,
    tags text[] NOT NULL,
    metadata jsonb NOT NULL,
    importance real NOT NULL,
    parent_id uuid,
    merged_into uuid,
    at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX memory_history_memory_idx ON memory_history (memory_id, id);
