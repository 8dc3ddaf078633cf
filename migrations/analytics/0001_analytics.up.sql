-- Runs as role `analytics` with search_path = analytics, extensions: objects land in schema analytics.
-- The catalogue: a dataset is a file (registered, or fetched from PostgreSQL into Parquet).
CREATE TABLE datasets (
    name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 63),
    description text NOT NULL DEFAULT '',
    source_kind text NOT NULL CHECK (source_kind IN ('file', 'postgres')),
    source text NOT NULL,
    source_query text,
    path text NOT NULL,
    format text NOT NULL,
    sheet text,
    columns jsonb NOT NULL,
    row_count bigint NOT NULL,
    byte_size bigint NOT NULL,
    fingerprint text NOT NULL,
    profile jsonb,
    profile_fingerprint text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE saved_queries (
    name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 100),
    sql text NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE query_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sql text NOT NULL,
    saved_name text,
    ok boolean NOT NULL,
    error text,
    total_rows bigint,
    elapsed_ms integer NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX query_history_at_idx ON query_history (at DESC);

-- A chart is stored once per Vega-Lite document (its id is the document's hash).
CREATE TABLE charts (
    id text PRIMARY KEY,
    source text NOT NULL,
    spec jsonb NOT NULL,
    png_path text NOT NULL,
    svg_path text NOT NULL,
    spec_path text NOT NULL,
    description text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE predictions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source text NOT NULL,
    task text NOT NULL,
    model text NOT NULL,
    target text NOT NULL,
    features text[] NOT NULL,
    parameters jsonb NOT NULL,
    data_fingerprint text NOT NULL,
    metrics jsonb NOT NULL,
    predicted jsonb NOT NULL,
    notes text[] NOT NULL DEFAULT '{}',
    rescore jsonb,
    rescored_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX predictions_created_idx ON predictions (created_at DESC);

CREATE TABLE patterns (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source text NOT NULL,
    data_fingerprint text NOT NULL,
    kind text NOT NULL,
    columns text[] NOT NULL,
    statistic double precision NOT NULL,
    strength text NOT NULL,
    p_value double precision,
    description text NOT NULL,
    details jsonb NOT NULL,
    sample jsonb NOT NULL,
    embedding vector(384),
    embedding_model text,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', description || ' ' || source || ' ' || kind)) STORED,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, data_fingerprint, kind, columns)
);
CREATE INDEX patterns_embedding_idx ON patterns USING hnsw (embedding vector_cosine_ops);
CREATE INDEX patterns_tsv_idx ON patterns USING gin (tsv);
