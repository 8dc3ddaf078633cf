-- Runs as role `web_access` with search_path = web_access, extensions.
-- One row per normalised URL (pages) holds the HTTP caching state; bodies are stored once per
-- sha256, and the extracted document of a body once per mode, so paging reads the database.
CREATE TABLE bodies (
    sha256 text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    body bytea NOT NULL,
    size bigint NOT NULL CHECK (size >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE documents (
    body_sha256 text NOT NULL REFERENCES bodies (sha256) ON DELETE CASCADE,
    mode text NOT NULL CHECK (mode IN ('markdown', 'text', 'html')),
    kind text NOT NULL,
    format text NOT NULL,
    title text,
    extractor text NOT NULL,
    notes jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(notes) = 'array'),
    content text NOT NULL,
    chars integer NOT NULL CHECK (chars >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (body_sha256, mode)
);

CREATE TABLE pages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url text NOT NULL UNIQUE,
    final_url text NOT NULL,
    status integer NOT NULL,
    content_type text,
    body_sha256 text NOT NULL REFERENCES bodies (sha256),
    -- The DOM a headless browser rendered, when plain fetching found no readable content.
    rendered_sha256 text REFERENCES bodies (sha256),
    byte_size bigint NOT NULL CHECK (byte_size >= 0),
    headers jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(headers) = 'object'),
    storable boolean NOT NULL,
    fresh_until timestamptz,
    fetched_at timestamptz NOT NULL,
    checked_at timestamptz NOT NULL,
    downloads integer NOT NULL DEFAULT 1,
    revalidations integer NOT NULL DEFAULT 0
);
CREATE INDEX pages_body_idx ON pages (body_sha256);

CREATE TABLE searches (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    query text NOT NULL CHECK (length(query) BETWEEN 1 AND 2000),
    provider text NOT NULL,
    result_count integer NOT NULL,
    latency_ms integer NOT NULL,
    -- The query and its results' titles and snippets: what history search reads.
    summary text NOT NULL,
    embedding vector(384),
    model text,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, summary)) STORED,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX searches_created_idx ON searches (created_at DESC, id DESC);
CREATE INDEX searches_embedding_idx ON searches USING hnsw (embedding vector_cosine_ops);
CREATE INDEX searches_tsv_idx ON searches USING gin (tsv);

CREATE TABLE search_results (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    search_id bigint NOT NULL REFERENCES searches (id) ON DELETE CASCADE,
    rank integer NOT NULL CHECK (rank >= 1),
    title text NOT NULL,
    url text NOT NULL,
    snippet text NOT NULL,
    UNIQUE (search_id, rank)
);

-- The usage ledger: one row per outgoing request or cache answer.
CREATE TABLE requests (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    provider text NOT NULL,
    host text NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('network', 'revalidated', 'cache', 'error', 'refused')),
    status integer,
    bytes bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    latency_ms integer NOT NULL DEFAULT 0,
    error text
);
CREATE INDEX requests_provider_at_idx ON requests (provider, at);
CREATE INDEX requests_at_idx ON requests (at);

-- @include jobs

-- The frontier and the result of each crawl: a page is queued once per job, then fetched, skipped or failed.
CREATE TABLE crawl_pages (
    job_id uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    url text NOT NULL,
    depth integer NOT NULL CHECK (depth >= 0),
    seq bigint GENERATED ALWAYS AS IDENTITY,
    state text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'fetched', 'skipped', 'failed')),
    reason text,
    http_status integer,
    page_id bigint REFERENCES pages (id) ON DELETE SET NULL,
    title text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, url)
);
CREATE INDEX crawl_pages_queue_idx ON crawl_pages (job_id, state, seq);

CREATE TABLE screenshots (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    url text NOT NULL,
    full_page boolean NOT NULL,
    width integer NOT NULL,
    height integer NOT NULL,
    bytes bigint NOT NULL,
    path text NOT NULL,
    thumb_path text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX screenshots_sha_idx ON screenshots (sha256);
