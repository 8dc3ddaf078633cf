ALTER TABLE runs DROP COLUMN coverage;
ALTER TABLE file_metrics
    DROP COLUMN covered_lines,
    DROP COLUMN coverable_lines,
    DROP COLUMN covered,
    DROP COLUMN uncovered;
