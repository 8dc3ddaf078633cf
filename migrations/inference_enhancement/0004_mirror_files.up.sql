-- The memory.jsonl files (MEMORY_FILE_PATH) this graph was last synchronised with: the hash of each
-- file's content as last imported or written, so a start imports only a file that changed since,
-- and a graph change is never undone by importing the server's own copy of it again.
CREATE TABLE mirror_files (
    path text PRIMARY KEY CHECK (length(path) BETWEEN 1 AND 4096),
    sha256 text NOT NULL CHECK (length(sha256) = 64),
    synced_at timestamptz NOT NULL DEFAULT now()
);
