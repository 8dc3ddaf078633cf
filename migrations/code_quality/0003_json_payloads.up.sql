-- Payloads written once and only read back whole as text (a run's functions and duplication by
-- store.run_detail, cached analyzer results by store.cache_get) are kept as json: PostgreSQL then
-- checks the text instead of converting it to jsonb on write and back to text on read.
ALTER TABLE runs DROP CONSTRAINT runs_functions_check, DROP CONSTRAINT runs_duplication_check;
ALTER TABLE runs
    ALTER COLUMN functions TYPE json USING functions::json,
    ALTER COLUMN duplication TYPE json USING duplication::json;
ALTER TABLE runs
    ADD CONSTRAINT runs_functions_check CHECK (json_typeof(functions) = 'array'),
    ADD CONSTRAINT runs_duplication_check CHECK (json_typeof(duplication) = 'object');
ALTER TABLE result_cache ALTER COLUMN value TYPE json USING value::json;
