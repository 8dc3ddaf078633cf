"""A dataset from PostgreSQL: one read-only SELECT on a configured connection, its rows kept as Parquet.

The statement must start like a query, is prepared (a prepared statement holds exactly one
command) and runs in a READ ONLY, REPEATABLE READ transaction with ``statement_timeout`` set; the
whole fetch is also bounded on the client side. The connecting role should be read-only as well:
a READ ONLY transaction still lets a SELECT call functions with effects outside the database.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import asyncpg

from common.errors import InvalidInput, shown

_QUERY_START = re.compile(r"^\s*(\(\s*)*(select|with|values|table)\b", re.IGNORECASE)
_SQL_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
MAX_SQL_CHARS = 20_000


def check_query(sql: str) -> None:
    """Refuse text that does not even start like a query (PostgreSQL enforces the rest)."""
    if len(sql) > MAX_SQL_CHARS:
        raise InvalidInput(f"sql is over {MAX_SQL_CHARS} characters")
    if not _QUERY_START.match(_SQL_COMMENT.sub(" ", sql)):
        raise InvalidInput("sql must be exactly one SELECT (or WITH ... SELECT) statement")


async def _rows(
    conn: asyncpg.Connection, sql: str, max_rows: int, timeout_s: float
) -> tuple[list[str], list[list[Any]]]:
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        await conn.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
        stmt = await conn.prepare(sql)
        names = [a.name for a in stmt.get_attributes()]
        if len(set(names)) != len(names):
            raise InvalidInput("the query's result has duplicate column names; alias them")
        columns: list[list[Any]] = [[] for _ in names]
        n = 0
        async for rec in stmt.cursor(prefetch=2000):
            n += 1
            if n > max_rows:
                raise InvalidInput(
                    f"the query returns more than {max_rows} rows; add a LIMIT or raise ANALYTICS_FETCH_MAX_ROWS"
                )
            for i, v in enumerate(rec):
                columns[i].append(v)
    return names, columns


def _arrow_column(values: list[Any]) -> Any:
    import pyarrow as pa  # heavy: only a PostgreSQL fetch needs it

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        # Types Arrow cannot hold as they are (uuid, intervals, ranges, mixed) are kept as their text.
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def write_parquet(path: Path, names: list[str], columns: list[list[Any]]) -> int:
    """Write the columns to ``path`` all at once (temp file, rename); the number of rows."""
    import pyarrow as pa  # heavy: only a PostgreSQL fetch needs it
    import pyarrow.parquet as pq

    table = pa.table({n: _arrow_column(c) for n, c in zip(names, columns, strict=True)})
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return int(table.num_rows)


async def fetch_to_parquet(url: str, label: str, sql: str, target: Path, *, max_rows: int, timeout_s: float) -> Path:
    """Run ``sql`` on ``url`` (named ``label`` in errors) and write its rows to ``target``."""
    check_query(sql)
    try:
        conn = await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise InvalidInput(f"cannot connect to {shown(label)}: {type(exc).__name__}") from None
    try:
        # The client-side bound holds even if the server's timeout were lifted inside the query.
        with anyio.fail_after(timeout_s * 1.5 + 1):
            names, columns = await _rows(conn, sql, max_rows, timeout_s)
    except TimeoutError:
        raise InvalidInput(f"the PostgreSQL query ran longer than {timeout_s:g} s and was stopped") from None
    except asyncpg.PostgresError as exc:
        message = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise InvalidInput(f"PostgreSQL refused the query: {message}") from None
    finally:
        conn.terminate()
    await anyio.to_thread.run_sync(lambda: write_parquet(target, names, columns))
    return target
