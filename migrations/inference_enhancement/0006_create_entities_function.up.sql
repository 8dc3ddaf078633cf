-- Creating entities is one call of this function: each statement of a PL/pgSQL function takes a fresh
-- snapshot, so the step that links dangling relations sees those committed while the call waited for
-- its locks, without a client-side transaction (and its extra round trips).
CREATE FUNCTION create_entities(
    lock_class int, locked text[], names text[], types text[], lcs text[], vectors text[], model text,
    source text, obs_names text[], obs text[], obs_lcs text[], grams text[], obs_grams text[], sep text,
    dangling_class int
) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    key int;
    made text[];
BEGIN
    PERFORM pg_advisory_xact_lock_shared(dangling_class, 0);
    FOR key IN SELECT DISTINCT hashtext(x) FROM unnest(locked) AS x ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(lock_class, key);
    END LOOP;
    WITH ins AS (
        INSERT INTO inference_enhancement.entities
            (name, entity_type, lc, grams, embedding, embedding_model, embedded_version, source)
        SELECT u.n, u.t, u.l, string_to_array(u.g, sep), u.v::extensions.vector,
               CASE WHEN u.v IS NULL THEN NULL ELSE model END, CASE WHEN u.v IS NULL THEN 0 ELSE 1 END, source
        FROM unnest(names, types, lcs, grams, vectors) WITH ORDINALITY AS u(n, t, l, g, v, ord)
        ORDER BY u.ord
        ON CONFLICT (name) DO NOTHING
        RETURNING id, name
    ), kept AS (
        INSERT INTO inference_enhancement.observations (entity_id, content, lc, grams, source)
        SELECT ins.id, o.c, o.l, string_to_array(o.g, sep), source
        FROM ins JOIN unnest(obs_names, obs, obs_lcs, obs_grams) WITH ORDINALITY AS o(n, c, l, g, ord)
             ON o.n = ins.name
        ORDER BY o.ord
        ON CONFLICT (entity_id, md5(content)) DO NOTHING
    )
    SELECT coalesce(array_agg(ins.name), '{}') INTO made FROM ins;
    UPDATE inference_enhancement.relations r SET
        from_id = COALESCE(r.from_id, (SELECT e.id FROM inference_enhancement.entities e WHERE e.name = r.from_name)),
        to_id = COALESCE(r.to_id, (SELECT e.id FROM inference_enhancement.entities e WHERE e.name = r.to_name))
    WHERE (r.from_id IS NULL AND r.from_name = ANY(made)) OR (r.to_id IS NULL AND r.to_name = ANY(made));
    RETURN QUERY SELECT unnest(made);
END
$$;
