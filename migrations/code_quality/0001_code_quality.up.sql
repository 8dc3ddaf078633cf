-- Runs as role `code_quality` with search_path = code_quality, extensions.
-- A project is one analysed folder (its resolved path); a run is one finished analysis, written in
-- one transaction with its findings and file metrics, so no half-written run is ever visible.
CREATE TABLE projects (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    root text NOT NULL UNIQUE CHECK (length(root) BETWEEN 1 AND 4096),
    gate jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(gate) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE runs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    job_id uuid,
    seq integer NOT NULL,
    partial boolean NOT NULL,
    git_commit text,
    branch text,
    dirty boolean,
    changed_since text,
    analyzers text[] NOT NULL,
    outcomes jsonb NOT NULL CHECK (jsonb_typeof(outcomes) = 'array'),
    skipped jsonb NOT NULL CHECK (jsonb_typeof(skipped) = 'array'),
    gaps jsonb NOT NULL CHECK (jsonb_typeof(gaps) = 'array'),
    metrics jsonb NOT NULL CHECK (jsonb_typeof(metrics) = 'object'),
    functions jsonb NOT NULL CHECK (jsonb_typeof(functions) = 'array'),
    duplication jsonb NOT NULL CHECK (jsonb_typeof(duplication) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, seq)
);
-- One run per job: a job that two processes both try to finish records its run once.
CREATE UNIQUE INDEX runs_job_idx ON runs (job_id) WHERE job_id IS NOT NULL;

CREATE TABLE findings (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    fingerprint text NOT NULL,
    analyzer text NOT NULL,
    rule_id text NOT NULL,
    severity text NOT NULL CHECK (severity IN ('high', 'medium', 'low', 'info')),
    category text NOT NULL,
    path text NOT NULL,
    line integer NOT NULL,
    end_line integer,
    col integer,
    message text NOT NULL,
    context text,
    symbol text,
    signature text NOT NULL DEFAULT '',
    anchor text NOT NULL DEFAULT '',
    UNIQUE (run_id, fingerprint)
);
CREATE INDEX findings_fingerprint_idx ON findings (fingerprint);

CREATE TABLE file_metrics (
    run_id uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    path text NOT NULL,
    lines integer NOT NULL,
    code_lines integer NOT NULL,
    functions integer NOT NULL,
    max_complexity integer NOT NULL,
    mean_complexity double precision NOT NULL,
    maintainability double precision,
    PRIMARY KEY (run_id, path)
);

-- The triage of a finding, kept across runs by fingerprint.
CREATE TABLE finding_status (
    project_id bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    fingerprint text NOT NULL,
    status text NOT NULL CHECK (status IN ('open', 'accepted', 'false_positive', 'fixed')),
    actor text NOT NULL DEFAULT '',
    reason text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, fingerprint)
);

-- One text and one vector per fingerprint: embedded once, searched across every run.
CREATE TABLE finding_texts (
    project_id bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    fingerprint text NOT NULL,
    text text NOT NULL,
    embedding vector(384),
    embedding_model text,
    search tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    PRIMARY KEY (project_id, fingerprint)
);
CREATE INDEX finding_texts_embedding_idx ON finding_texts USING hnsw (embedding vector_cosine_ops);
CREATE INDEX finding_texts_search_idx ON finding_texts USING gin (search);

CREATE TABLE baselines (
    project_id bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    run_id uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, name)
);

-- Per-file analyzer results, the runner's ResultCache.
CREATE TABLE result_cache (
    analyzer text NOT NULL,
    version text NOT NULL,
    config_hash text NOT NULL,
    content_hash text NOT NULL,
    value jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (analyzer, version, config_hash, content_hash)
);
CREATE INDEX result_cache_created_idx ON result_cache (created_at);

-- @include jobs

