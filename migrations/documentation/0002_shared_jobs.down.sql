CREATE TABLE jobs_move AS
SELECT j.id, j.version_id, j.params ->> 'root' AS root,
       ARRAY(SELECT jsonb_array_elements_text(coalesce(j.params -> 'include', '[]'))) AS include,
       ARRAY(SELECT jsonb_array_elements_text(coalesce(j.params -> 'exclude', '[]'))) AS exclude,
       j.status, j.cancel_requested, j.counts,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('path', e ->> 'item', 'reason', e ->> 'reason')), '[]')
          FROM jsonb_array_elements(j.errors) e) AS errors,
       j.message, j.attempts, j.heartbeat_at, j.created_at, j.finished_at
FROM jobs j WHERE j.kind = 'ingest_folder' AND j.version_id IS NOT NULL;
DROP TABLE jobs;

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

INSERT INTO jobs (id, version_id, root, include, exclude, status, cancel_requested, counts, errors, message, attempts,
                  heartbeat_at, created_at, started_at, finished_at)
SELECT id, version_id, root, include, exclude, status, cancel_requested, counts, errors, message, attempts,
       heartbeat_at, created_at, created_at, finished_at
FROM jobs_move;
DROP TABLE jobs_move;
