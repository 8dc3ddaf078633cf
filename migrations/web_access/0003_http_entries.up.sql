-- hishel's storage (servers/web_access/http_cache.py): the stored HTTP response of each cache key and
-- method, its body (decoded) in bodies once per sha256. hishel's RFC 9111 state machine decides from
-- these headers whether an entry is fresh, must be revalidated or is replaced; pages keeps only what
-- the tools answer with, so its freshness columns go.
CREATE TABLE http_entries (
    id uuid PRIMARY KEY,
    key text NOT NULL,
    method text NOT NULL,
    url text NOT NULL,
    request_headers jsonb NOT NULL CHECK (jsonb_typeof(request_headers) = 'object'),
    status integer NOT NULL,
    response_headers jsonb NOT NULL CHECK (jsonb_typeof(response_headers) = 'object'),
    body_sha256 text NOT NULL REFERENCES bodies (sha256),
    stored_at timestamptz NOT NULL,
    used_at timestamptz NOT NULL,
    -- Storage lifetimes from hishel's ttl/tti (NULL: unlimited); expires_at is when lookups stop returning it.
    ttl_deadline timestamptz,
    tti_s double precision CHECK (tti_s >= 0),
    expires_at timestamptz,
    UNIQUE (key, method)
);
CREATE INDEX http_entries_url_idx ON http_entries (url);
CREATE INDEX http_entries_body_idx ON http_entries (body_sha256);

ALTER TABLE pages DROP COLUMN headers;
ALTER TABLE pages DROP COLUMN fresh_until;
