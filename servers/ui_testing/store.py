"""Every SQL statement on schema ``ui_testing``. Plain async functions on a connection or the Database."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from common.db import Database
from common.rows import decoded

Conn = asyncpg.Connection | Database

# --------------------------------------------------------------------------------------- captures

INSERT_CAPTURE = """
INSERT INTO ui_testing.captures (page_key, url, viewport, browser, sha256, path, width, height, bytes, full_page,
    selector, http_status, thumb_path, run_id, step)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
RETURNING id
"""
GET_CAPTURE = "SELECT * FROM ui_testing.captures WHERE id = $1"
LATEST_CAPTURE = """
SELECT * FROM ui_testing.captures WHERE page_key = $1 AND ($2::text IS NULL OR viewport = $2) AND browser = $3
ORDER BY id DESC LIMIT 1
"""


async def insert_capture(conn: Conn, c: dict[str, Any]) -> int:
    value: int = await conn.fetchval(
        INSERT_CAPTURE,
        c["page_key"],
        c["url"],
        c["viewport"],
        c["browser"],
        c["sha256"],
        c["path"],
        c["width"],
        c["height"],
        c["bytes"],
        c["full_page"],
        c.get("selector"),
        c.get("http_status"),
        c.get("thumb_path"),
        c.get("run_id"),
        c.get("step"),
    )
    return value


async def get_capture(conn: Conn, capture_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(GET_CAPTURE, capture_id)
    return dict(row) if row else None


async def latest_capture(conn: Conn, page_key: str, viewport: str | None, browser: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(LATEST_CAPTURE, page_key, viewport, browser)
    return dict(row) if row else None


# -------------------------------------------------------------------------------------- baselines

# Serialises baseline changes of one key across processes (two approvals at once keep one current).
LOCK_KEY = "SELECT pg_advisory_xact_lock(hashtext('ui_testing.baseline:' || $1))"
BASELINE_COLS = """b.id, b.page_key, b.viewport, b.browser, b.capture_id, c.path, c.sha256, b.is_current, b.note,
    b.created_at, b.replaced_at"""
CURRENT_BASELINE = f"""
SELECT {BASELINE_COLS} FROM ui_testing.baselines b JOIN ui_testing.captures c ON c.id = b.capture_id
WHERE b.page_key = $1 AND b.viewport = $2 AND b.browser = $3 AND b.is_current
"""
RETIRE_BASELINE = """
UPDATE ui_testing.baselines SET is_current = false, replaced_at = now()
WHERE page_key = $1 AND viewport = $2 AND browser = $3 AND is_current RETURNING id
"""
INSERT_BASELINE = """
INSERT INTO ui_testing.baselines (page_key, viewport, browser, capture_id, note) VALUES ($1, $2, $3, $4, $5)
RETURNING id
"""
GET_BASELINE = f"SELECT {BASELINE_COLS} FROM ui_testing.baselines b JOIN ui_testing.captures c ON c.id = b.capture_id WHERE b.id = $1"
LIST_BASELINES = f"""
SELECT {BASELINE_COLS}, count(*) OVER () AS total_rows
FROM ui_testing.baselines b JOIN ui_testing.captures c ON c.id = b.capture_id
WHERE ($1::text IS NULL OR b.page_key = $1) AND ($2::text IS NULL OR b.viewport = $2)
  AND (b.is_current OR $3::boolean)
ORDER BY b.page_key, b.viewport, b.id DESC LIMIT $4 OFFSET $5
"""
DELETE_BASELINES = """
DELETE FROM ui_testing.baselines WHERE page_key = $1 AND ($2::text IS NULL OR viewport = $2) RETURNING id
"""


async def lock_key(conn: asyncpg.Connection, key: str) -> None:
    await conn.execute(LOCK_KEY, key)


async def current_baseline(conn: Conn, page_key: str, viewport: str, browser: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(CURRENT_BASELINE, page_key, viewport, browser)
    return dict(row) if row else None


async def retire_baseline(conn: asyncpg.Connection, page_key: str, viewport: str, browser: str) -> int | None:
    value: int | None = await conn.fetchval(RETIRE_BASELINE, page_key, viewport, browser)
    return value


async def insert_baseline(
    conn: asyncpg.Connection, page_key: str, viewport: str, browser: str, capture_id: int, note: str | None
) -> int:
    value: int = await conn.fetchval(INSERT_BASELINE, page_key, viewport, browser, capture_id, note)
    return value


async def get_baseline(conn: Conn, baseline_id: int) -> dict[str, Any]:
    row = await conn.fetchrow(GET_BASELINE, baseline_id)
    assert row is not None
    return dict(row)


async def list_baselines(
    conn: Conn, page_key: str | None, viewport: str | None, history: bool, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    rows = [dict(r) for r in await conn.fetch(LIST_BASELINES, page_key, viewport, history, limit, offset)]
    return rows, int(rows[0]["total_rows"]) if rows else 0


async def delete_baselines(conn: asyncpg.Connection, page_key: str, viewport: str | None) -> int:
    return len(await conn.fetch(DELETE_BASELINES, page_key, viewport))


# ------------------------------------------------------------------------------------------- runs

INSERT_RUN = """
INSERT INTO ui_testing.runs (kind, page_key, viewport, check_id, check_name, job_id, status, summary, details,
    duration_ms, finished_at)
VALUES ($1, $2, $3, $4, $5, $6::uuid, $7, $8, $9::jsonb, $10, CASE WHEN $7 = 'running' THEN NULL ELSE now() END)
RETURNING id
"""
FINISH_RUN = """
UPDATE ui_testing.runs SET status = $2, summary = $3, details = $4::jsonb, duration_ms = $5, finished_at = now()
WHERE id = $1 AND status = 'running'
"""
GET_RUN = "SELECT * FROM ui_testing.runs WHERE id = $1"
LIST_RUNS = """
SELECT id, kind, status, page_key, check_name, summary, created_at, count(*) OVER () AS total_rows
FROM ui_testing.runs
WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR status = $2)
  AND ($3::text IS NULL OR page_key = $3 OR check_name = $3)
ORDER BY id DESC LIMIT $4 OFFSET $5
"""
LAST_PASSING_CHECK_RUN = """
SELECT * FROM ui_testing.runs WHERE check_id = $1 AND status = 'passed' AND id < $2 ORDER BY id DESC LIMIT 1
"""
MARK_INTERRUPTED = """
UPDATE ui_testing.runs r SET status = CASE WHEN j.status = 'cancelled' THEN 'cancelled' ELSE 'interrupted' END,
    summary = 'The process running this check stopped before it ended; run the check again.', finished_at = now()
FROM ui_testing.jobs j WHERE r.job_id = j.id AND r.status = 'running' AND j.status <> 'running'
RETURNING r.id
"""


async def insert_run(
    conn: Conn,
    *,
    kind: str,
    status: str,
    page_key: str | None = None,
    viewport: str | None = None,
    check_id: int | None = None,
    check_name: str | None = None,
    job_id: str | None = None,
    summary: str = "",
    details: dict[str, Any] | None = None,
    duration_ms: int | None = None,
) -> int:
    value: int = await conn.fetchval(
        INSERT_RUN,
        kind,
        page_key,
        viewport,
        check_id,
        check_name,
        job_id,
        status,
        summary,
        json.dumps(details or {}),
        duration_ms,
    )
    return value


async def finish_run(
    conn: Conn, run_id: int, status: str, summary: str, details: dict[str, Any], duration_ms: int
) -> None:
    await conn.execute(FINISH_RUN, run_id, status, summary, json.dumps(details), duration_ms)


def _run(row: asyncpg.Record | None) -> dict[str, Any] | None:
    values = decoded(row, "details")
    if values is not None and values.get("job_id") is not None:
        values["job_id"] = str(values["job_id"])
    return values


async def get_run(conn: Conn, run_id: int) -> dict[str, Any] | None:
    return _run(await conn.fetchrow(GET_RUN, run_id))


async def list_runs(
    conn: Conn,
    kind: str | None,
    status: str | None,
    key: str | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    rows = [dict(r) for r in await conn.fetch(LIST_RUNS, kind, status, key, limit, offset)]
    return rows, int(rows[0]["total_rows"]) if rows else 0


async def last_passing_check_run(conn: Conn, check_id: int, before_id: int) -> dict[str, Any] | None:
    return _run(await conn.fetchrow(LAST_PASSING_CHECK_RUN, check_id, before_id))


async def mark_interrupted(conn: Conn) -> list[int]:
    return [r["id"] for r in await conn.fetch(MARK_INTERRUPTED)]


# ----------------------------------------------------------------------------------------- audits

INSERT_AUDIT = """
INSERT INTO ui_testing.audits (page_key, url, viewport, tags, axe_version, by_impact, violations_total,
    passed_rules, incomplete_rules, run_id, step)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11) RETURNING id
"""
INSERT_VIOLATION = """
INSERT INTO ui_testing.violations (audit_id, rule, impact, help, help_url, selectors, nodes)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
GET_AUDIT = "SELECT * FROM ui_testing.audits WHERE id = $1"
AUDIT_VIOLATIONS = """
SELECT rule, impact, help, help_url, selectors, nodes FROM ui_testing.violations WHERE audit_id = $1
ORDER BY CASE impact WHEN 'critical' THEN 0 WHEN 'serious' THEN 1 WHEN 'moderate' THEN 2 WHEN 'minor' THEN 3 ELSE 4 END,
    nodes DESC, rule
"""
AUDIT_BASELINE = "SELECT audit_id FROM ui_testing.audit_baselines WHERE page_key = $1"
SET_AUDIT_BASELINE = """
INSERT INTO ui_testing.audit_baselines (page_key, audit_id) VALUES ($1, $2)
ON CONFLICT (page_key) DO UPDATE SET audit_id = EXCLUDED.audit_id, set_at = now()
"""
SET_AUDIT_BASELINE_IF_NONE = """
INSERT INTO ui_testing.audit_baselines (page_key, audit_id) VALUES ($1, $2) ON CONFLICT (page_key) DO NOTHING
"""
SET_RUN_DETAILS = "UPDATE ui_testing.runs SET details = details || $2::jsonb WHERE id = $1"


async def insert_audit(conn: asyncpg.Connection, a: dict[str, Any], violations: list[dict[str, Any]]) -> int:
    audit_id: int = await conn.fetchval(
        INSERT_AUDIT,
        a["page_key"],
        a["url"],
        a["viewport"],
        a["tags"],
        a.get("axe_version"),
        json.dumps(a["by_impact"]),
        a["violations_total"],
        a["passed_rules"],
        a["incomplete_rules"],
        a.get("run_id"),
        a.get("step"),
    )
    await conn.executemany(
        INSERT_VIOLATION,
        [(audit_id, v["rule"], v["impact"], v["help"], v["help_url"], v["selectors"], v["nodes"]) for v in violations],
    )
    return audit_id


async def get_audit(conn: Conn, audit_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    row = await conn.fetchrow(GET_AUDIT, audit_id)
    if row is None:
        return None
    values = dict(row)
    if isinstance(values["by_impact"], str):
        values["by_impact"] = json.loads(values["by_impact"])
    return values, [dict(r) for r in await conn.fetch(AUDIT_VIOLATIONS, audit_id)]


async def audit_baseline(conn: Conn, page_key: str) -> int | None:
    value: int | None = await conn.fetchval(AUDIT_BASELINE, page_key)
    return value


async def set_audit_baseline(conn: Conn, page_key: str, audit_id: int, *, only_if_none: bool) -> None:
    await conn.execute(SET_AUDIT_BASELINE_IF_NONE if only_if_none else SET_AUDIT_BASELINE, page_key, audit_id)


async def set_run_details(conn: Conn, run_id: int, details: dict[str, Any]) -> None:
    await conn.execute(SET_RUN_DETAILS, run_id, json.dumps(details))


# ----------------------------------------------------------------------------------------- checks

UPSERT_CHECK = """
INSERT INTO ui_testing.checks (name, scenario) VALUES ($1, $2::jsonb)
ON CONFLICT (name) DO UPDATE SET scenario = EXCLUDED.scenario, updated_at = now()
RETURNING id, (xmax = 0) AS created
"""
GET_CHECK = "SELECT id, name, scenario, created_at, updated_at FROM ui_testing.checks WHERE name = $1"
DELETE_CHECK = "DELETE FROM ui_testing.checks WHERE name = $1 RETURNING id"
LIST_CHECKS = """
SELECT c.id, c.name, c.scenario, c.updated_at, count(*) OVER () AS total_rows,
    (SELECT string_agg(upper(left(s.status, 1)), '' ORDER BY s.id) FROM (
        SELECT id, status FROM ui_testing.runs r WHERE r.check_id = c.id AND r.status <> 'running'
        ORDER BY id DESC LIMIT 10) s) AS trend,
    (SELECT r.id FROM ui_testing.runs r WHERE r.check_id = c.id ORDER BY r.id DESC LIMIT 1) AS last_run_id,
    (SELECT r.status FROM ui_testing.runs r WHERE r.check_id = c.id ORDER BY r.id DESC LIMIT 1) AS last_status
FROM ui_testing.checks c WHERE ($1::text IS NULL OR c.name = $1)
ORDER BY c.name LIMIT $2 OFFSET $3
"""


async def upsert_check(conn: Conn, name: str, scenario: dict[str, Any]) -> tuple[int, bool]:
    row = await conn.fetchrow(UPSERT_CHECK, name, json.dumps(scenario))
    assert row is not None
    return int(row["id"]), bool(row["created"])


async def get_check(conn: Conn, name: str) -> dict[str, Any] | None:
    return decoded(await conn.fetchrow(GET_CHECK, name), "scenario")


async def delete_check(conn: Conn, name: str) -> int | None:
    value: int | None = await conn.fetchval(DELETE_CHECK, name)
    return value


async def list_checks(conn: Conn, name: str | None, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    rows = [decoded(r, "scenario") or {} for r in await conn.fetch(LIST_CHECKS, name, limit, offset)]
    return rows, int(rows[0]["total_rows"]) if rows else 0


# ----------------------------------------------------------------------------------------- report

PAGE_STATUS = """
WITH keys AS (
    SELECT page_key, max(created_at) AS last_at FROM ui_testing.runs
    WHERE kind IN ('compare', 'audit') AND page_key IS NOT NULL AND status <> 'running' GROUP BY page_key
)
SELECT k.page_key, k.last_at, count(*) OVER () AS total_rows,
    (SELECT json_build_object('status', r.status, 'ratio', r.details->'changed_ratio') FROM ui_testing.runs r
     WHERE r.page_key = k.page_key AND r.kind = 'compare' ORDER BY r.id DESC LIMIT 1) AS visual,
    (SELECT json_build_object('new', r.details->'new_total', 'total', r.details->'violations_total')
     FROM ui_testing.runs r WHERE r.page_key = k.page_key AND r.kind = 'audit' ORDER BY r.id DESC LIMIT 1) AS a11y
FROM keys k
ORDER BY k.page_key LIMIT $1 OFFSET $2
"""


async def page_status(conn: Conn, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    rows = []
    for r in await conn.fetch(PAGE_STATUS, limit, offset):
        values = dict(r)
        for name in ("visual", "a11y"):
            if isinstance(values[name], str):
                values[name] = json.loads(values[name])
        rows.append(values)
    return rows, int(rows[0]["total_rows"]) if rows else 0


RUN_CAPTURES = "SELECT id, step, path, sha256 FROM ui_testing.captures WHERE run_id = $1 AND step IS NOT NULL"
RUN_AUDITS = "SELECT id, step FROM ui_testing.audits WHERE run_id = $1 AND step IS NOT NULL"


async def run_captures(conn: Conn, run_id: int) -> dict[int, dict[str, Any]]:
    return {int(r["step"]): dict(r) for r in await conn.fetch(RUN_CAPTURES, run_id)}


async def run_audits(conn: Conn, run_id: int) -> dict[int, int]:
    return {int(r["step"]): int(r["id"]) for r in await conn.fetch(RUN_AUDITS, run_id)}


RUNNING_CHECK_JOB = """
SELECT job_id::text FROM ui_testing.runs WHERE check_name = $1 AND kind = 'check' AND status = 'running'
ORDER BY id DESC LIMIT 1
"""


async def running_check_job(conn: Conn, name: str) -> str | None:
    value: str | None = await conn.fetchval(RUNNING_CHECK_JOB, name)
    return value


FAILING_KEYS = """
WITH latest AS (
    SELECT DISTINCT ON (page_key, kind) page_key, kind, status FROM ui_testing.runs
    WHERE kind IN ('compare', 'audit') AND page_key IS NOT NULL AND status <> 'running'
    ORDER BY page_key, kind, id DESC
)
SELECT count(DISTINCT page_key) FROM latest WHERE status <> 'passed'
"""


async def failing_keys(conn: Conn) -> int:
    """Page keys whose latest comparison or latest audit did not pass."""
    return int(await conn.fetchval(FAILING_KEYS))


# -------------------------------------------------------------------------------------- retention

#: Captures no baseline points at, older than the grace period, that are neither among the newest
#: $1 page captures of their (page key, viewport, browser) nor made by one of the newest $2 runs of
#: their check or by its last passing run (what vs_last_pass compares with).
PRUNE_CAPTURES = """
WITH check_runs AS (
    SELECT id, status, row_number() OVER (PARTITION BY coalesce(check_name, '') ORDER BY id DESC) AS rn,
        max(id) FILTER (WHERE status = 'passed') OVER (PARTITION BY coalesce(check_name, '')) AS last_pass
    FROM ui_testing.runs WHERE kind = 'check'
), page_caps AS (
    SELECT c.id, row_number() OVER (PARTITION BY c.page_key, c.viewport, c.browser ORDER BY c.id DESC) AS rn
    FROM ui_testing.captures c
    WHERE c.run_id IS NULL OR c.run_id NOT IN (SELECT id FROM check_runs)
)
DELETE FROM ui_testing.captures c
WHERE c.created_at < now() - make_interval(secs => $3)
  AND NOT EXISTS (SELECT 1 FROM ui_testing.baselines b WHERE b.capture_id = c.id)
  AND (
    c.id IN (SELECT id FROM page_caps WHERE rn > $1)
    OR c.run_id IN (SELECT id FROM check_runs WHERE rn > $2 AND id IS DISTINCT FROM last_pass)
  )
RETURNING c.id
"""
#: Comparison runs beyond the newest $1 of their page key and viewport lose their diff image.
PRUNE_DIFFS = """
UPDATE ui_testing.runs r SET details = r.details - 'diff_path'
FROM (
    SELECT id, row_number() OVER (PARTITION BY page_key, viewport ORDER BY id DESC) AS rn
    FROM ui_testing.runs WHERE kind = 'compare' AND details ? 'diff_path'
) ranked
WHERE r.id = ranked.id AND ranked.rn > $1 AND r.created_at < now() - make_interval(secs => $2)
RETURNING r.id
"""
REFERENCED_IMAGES = """
SELECT path FROM ui_testing.captures
UNION SELECT thumb_path FROM ui_testing.captures WHERE thumb_path IS NOT NULL
UNION SELECT details->>'diff_path' FROM ui_testing.runs WHERE details ? 'diff_path'
"""


async def prune_captures(conn: Conn, keep_captures: int, keep_runs: int, grace_s: float) -> int:
    return len(await conn.fetch(PRUNE_CAPTURES, keep_captures, keep_runs, grace_s))


async def prune_diffs(conn: Conn, keep: int, grace_s: float) -> int:
    return len(await conn.fetch(PRUNE_DIFFS, keep, grace_s))


async def referenced_images(conn: Conn) -> set[str]:
    return {r[0] for r in await conn.fetch(REFERENCED_IMAGES) if r[0]}
