ALTER TABLE result_cache ALTER COLUMN value TYPE jsonb USING value::jsonb;
ALTER TABLE runs DROP CONSTRAINT runs_functions_check, DROP CONSTRAINT runs_duplication_check;
ALTER TABLE runs
    ALTER COLUMN functions TYPE jsonb USING functions::jsonb,
    ALTER COLUMN duplication TYPE jsonb USING duplication::jsonb;
ALTER TABLE runs
    ADD CONSTRAINT runs_functions_check CHECK (jsonb_typeof(functions) = 'array'),
    ADD CONSTRAINT runs_duplication_check CHECK (jsonb_typeof(duplication) = 'object');
