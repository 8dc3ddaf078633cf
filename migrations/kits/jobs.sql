-- The shared jobs table (common/jobs.py), included by a server's migration with `-- @include jobs`.
CREATE TABLE jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind text NOT NULL,
    key text NOT NULL,
    params jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(params) = 'object'),
    status text NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'done', 'failed', 'cancelled', 'interrupted')),
    cancel_requested boolean NOT NULL DEFAULT false,
    done bigint NOT NULL DEFAULT 0,
    total bigint,
    counts jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(counts) = 'object'),
    errors jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(errors) = 'array'),
    errors_total integer NOT NULL DEFAULT 0,
    state jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(state) = 'object'),
    message text,
    attempts integer NOT NULL DEFAULT 1,
    owner text,
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE UNIQUE INDEX jobs_live_idx ON jobs (kind, key) WHERE status = 'running';
CREATE INDEX jobs_status_idx ON jobs (status, heartbeat_at);
CREATE INDEX jobs_created_idx ON jobs (kind, created_at DESC);
