-- One embedding model per store (common/embeddings/store_model.py): the model this schema's vectors
-- are made by; a process configured with another one follows it or refuses, and only
-- `mcp-suite reembed web_access --model M` changes it. Seeded with the model most of the existing rows use.
CREATE TABLE store_model (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    model text NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
    -- Set while a switch to another model is under way (mcp-suite reembed), NULL otherwise.
    target_model text CHECK (length(target_model) BETWEEN 1 AND 200),
    switch_started_at timestamptz,
    switch_done bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO store_model (model)
SELECT model FROM searches WHERE model IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1;
