-- Test coverage read from a report the project's own test run wrote: per file in file_metrics (counts,
-- and the covered and uncovered line numbers as compact ranges such as '3-5,9'), and what the run
-- recorded about the report (which one, its format, its age, unmatched and stale files) in runs.coverage.
-- NULL everywhere a run had no report.
ALTER TABLE file_metrics
    ADD COLUMN covered_lines integer CHECK (covered_lines >= 0),
    ADD COLUMN coverable_lines integer CHECK (coverable_lines >= 0),
    ADD COLUMN covered text,
    ADD COLUMN uncovered text;
ALTER TABLE runs ADD COLUMN coverage jsonb CHECK (coverage IS NULL OR jsonb_typeof(coverage) = 'object');
