-- One embedding model per store (common/embeddings/store_model.py), included with `-- @include store_model`.
CREATE TABLE store_model (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    model text NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
    -- Set while a switch to another model is under way (mcp-suite reembed), NULL otherwise.
    target_model text CHECK (length(target_model) BETWEEN 1 AND 200),
    switch_started_at timestamptz,
    switch_done bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
