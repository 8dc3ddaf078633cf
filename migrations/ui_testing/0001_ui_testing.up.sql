-- Runs as role `ui_testing` with search_path = ui_testing, extensions.
-- Images live on disk under their sha256 (UI_TESTING_IMAGES_DIR); rows point at them by path.
CREATE TABLE checks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$'),
    scenario jsonb NOT NULL CHECK (jsonb_typeof(scenario) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per comparison, audit or check run; list_runs and ui_report read these.
CREATE TABLE runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('compare', 'audit', 'check')),
    page_key text,
    viewport text,
    check_id bigint REFERENCES checks (id) ON DELETE SET NULL,
    check_name text,
    job_id uuid,
    status text NOT NULL CHECK (status IN ('running', 'passed', 'failed', 'error', 'interrupted', 'cancelled')),
    summary text NOT NULL DEFAULT '',
    details jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    duration_ms integer,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX runs_created_idx ON runs (created_at DESC, id DESC);
CREATE INDEX runs_key_idx ON runs (page_key, kind, id DESC);
CREATE INDEX runs_check_idx ON runs (check_id, id DESC);

CREATE TABLE captures (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    page_key text NOT NULL CHECK (length(page_key) BETWEEN 1 AND 200),
    url text NOT NULL,
    viewport text NOT NULL,
    browser text NOT NULL,
    sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    path text NOT NULL,
    width integer NOT NULL,
    height integer NOT NULL,
    bytes integer NOT NULL,
    full_page boolean NOT NULL DEFAULT false,
    selector text,
    http_status integer,
    thumb_path text,
    run_id bigint REFERENCES runs (id) ON DELETE SET NULL,
    step integer,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX captures_key_idx ON captures (page_key, viewport, browser, id DESC);
CREATE INDEX captures_run_idx ON captures (run_id) WHERE run_id IS NOT NULL;

-- The current baseline of a (page key, viewport, browser) and the ones it replaced (history).
CREATE TABLE baselines (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    page_key text NOT NULL,
    viewport text NOT NULL,
    browser text NOT NULL,
    capture_id bigint NOT NULL REFERENCES captures (id) ON DELETE CASCADE,
    is_current boolean NOT NULL DEFAULT true,
    note text,
    created_at timestamptz NOT NULL DEFAULT now(),
    replaced_at timestamptz
);
CREATE UNIQUE INDEX baselines_current_idx ON baselines (page_key, viewport, browser) WHERE is_current;
CREATE INDEX baselines_history_idx ON baselines (page_key, viewport, browser, id DESC);

CREATE TABLE audits (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    page_key text NOT NULL,
    url text NOT NULL,
    viewport text NOT NULL,
    tags text[] NOT NULL,
    axe_version text,
    by_impact jsonb NOT NULL DEFAULT '{}',
    violations_total integer NOT NULL DEFAULT 0,
    passed_rules integer NOT NULL DEFAULT 0,
    incomplete_rules integer NOT NULL DEFAULT 0,
    run_id bigint REFERENCES runs (id) ON DELETE SET NULL,
    step integer,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audits_key_idx ON audits (page_key, id DESC);

CREATE TABLE violations (
    audit_id bigint NOT NULL REFERENCES audits (id) ON DELETE CASCADE,
    rule text NOT NULL,
    impact text,
    help text NOT NULL,
    help_url text NOT NULL,
    selectors text[] NOT NULL,
    nodes integer NOT NULL,
    PRIMARY KEY (audit_id, rule)
);

-- The audit a page's later audits are compared with (new, fixed, unchanged findings).
CREATE TABLE audit_baselines (
    page_key text PRIMARY KEY,
    audit_id bigint NOT NULL REFERENCES audits (id) ON DELETE CASCADE,
    set_at timestamptz NOT NULL DEFAULT now()
);

-- @include jobs
