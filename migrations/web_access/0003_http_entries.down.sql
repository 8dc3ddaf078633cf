ALTER TABLE pages ADD COLUMN fresh_until timestamptz;
ALTER TABLE pages ADD COLUMN headers jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(headers) = 'object');
DROP TABLE http_entries;
