-- Runs as role `notes` with search_path = notes, extensions: objects land in (and are owned by) schema notes.
CREATE TABLE notes (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title text NOT NULL UNIQUE CHECK (length(title) BETWEEN 1 AND 200),
    body text NOT NULL,
    tags text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
