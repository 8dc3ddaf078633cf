"""Every SQL statement on schema ``web_access``. Plain async functions on a connection or the Database."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from common.db import Database
from common.rows import decoded

Conn = asyncpg.Connection | Database

# ------------------------------------------------------------------------------------- pages

# DO UPDATE (not DO NOTHING) locks an existing row, so a concurrent retention sweep cannot delete
# the body between this statement and the page row that refers to it.
PUT_BODY = """INSERT INTO web_access.bodies (sha256, body, size) VALUES ($1, $2, $3)
ON CONFLICT (sha256) DO UPDATE SET size = EXCLUDED.size"""
GET_BODY = "SELECT body FROM web_access.bodies WHERE sha256 = $1"
PUT_DOCUMENT = """INSERT INTO web_access.documents
    (body_sha256, mode, kind, format, title, extractor, notes, content, chars)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9) ON CONFLICT (body_sha256, mode) DO NOTHING"""
GET_DOCUMENT = """SELECT kind, format, title, extractor, notes, content, chars FROM web_access.documents
WHERE body_sha256 = $1 AND mode = $2"""
PAGE_COLS = """id, url, final_url, status, content_type, body_sha256, rendered_sha256, byte_size, storable,
    fetched_at, checked_at, downloads, revalidations"""
GET_PAGE_BY_URL = f"SELECT {PAGE_COLS} FROM web_access.pages WHERE url = $1"
GET_PAGE = f"SELECT {PAGE_COLS} FROM web_access.pages WHERE id = $1"
# The body and the page in one statement (one round trip); $9 is 1 for a download and 0 when a page
# is taken from an HTTP entry another process stored.
UPSERT_PAGE = f"""WITH body AS (
    INSERT INTO web_access.bodies (sha256, body, size) VALUES ($5, $10::bytea, octet_length($10::bytea))
    ON CONFLICT (sha256) DO UPDATE SET size = EXCLUDED.size RETURNING sha256
)
INSERT INTO web_access.pages (url, final_url, status, content_type, body_sha256, byte_size,
    storable, fetched_at, checked_at, downloads)
SELECT $1::text, $2::text, $3::integer, $4::text, body.sha256, $6::bigint, $7::boolean, $8::timestamptz,
    $8::timestamptz, $9::integer
FROM body
ON CONFLICT (url) DO UPDATE SET final_url = EXCLUDED.final_url, status = EXCLUDED.status,
    content_type = EXCLUDED.content_type, body_sha256 = EXCLUDED.body_sha256,
    rendered_sha256 = CASE WHEN pages.body_sha256 = EXCLUDED.body_sha256 THEN pages.rendered_sha256 END,
    byte_size = EXCLUDED.byte_size, storable = EXCLUDED.storable,
    fetched_at = EXCLUDED.fetched_at, checked_at = EXCLUDED.checked_at,
    downloads = pages.downloads + $9
RETURNING {PAGE_COLS}"""
REFRESH_PAGE = f"""UPDATE web_access.pages SET checked_at = $2, revalidations = revalidations + 1
WHERE id = $1 RETURNING {PAGE_COLS}"""
SET_RENDERED = "UPDATE web_access.pages SET rendered_sha256 = $2 WHERE id = $1"


def _page(row: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(row) if row is not None else None


async def put_body(conn: Conn, sha256: str, body: bytes) -> None:
    await conn.execute(PUT_BODY, sha256, body, len(body))


async def get_body(db: Conn, sha256: str) -> bytes | None:
    value: bytes | None = await db.fetchval(GET_BODY, sha256)
    return value


async def put_document(conn: Conn, sha256: str, mode: str, doc: dict[str, Any]) -> None:
    await conn.execute(
        PUT_DOCUMENT, sha256, mode, doc["kind"], doc["format"], doc["title"], doc["extractor"],
        json.dumps(doc["notes"]), doc["content"], len(doc["content"]),
    )  # fmt: skip


async def get_document(db: Conn, sha256: str, mode: str) -> dict[str, Any] | None:
    return decoded(await db.fetchrow(GET_DOCUMENT, sha256, mode), "notes")


async def get_page_by_url(db: Conn, url: str) -> dict[str, Any] | None:
    return _page(await db.fetchrow(GET_PAGE_BY_URL, url))


async def get_page(db: Conn, page_id: int) -> dict[str, Any] | None:
    return _page(await db.fetchrow(GET_PAGE, page_id))


async def upsert_page(
    conn: Conn, *, url: str, final_url: str, status: int, content_type: str | None, sha256: str, body: bytes,
    storable: bool, at: datetime, download: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """The page row of ``url`` with its body (stored once per ``sha256``)."""
    row = await conn.fetchrow(
        UPSERT_PAGE, url, final_url, status, content_type, sha256, len(body), storable, at, 1 if download else 0, body
    )
    out = _page(row)
    assert out is not None
    return out


async def refresh_page(conn: Conn, page_id: int, at: datetime) -> dict[str, Any] | None:
    return _page(await conn.fetchrow(REFRESH_PAGE, page_id, at))


async def set_rendered(conn: Conn, page_id: int, sha256: str) -> None:
    await conn.execute(SET_RENDERED, page_id, sha256)


# ------------------------------------------------------------------------------------- HTTP entries (hishel)

ENTRY_COLS = """id, key, method, url, request_headers, status, response_headers, body_sha256, stored_at, used_at,
    ttl_deadline, tti_s, expires_at"""
# The body and the entry in one statement. One entry per key and method: a new response replaces the
# stored one (and gets the new id).
PUT_ENTRY = f"""WITH body AS (
    INSERT INTO web_access.bodies (sha256, body, size) VALUES ($8, $13::bytea, octet_length($13::bytea))
    ON CONFLICT (sha256) DO UPDATE SET size = EXCLUDED.size RETURNING sha256
)
INSERT INTO web_access.http_entries ({ENTRY_COLS})
SELECT $1::uuid, $2::text, $3::text, $4::text, $5::jsonb, $6::integer, $7::jsonb, body.sha256, $9::timestamptz,
    $9::timestamptz, $10::timestamptz, $11::float8, $12::timestamptz
FROM body
ON CONFLICT (key, method) DO UPDATE SET id = EXCLUDED.id, url = EXCLUDED.url,
    request_headers = EXCLUDED.request_headers, status = EXCLUDED.status,
    response_headers = EXCLUDED.response_headers, body_sha256 = EXCLUDED.body_sha256,
    stored_at = EXCLUDED.stored_at, used_at = EXCLUDED.used_at, ttl_deadline = EXCLUDED.ttl_deadline,
    tti_s = EXCLUDED.tti_s, expires_at = EXCLUDED.expires_at"""
GET_ENTRIES = """SELECT e.id, e.method, e.url, e.request_headers, e.status, e.response_headers, e.used_at,
    e.ttl_deadline, e.tti_s, e.expires_at, e.body_sha256
FROM web_access.http_entries e
WHERE e.key = $1 AND (e.expires_at IS NULL OR e.expires_at > $2)"""
# The expiry condition keeps a touch from bringing back an entry that expired or was removed meanwhile.
TOUCH_ENTRY = """UPDATE web_access.http_entries SET used_at = $2, expires_at = $3
WHERE id = $1 AND (expires_at IS NULL OR expires_at > $2)"""
SET_ENTRY_HEADERS = "UPDATE web_access.http_entries SET response_headers = $2::jsonb, used_at = $3 WHERE id = $1"
DELETE_ENTRY = "DELETE FROM web_access.http_entries WHERE id = $1"


async def put_entry(
    conn: Conn, *, id: uuid.UUID, key: str, method: str, url: str, request_headers: dict[str, list[str]],
    status: int, response_headers: dict[str, list[str]], sha256: str, body: bytes, at: datetime,
    ttl_deadline: datetime | None, tti_s: float | None, expires_at: datetime | None,
) -> None:  # fmt: skip
    """An HTTP entry with its body (stored once per ``sha256``), replacing the one of its key and method."""
    await conn.execute(
        PUT_ENTRY, id, key, method, url, json.dumps(request_headers), status, json.dumps(response_headers), sha256,
        at, ttl_deadline, tti_s, expires_at, body,
    )  # fmt: skip


async def get_entries(db: Conn, key: str, now: datetime) -> list[dict[str, Any]]:
    return [
        d for r in await db.fetch(GET_ENTRIES, key, now) if (d := decoded(r, "request_headers", "response_headers"))
    ]


async def touch_entry(db: Conn, entry_id: uuid.UUID, now: datetime, expires_at: datetime | None) -> bool:
    """Whether the entry was still there to touch."""
    return (await db.execute(TOUCH_ENTRY, entry_id, now, expires_at)).split()[-1] != "0"


async def set_entry_headers(db: Conn, entry_id: uuid.UUID, headers: dict[str, list[str]], now: datetime) -> None:
    await db.execute(SET_ENTRY_HEADERS, entry_id, json.dumps(headers), now)


async def delete_entry(db: Conn, entry_id: uuid.UUID) -> None:
    await db.execute(DELETE_ENTRY, entry_id)


# ------------------------------------------------------------------------------------- usage

INSERT_REQUEST = """INSERT INTO web_access.requests (provider, host, outcome, status, bytes, latency_ms, error)
VALUES ($1, $2, $3, $4, $5, $6, $7)"""
INSERT_REQUEST_AT = """INSERT INTO web_access.requests (provider, host, outcome, status, bytes, latency_ms, error, at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"""
COUNT_TODAY = """SELECT count(*) FROM web_access.requests
WHERE provider = $1 AND outcome <> 'cache' AND outcome <> 'refused' AND at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"""
USAGE_REPORT = """SELECT (at AT TIME ZONE 'UTC')::date AS day, provider,
    count(*) FILTER (WHERE outcome IN ('network', 'revalidated', 'error')) AS requests,
    count(*) FILTER (WHERE outcome = 'cache') AS cache_hits,
    count(*) FILTER (WHERE outcome = 'revalidated') AS revalidated,
    count(*) FILTER (WHERE outcome = 'error') AS errors,
    count(*) FILTER (WHERE outcome = 'refused') AS refused,
    coalesce(sum(bytes), 0)::bigint AS bytes,
    coalesce(avg(latency_ms) FILTER (WHERE outcome <> 'cache'), 0)::float8 AS avg_latency_ms,
    count(DISTINCT host) AS hosts
FROM web_access.requests
WHERE at >= now() - make_interval(days => $1) AND ($2::text IS NULL OR provider = $2)
GROUP BY 1, 2 ORDER BY 1 DESC, 2 LIMIT $3 OFFSET $4"""
USAGE_REPORT_COUNT = """SELECT count(*) FROM (SELECT 1 FROM web_access.requests
WHERE at >= now() - make_interval(days => $1) AND ($2::text IS NULL OR provider = $2)
GROUP BY (at AT TIME ZONE 'UTC')::date, provider) AS g"""
TOP_HOSTS = """SELECT host, count(*) AS requests, coalesce(sum(bytes), 0)::bigint AS bytes
FROM web_access.requests WHERE at >= now() - make_interval(days => $1) AND ($2::text IS NULL OR provider = $2)
    AND outcome <> 'cache'
GROUP BY host ORDER BY 2 DESC, host LIMIT $3"""


async def insert_request(
    db: Conn, provider: str, host: str, outcome: str, status: int | None, size: int, latency_ms: int, error: str | None
) -> None:
    await db.execute(INSERT_REQUEST, provider, host, outcome, status, size, latency_ms, error)


async def insert_requests(db: Database, rows: list[tuple[Any, ...]]) -> None:
    """Ledger rows (provider, host, outcome, status, bytes, latency_ms, error, at) in one transaction."""
    await db.executemany(INSERT_REQUEST_AT, rows)


async def count_today(db: Conn, provider: str) -> int:
    return int(await db.fetchval(COUNT_TODAY, provider))


async def usage_report(
    db: Conn, days: int, provider: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    rows = [dict(r) for r in await db.fetch(USAGE_REPORT, days, provider, limit, offset)]
    total = int(await db.fetchval(USAGE_REPORT_COUNT, days, provider))
    return rows, total


async def top_hosts(db: Conn, days: int, provider: str | None, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(TOP_HOSTS, days, provider, limit)]


# ------------------------------------------------------------------------------------- search

INSERT_SEARCH = """INSERT INTO web_access.searches (query, provider, result_count, latency_ms, summary, embedding, model)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id, created_at"""
INSERT_RESULT = """INSERT INTO web_access.search_results (search_id, rank, title, url, snippet)
VALUES ($1, $2, $3, $4, $5) RETURNING id"""
SEARCH_COLS = "s.id, s.query, s.provider, s.result_count, s.latency_ms, s.created_at"
RECENT_SEARCHES = f"""SELECT {SEARCH_COLS}, count(*) OVER () AS total FROM web_access.searches s
ORDER BY s.created_at DESC, s.id DESC LIMIT $1 OFFSET $2"""
SEARCHES_BY_VECTOR = """SELECT id FROM web_access.searches WHERE embedding IS NOT NULL AND model = $2
ORDER BY embedding <=> $1 LIMIT $3"""
SEARCHES_BY_KEYWORD = """SELECT id FROM web_access.searches WHERE tsv @@ to_tsquery('english', $1)
ORDER BY ts_rank(tsv, to_tsquery('english', $1)) DESC, id DESC LIMIT $2"""
SEARCHES_BY_ID = f"SELECT {SEARCH_COLS} FROM web_access.searches s WHERE s.id = ANY($1::bigint[])"
RESULTS_OF = """SELECT id, search_id, rank, title, url, snippet FROM web_access.search_results
WHERE search_id = ANY($1::bigint[]) ORDER BY search_id, rank"""
GET_RESULT = "SELECT id, search_id, rank, title, url, snippet FROM web_access.search_results WHERE id = $1"


async def insert_search(
    conn: asyncpg.Connection, query: str, provider: str, latency_ms: int, summary: str,
    embedding: list[float] | None, model: str | None, results: list[tuple[str, str, str]],
) -> tuple[int, datetime, list[int]]:  # fmt: skip
    row = await conn.fetchrow(INSERT_SEARCH, query, provider, len(results), latency_ms, summary, embedding, model)
    assert row is not None
    ids = []
    for rank, (title, url, snippet) in enumerate(results, start=1):
        ids.append(int(await conn.fetchval(INSERT_RESULT, row["id"], rank, title, url, snippet)))
    return int(row["id"]), row["created_at"], ids


async def recent_searches(db: Conn, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    rows = [dict(r) for r in await db.fetch(RECENT_SEARCHES, limit, offset)]
    total = int(rows[0]["total"]) if rows else 0
    return rows, total


async def searches_by_vector(db: Conn, vector: list[float], model: str, limit: int) -> list[int]:
    return [int(r["id"]) for r in await db.fetch(SEARCHES_BY_VECTOR, vector, model, limit)]


async def searches_by_keyword(db: Conn, tsquery: str, limit: int) -> list[int]:
    return [int(r["id"]) for r in await db.fetch(SEARCHES_BY_KEYWORD, tsquery, limit)]


async def searches_by_id(db: Conn, ids: list[int]) -> dict[int, dict[str, Any]]:
    return {int(r["id"]): dict(r) for r in await db.fetch(SEARCHES_BY_ID, ids)}


async def results_of(db: Conn, search_ids: list[int]) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(RESULTS_OF, search_ids)]


async def get_result(db: Conn, result_id: int) -> dict[str, Any] | None:
    row = await db.fetchrow(GET_RESULT, result_id)
    return dict(row) if row else None


# ------------------------------------------------------------------------------------- crawl

ENQUEUE = """INSERT INTO web_access.crawl_pages (job_id, url, depth) SELECT $1::uuid, u, $3
FROM unnest($2::text[]) AS u ON CONFLICT (job_id, url) DO NOTHING"""
ENQUEUE_DONE = """INSERT INTO web_access.crawl_pages (job_id, url, depth, state, reason) VALUES ($1::uuid, $2, $3, $4, $5)
ON CONFLICT (job_id, url) DO NOTHING"""
NEXT_QUEUED = """SELECT url, depth FROM web_access.crawl_pages WHERE job_id = $1::uuid AND state = 'queued'
ORDER BY seq LIMIT $2"""
MARK = """UPDATE web_access.crawl_pages SET state = $3, reason = $4, http_status = $5, page_id = $6, title = $7,
    updated_at = now() WHERE job_id = $1::uuid AND url = $2"""
CRAWL_COUNTS = """SELECT state, count(*) AS n FROM web_access.crawl_pages WHERE job_id = $1::uuid GROUP BY state"""
CRAWL_LIST = """SELECT url, depth, state, reason, http_status, page_id, title, count(*) OVER () AS total
FROM web_access.crawl_pages WHERE job_id = $1::uuid AND ($2::text IS NULL OR state = $2)
ORDER BY seq LIMIT $3 OFFSET $4"""
CRAWL_HAS = "SELECT count(*) FROM web_access.crawl_pages WHERE job_id = $1::uuid"


async def enqueue(conn: Conn, job_id: str, urls: list[str], depth: int) -> None:
    await conn.execute(ENQUEUE, job_id, urls, depth)


async def enqueue_done(conn: Conn, job_id: str, url: str, depth: int, state: str, reason: str) -> None:
    await conn.execute(ENQUEUE_DONE, job_id, url, depth, state, reason)


async def next_queued(db: Conn, job_id: str, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(NEXT_QUEUED, job_id, limit)]


async def mark(
    conn: Conn, job_id: str, url: str, state: str, reason: str | None, status: int | None, page_id: int | None,
    title: str | None,
) -> None:  # fmt: skip
    await conn.execute(MARK, job_id, url, state, reason, status, page_id, title)


async def crawl_counts(db: Conn, job_id: str) -> dict[str, int]:
    return {r["state"]: int(r["n"]) for r in await db.fetch(CRAWL_COUNTS, job_id)}


async def crawl_list(
    db: Conn, job_id: str, state: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    rows = [dict(r) for r in await db.fetch(CRAWL_LIST, job_id, state, limit, offset)]
    total = int(rows[0]["total"]) if rows else 0
    return rows, total


async def crawl_size(db: Conn, job_id: str) -> int:
    return int(await db.fetchval(CRAWL_HAS, job_id))


# ------------------------------------------------------------------------------------- screenshots

INSERT_SCREENSHOT = """INSERT INTO web_access.screenshots (sha256, url, full_page, width, height, bytes, path, thumb_path)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, created_at"""


async def insert_screenshot(
    db: Conn, sha256: str, url: str, full_page: bool, width: int, height: int, size: int, path: str, thumb: str
) -> tuple[int, datetime]:
    row = await db.fetchrow(INSERT_SCREENSHOT, sha256, url, full_page, width, height, size, path, thumb)
    assert row is not None
    return int(row["id"]), row["created_at"]


# ------------------------------------------------------------------------------------- retention

# A page deleted takes the HTTP entries of its URL and final URL with it; an entry also goes when it
# expired (its storage TTL/TTI) or went unused for as long as a page may go unchecked.
DELETE_OLD_PAGES_AND_ENTRIES = """WITH gone AS (
    DELETE FROM web_access.pages WHERE checked_at < now() - make_interval(days => $1) RETURNING url, final_url
), dropped AS (
    DELETE FROM web_access.http_entries e
    WHERE e.expires_at < now() OR e.used_at < now() - make_interval(days => $1)
        OR e.url IN (SELECT url FROM gone UNION SELECT final_url FROM gone)
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS pages, (SELECT count(*) FROM dropped) AS entries"""
DELETE_ORPHAN_BODIES = """DELETE FROM web_access.bodies b WHERE b.created_at < now() - interval '1 hour'
    AND NOT EXISTS (SELECT 1 FROM web_access.pages p WHERE p.body_sha256 = b.sha256 OR p.rendered_sha256 = b.sha256)
    AND NOT EXISTS (SELECT 1 FROM web_access.http_entries e WHERE e.body_sha256 = b.sha256)"""
DELETE_OLD_REQUESTS = "DELETE FROM web_access.requests WHERE at < now() - make_interval(days => $1)"


async def sweep(conn: Conn, page_days: int, usage_days: int) -> tuple[int, int, int, int]:
    """Delete pages unchecked for ``page_days`` (with their HTTP entries), unused or expired HTTP entries,
    bodies nothing uses, ledger rows older than ``usage_days``: (pages, entries, bodies, requests)."""
    row = await conn.fetchrow(DELETE_OLD_PAGES_AND_ENTRIES, page_days)
    assert row is not None
    bodies = int((await conn.execute(DELETE_ORPHAN_BODIES)).split()[-1])
    requests = int((await conn.execute(DELETE_OLD_REQUESTS, usage_days)).split()[-1])
    return int(row["pages"]), int(row["entries"]), bodies, requests


# --- store model switch ----------------------------------------------------------------------------

#: A past search is embedded from its query and its first three results' titles (as search() does).
OTHER_MODEL_SEARCHES = """
SELECT s.id, s.query, ARRAY(SELECT r.title FROM web_access.search_results r WHERE r.search_id = s.id
                            ORDER BY r.rank LIMIT 3) AS titles
FROM web_access.searches s WHERE s.model IS DISTINCT FROM $1 ORDER BY s.id LIMIT $2
"""
SET_SEARCH_VECTOR = "UPDATE web_access.searches SET embedding = $2, model = $3 WHERE id = $1"


async def other_model_searches(db: Database, model: str, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(OTHER_MODEL_SEARCHES, model, limit)]


async def set_search_vectors(db: Database, rows: list[tuple[int, list[float]]], model: str) -> None:
    await db.executemany(SET_SEARCH_VECTOR, [(sid, v, model) for sid, v in rows])
