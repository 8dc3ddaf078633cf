-- Ingest jobs move to the shared jobs kit (common/jobs.py): its columns, with the folder's version,
-- root and globs in params and key = '<version_id>:<root>', so the kit's (kind, key) unique index keeps
-- one live job per folder of a version.
-- Rows are carried over through a plain table so the new table's constraints get their usual names.
CREATE TABLE jobs_move AS
SELECT j.id, 'ingest_folder'::text AS kind, j.version_id || ':' || j.root AS key,
       jsonb_build_object('version_id', j.version_id, 'project', p.name, 'version', v.version, 'root', j.root,
                          'include', to_jsonb(j.include), 'exclude', to_jsonb(j.exclude)) AS params,
       CASE WHEN j.status = 'queued' THEN 'interrupted' ELSE j.status END AS status,
       j.cancel_requested, coalesce((j.counts ->> 'files_done')::bigint, 0) AS done,
       (j.counts ->> 'files_total')::bigint AS total, j.counts,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('item', e ->> 'path', 'reason', e ->> 'reason')), '[]')
          FROM jsonb_array_elements(j.errors) e) AS errors,
       jsonb_array_length(j.errors) AS errors_total, j.message, j.attempts, j.heartbeat_at, j.created_at, j.finished_at
FROM jobs j JOIN versions v ON v.id = j.version_id JOIN projects p ON p.id = v.project_id;
DROP TABLE jobs;

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
    finished_at timestamptz,
    -- Derived from params so deleting a version still deletes its jobs, and jobs list by project.
    version_id bigint GENERATED ALWAYS AS ((params ->> 'version_id')::bigint) STORED
        REFERENCES versions (id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX jobs_live_idx ON jobs (kind, key) WHERE status = 'running';
CREATE INDEX jobs_status_idx ON jobs (status, heartbeat_at);
CREATE INDEX jobs_created_idx ON jobs (kind, created_at DESC);
CREATE INDEX jobs_version_idx ON jobs (version_id);

INSERT INTO jobs (id, kind, key, params, status, cancel_requested, done, total, counts, errors, errors_total,
                  message, attempts, heartbeat_at, created_at, finished_at)
SELECT id, kind, key, params, status, cancel_requested, done, total, counts, errors, errors_total,
       message, attempts, heartbeat_at, created_at, finished_at
FROM jobs_move;
DROP TABLE jobs_move;
