-- Full-text search: the title outranks the body. Generated, so it can never drift from the row.
ALTER TABLE notes
    ADD COLUMN search tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', body), 'B')
    ) STORED;

CREATE INDEX notes_search_idx ON notes USING gin (search);
