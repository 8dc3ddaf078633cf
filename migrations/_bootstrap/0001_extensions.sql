-- Applied by common.migrate.bootstrap() under a transaction-level advisory lock, before any
-- server's migrations. Idempotent: it runs on every `mcp-suite migrate` and first start-up.
-- Per-server roles and schemas are created from Python (names come from servers.registry).

-- Extensions live in their own schema so no server owns them and every server can use them.
CREATE SCHEMA IF NOT EXISTS extensions;
CREATE EXTENSION IF NOT EXISTS vector SCHEMA extensions;

-- No role may create objects in `public`: every object belongs in its server's own schema.
-- (PostgreSQL 15+ already defaults to this; older clusters and restored dumps may not.)
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
