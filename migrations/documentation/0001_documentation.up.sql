-- Runs as role `documentation` with search_path = documentation, extensions.
-- Vectors live next to their text (not in a VectorIndex collection) so hybrid search is one SQL query
-- and a document's chunks are replaced in the same transaction as the document.
CREATE TABLE projects (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    description text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE versions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    version text NOT NULL CHECK (version ~ '^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$'),
    -- Set when the configured embedding model differs from the model of some of its vectors.
    needs_reembed boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, version)
);

CREATE TABLE documents (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version_id bigint NOT NULL REFERENCES versions (id) ON DELETE CASCADE,
    path text NOT NULL CHECK (length(path) BETWEEN 1 AND 1000),
    title text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('markdown', 'rst', 'text', 'html', 'python', 'generated')),
    source text NOT NULL CHECK (source IN ('folder', 'text', 'generated')),
    -- The folder a 'folder' document came from: a re-ingest of that folder removes what is gone from it.
    root text,
    content text NOT NULL,
    content_hash text NOT NULL,
    embedding_model text NOT NULL,
    toc jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(toc) = 'array'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (version_id, path)
);

CREATE INDEX documents_root_idx ON documents (version_id, root) WHERE root IS NOT NULL;

CREATE TABLE chunks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    version_id bigint NOT NULL REFERENCES versions (id) ON DELETE CASCADE,
    ordinal integer NOT NULL,
    heading_path text[] NOT NULL DEFAULT '{}',
    heading text NOT NULL DEFAULT '',
    anchor text NOT NULL DEFAULT '',
    start_offset integer NOT NULL,
    end_offset integer NOT NULL,
    content text NOT NULL,
    embedding vector(384) NOT NULL,
    embedding_model text NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, heading), 'A') || setweight(to_tsvector('english'::regconfig, content), 'B')
    ) STORED,
    -- A document's chunks are replaced in one transaction; this makes a duplicate impossible anyway.
    UNIQUE (document_id, ordinal)
);

CREATE INDEX chunks_embedding_idx ON chunks USING hnsw (embedding vector_cosine_ops);
CREATE INDEX chunks_tsv_idx ON chunks USING gin (tsv);
CREATE INDEX chunks_version_idx ON chunks (version_id, embedding_model);

CREATE TABLE jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    version_id bigint NOT NULL REFERENCES versions (id) ON DELETE CASCADE,
    root text NOT NULL,
    include text[] NOT NULL,
    exclude text[] NOT NULL,
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled', 'interrupted')),
    cancel_requested boolean NOT NULL DEFAULT false,
    counts jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(counts) = 'object'),
    current_file text,
    -- Every skipped or failed file: {path, reason}. Never dropped silently.
    errors jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(errors) = 'array'),
    message text,
    attempts integer NOT NULL DEFAULT 1,
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz
);

-- One live job per folder of a version: two processes asked to ingest the same folder meet here.
CREATE UNIQUE INDEX jobs_live_idx ON jobs (version_id, root) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_status_idx ON jobs (status, heartbeat_at);

CREATE TABLE specs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version_id bigint NOT NULL UNIQUE REFERENCES versions (id) ON DELETE CASCADE,
    title text NOT NULL,
    spec_version text NOT NULL,
    source text NOT NULL,
    content_hash text NOT NULL,
    document jsonb NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE endpoints (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    spec_id bigint NOT NULL REFERENCES specs (id) ON DELETE CASCADE,
    version_id bigint NOT NULL REFERENCES versions (id) ON DELETE CASCADE,
    method text NOT NULL,
    path text NOT NULL,
    operation_id text,
    summary text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT '',
    tags text[] NOT NULL DEFAULT '{}',
    deprecated boolean NOT NULL DEFAULT false,
    parameters jsonb NOT NULL DEFAULT '[]',
    request_body jsonb,
    responses jsonb NOT NULL DEFAULT '{}',
    fingerprint text NOT NULL,
    embedding vector(384) NOT NULL,
    embedding_model text NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (
        to_tsvector('english'::regconfig, method || ' ' || path || ' ' || coalesce(operation_id, '') || ' ' || summary || ' ' || description)
    ) STORED,
    UNIQUE (spec_id, method, path)
);

CREATE INDEX endpoints_embedding_idx ON endpoints USING hnsw (embedding vector_cosine_ops);
CREATE INDEX endpoints_tsv_idx ON endpoints USING gin (tsv);
CREATE INDEX endpoints_tags_idx ON endpoints USING gin (tags);

CREATE TABLE generated (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version_id bigint NOT NULL REFERENCES versions (id) ON DELETE CASCADE,
    document_id bigint NOT NULL UNIQUE REFERENCES documents (id) ON DELETE CASCADE,
    spec_id bigint REFERENCES specs (id) ON DELETE SET NULL,
    kind text NOT NULL CHECK (kind IN ('api_reference', 'api_overview', 'schema_diagram')),
    provenance jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
