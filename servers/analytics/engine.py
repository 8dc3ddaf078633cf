"""A read-only SQL engine over registered datasets: DuckDB in memory, locked-down connections reused.

Two guards, both required (each alone leaves a hole the other closes):

1. The connection. ``allowed_paths`` lists exactly the registered files, the dataset views are
   created, then ``enable_external_access = false`` and ``lock_configuration = true``; extension
   autoload/autoinstall, Python replacement scans and disk spilling are off. Nothing else on disk
   (not even a file in the same folder) can be read, and no setting can be changed back.
2. The parsed statement. DuckDB's own parser (``json_serialize_sql``) turns the text into an AST,
   which must hold exactly one SELECT; every query node anywhere (CTE bodies included) must be a
   SELECT, set operation or recursive CTE, every table reference a registered view or a CTE in
   scope, every table function one of ``SAFE_TABLE_FUNCTIONS`` and no function may be in
   ``DENIED_FUNCTIONS``. That is a deny-list for scalar functions (DuckDB has ~1000 and new versions
   add more, so an allow-list would refuse ordinary SQL); the denied ones reveal the environment
   (settings, home directory, variables, versions, catalog, query text) or have side effects (log,
   sequences), plus every macro whose body reads the catalog (a test keeps that true as DuckDB
   changes). Table functions, which are where files, URLs, settings and nested SQL live, are an
   allow-list instead. ``allowed_paths`` still permits writing the registered files themselves
   (``COPY ... TO`` inside an allowed directory is let through), which is why layer 2 is required.

Reuse: a :class:`ConnectionPool` keeps locked connections between calls, one key per exact set of
datasets (name, path, format, sheet, file fingerprint) and engine settings, so a connection only
ever reaches the files its key names and a changed file gets a new connection. One thread uses a
connection at a time. Nothing a query leaves behind survives into the next: guard 2 admits only a
SELECT (no temporary tables, ``SET``, variables, prepared statements or sequences) and denies the
functions with connection state (``setseed``); the timeout's interrupt can only reach the query it
was armed for.

Paging: every page re-runs the query, so the order must be total and the same each time. A query
without a top-level ORDER BY is ordered by all its columns (``ORDER BY ALL``, the same as ``ORDER BY
1, 2, ..., k``); one with an ORDER BY keeps it and gets the column positions appended as tie-breakers
(rewritten in the AST, rendered back by ``json_deserialize_sql``). Rows equal in every column are
indistinguishable, so each page boundary is exact and every row is returned once. The result's
columns come from the page itself; only a query with an ORDER BY whose width the text does not fix
(a star, ``COLUMNS``, an unnest, a set operation) is described first, once per text and key.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import heapq
import itertools
import json
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from common.errors import InvalidInput, NotFound, QueryTimeout
from servers.analytics.sources import Dataset, quote_ident, read_excel, scan_sql, sql_string

if TYPE_CHECKING:
    import duckdb
    import pandas
    import pyarrow

JSONValue = None | bool | int | float | str | list[Any] | dict[str, Any]

_ALLOWED_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})
_ALLOWED_TABLE_REFS = frozenset(
    {"BASE_TABLE", "JOIN", "SUBQUERY", "EXPRESSION_LIST", "EMPTY", "TABLE_FUNCTION", "PIVOT"}
)
_KNOWN_TABLE_REFS = _ALLOWED_TABLE_REFS | {"SHOW_REF", "COLUMN_DATA", "DELIM_GET", "BOUND_REF"}
# Pure generators: they read nothing but their arguments.
SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
DENIED_FUNCTIONS = frozenset(
    {
        "current_setting",
        "getvariable",
        "getenv",
        "version",
        "current_query",
        "current_query_id",
        "current_connection_id",
        "current_transaction_id",
        "txid_current",
        "current_database",
        "current_catalog",
        "current_schema",
        "current_schemas",
        "in_search_path",
        "current_user",
        "current_role",
        "session_user",
        "user",
        "get_block_size",
        "write_log",
        "nextval",
        "currval",
        # Seeds the connection's random state, which a reused connection would carry to the next query.
        "setseed",
        "json_serialize_sql",
        "json_deserialize_sql",
        "json_serialize_plan",
        "json_execute_serialized_sql",
        "parse_duckdb_log_message",
        "sql_auto_complete",
        "which_secret",
        "query",
        "query_table",
        # PostgreSQL-compatibility macros: catalog look-ups, some through table functions the
        # parse check cannot see (a macro's body is expanded only when DuckDB binds it).
        "format_type",
        "format_pg_type",
        "col_description",
        "obj_description",
        "shobj_description",
        "map_to_pg_oid",
        "map_type_id_to_pg_oid",
        "inet_client_addr",
        "inet_client_port",
        "inet_server_addr",
        "inet_server_port",
    }
)
_DENIED_PREFIXES = ("duckdb_", "pragma_", "pg_", "has_", "__internal", "sqlite_")


@dataclass(frozen=True)
class Limits:
    """Caps on one query, in three groups: its text, its run in DuckDB, its result.

    ``max_parens`` bounds parenthesis nesting in the raw text (counted before parsing, string literals
    included, so it errs on the side of refusing); ``max_depth`` bounds the parsed tree.
    """

    max_query_chars: int = 20_000
    max_parens: int = 32
    max_depth: int = 400

    timeout_s: float = 30.0
    threads: int = 2
    memory_limit: str = "4GB"

    max_rows: int = 1000
    max_cell_chars: int = 2000
    max_cell_items: int = 100


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass
class Table:
    """A compact result: column names/types and rows of JSON-safe values."""

    columns: list[Column]
    rows: list[list[JSONValue]]


@dataclass
class QueryResult(Table):
    """One page of a query's result, with the true total and how to get the next page."""

    total_rows: int = 0
    offset: int = 0
    truncated: bool = False
    next_offset: int | None = None
    elapsed_ms: int = 0
    notes: list[str] = field(default_factory=list)


def json_value(value: Any) -> JSONValue:
    """A DuckDB value as JSON: decimals and non-finite floats become floats/None, times ISO text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(value)[:256]).decode()
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_value(v) for v in value]
    return str(value)


def clip_value(value: JSONValue, max_chars: int, max_items: int) -> tuple[JSONValue, bool]:
    """``value`` with long text cut to ``max_chars`` and lists/maps to ``max_items``; True if cut."""
    if isinstance(value, str) and len(value) > max_chars:
        return value[:max_chars] + "…", True
    if isinstance(value, list):
        items = [clip_value(v, max_chars, max_items) for v in value[:max_items]]
        return [v for v, _ in items], len(value) > max_items or any(c for _, c in items)
    if isinstance(value, dict):
        pairs = [(k, clip_value(v, max_chars, max_items)) for k, v in list(value.items())[:max_items]]
        return {k: v for k, (v, _) in pairs}, len(value) > max_items or any(c for _, (_, c) in pairs)
    return value, False


def json_rows(rows: Sequence[Sequence[Any]], max_chars: int, max_items: int) -> tuple[list[list[JSONValue]], bool]:
    """``clip_value(json_value(v))`` of every cell, and whether any was cut.

    The common cell types are handled inline, since a page can hold a hundred thousand cells.
    """
    out: list[list[JSONValue]] = []
    clipped = False
    for r in rows:
        cells: list[JSONValue] = []
        for v in r:
            kind = type(v)
            if v is None or kind is int or kind is bool:
                cells.append(v)
            elif kind is float:
                cells.append(v if math.isfinite(v) else None)
            elif kind is str or kind is dt.datetime or kind is dt.date:
                text = v if kind is str else v.isoformat()
                if len(text) > max_chars:
                    cells.append(text[:max_chars] + "…")
                    clipped = True
                else:
                    cells.append(text)
            else:
                cell, cut = clip_value(json_value(v), max_chars, max_items)
                cells.append(cell)
                clipped = clipped or cut
        out.append(cells)
    return out, clipped


def _refuse(why: str) -> InvalidInput:
    return InvalidInput(f"query refused: {why}. Only one read-only SELECT over the registered datasets is allowed")


def _duck_message(exc: Exception) -> str:
    """The first line of a DuckDB error, bounded: later lines echo the query text."""
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def _ref_shaped(node: dict[str, Any]) -> bool:
    """A table reference of a type this module does not know yet still has these keys."""
    return "alias" in node and ("sample" in node or "query_location" in node or "table_name" in node)


def is_denied_function(name: str) -> bool:
    """True for a scalar function or macro a query may not call (see the module docstring)."""
    lowered = name.lower()
    return lowered in DENIED_FUNCTIONS or lowered.startswith(_DENIED_PREFIXES)


def _paren_depth(sql: str) -> int:
    depth = deepest = 0
    for ch in sql:
        if ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    return deepest


def _statement_body(sql: str) -> str:
    """``sql`` without trailing semicolons and comments, so it can sit inside a wrapping subquery."""
    import duckdb  # heavy: the engine loads it on first use

    cut = len(sql)
    for start, kind in reversed(duckdb.tokenize(sql)):
        if kind == duckdb.token_type.comment or (kind == duckdb.token_type.operator and sql[start] == ";"):
            cut = start
            continue
        break
    return sql[:cut].strip()


class _Walker:
    def __init__(self, views: frozenset[str], max_depth: int) -> None:
        self.views = views
        self.max_depth = max_depth

    def walk(self, node: Any, scope: frozenset[str], depth: int) -> None:
        if depth > self.max_depth:
            raise _refuse("the query is nested too deeply")
        if isinstance(node, list):
            for item in node:
                self.walk(item, scope, depth + 1)
            return
        if not isinstance(node, dict):
            return
        kind = node.get("type")
        if isinstance(kind, str) and kind.endswith("_NODE"):
            if kind not in _ALLOWED_NODES:
                raise _refuse(f"it contains a {kind.removesuffix('_QUERY_NODE').removesuffix('_NODE')} statement")
            scope = scope | self._cte_names(node)
        elif isinstance(kind, str) and "class" not in node and (kind in _KNOWN_TABLE_REFS or _ref_shaped(node)):
            self._table_ref(node, kind, scope)
        if "function_name" in node:
            self._function(node)
        for key, value in node.items():
            if isinstance(value, dict | list):
                self.walk(value, scope, depth + 1)
            elif key == "at_clause" and value is not None:
                raise _refuse("time travel (AT) is not supported")

    @staticmethod
    def _cte_names(node: dict[str, Any]) -> frozenset[str]:
        names = {str(e.get("key", "")).lower() for e in (node.get("cte_map") or {}).get("map", [])}
        if node.get("type") == "RECURSIVE_CTE_NODE":
            names.add(str(node.get("cte_name", "")).lower())
        return frozenset(names)

    def _table_ref(self, node: dict[str, Any], kind: str, scope: frozenset[str]) -> None:
        if kind == "SHOW_REF":
            raise _refuse("DESCRIBE, SUMMARIZE and SHOW are not queries here; inspect or profile the dataset instead")
        if kind not in _ALLOWED_TABLE_REFS:
            raise _refuse(f"{kind.lower().replace('_', ' ')} is not allowed (use SELECT over a dataset)")
        if node.get("at_clause") is not None:
            raise _refuse("time travel (AT) is not supported")
        if kind == "BASE_TABLE":
            name = str(node.get("table_name", "")).lower()
            if node.get("schema_name") or node.get("catalog_name"):
                raise _refuse(f"table {name[:40]!r} is qualified with a schema or catalog")
            if name not in self.views and name not in scope:
                raise _refuse(f"{name[:60]!r} is not a registered dataset")
        elif kind == "TABLE_FUNCTION":
            fn = node.get("function") or {}
            fname = str(fn.get("function_name", "")).lower() if isinstance(fn, dict) else ""
            if fname not in SAFE_TABLE_FUNCTIONS or (isinstance(fn, dict) and (fn.get("schema") or fn.get("catalog"))):
                raise _refuse(f"table function {fname[:40]!r} is not allowed; read data from a registered dataset")

    @staticmethod
    def _function(node: dict[str, Any]) -> None:
        name = str(node.get("function_name", "")).lower()
        if node.get("schema") or node.get("catalog"):
            raise _refuse(f"function {name[:40]!r} is qualified with a schema or catalog")
        if is_denied_function(name):
            raise _refuse(f"function {name[:40]!r} is not allowed in queries")


class SqlParser:
    """DuckDB's parser on a locked, file-less connection, opened once and shared under a lock.

    Its answers depend on the text alone, so the latest ones are kept: a query paged or run again
    is not parsed again (the rules of ``parse_select`` still run on every call).
    """

    def __init__(self, max_cached: int = 128, max_cached_chars: int = 200_000) -> None:
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()
        self.max_cached = max_cached
        self.max_cached_chars = max_cached_chars
        self._cache: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def _connection(self) -> duckdb.DuckDBPyConnection:
        import duckdb  # heavy: the engine loads it on first use

        if self._con is None:
            con = duckdb.connect(
                ":memory:",
                config={"autoinstall_known_extensions": False, "autoload_known_extensions": False, "threads": 1},
            )
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            self._con = con
        return self._con

    def _cached(self, kind: str, text: str, compute: Callable[[duckdb.DuckDBPyConnection], Any]) -> Any:
        key = (kind, text)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            value = compute(self._connection())
            if len(text) + len(str(value)) <= self.max_cached_chars:
                self._cache[key] = value
                while len(self._cache) > self.max_cached:
                    self._cache.popitem(last=False)
            return value

    def statement_types(self, sql: str) -> tuple[duckdb.StatementType, ...]:
        """The type of each statement in ``sql``."""
        return tuple(self._cached("types", sql, lambda con: tuple(s.type for s in con.extract_statements(sql))))

    def call(self, function: str, argument: str) -> str | None:
        """``json_serialize_sql`` or ``json_deserialize_sql`` of ``argument``."""
        assert function in ("json_serialize_sql", "json_deserialize_sql")

        def compute(con: duckdb.DuckDBPyConnection) -> str | None:
            row = con.execute(f"SELECT {function}($1)", [argument]).fetchone()
            return None if not row or row[0] is None else str(row[0])

        result: str | None = self._cached(function, argument, compute)
        return result

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
            if self._con is not None:
                self._con.close()
                self._con = None


def parse_select(
    sql: str, views: Sequence[str], limits: Limits = Limits(), parser: SqlParser | None = None
) -> dict[str, Any]:
    """The AST of ``sql`` if it is exactly one SELECT over ``views`` passing every rule; else raise.

    ``InvalidInput`` says which rule failed. This is guard 2 of the module docstring.
    """
    import duckdb  # heavy: the engine loads it on first use

    if not sql.strip():
        raise InvalidInput("the query is empty; write one SELECT over a registered dataset")
    if len(sql) > limits.max_query_chars:
        raise _refuse(f"it is {len(sql)} characters long, over the limit of {limits.max_query_chars}")
    if _paren_depth(sql) > limits.max_parens:
        raise _refuse(f"parentheses nest deeper than {limits.max_parens} levels")
    own = parser or SqlParser()
    try:
        types = own.statement_types(sql)
        if len(types) != 1:
            raise _refuse(f"it holds {len(types)} statements")
        if types[0] != duckdb.StatementType.SELECT:
            raise _refuse(f"it is a {types[0].name} statement")
        raw = own.call("json_serialize_sql", sql)
    except duckdb.Error as exc:
        raise InvalidInput(f"the query does not parse: {_duck_message(exc)}") from exc
    finally:
        if parser is None:
            own.close()
    try:
        doc: dict[str, Any] = json.loads(raw) if raw else {"error": True}
    except RecursionError as exc:
        raise _refuse("the query is nested too deeply") from exc
    if doc.get("error"):
        message = str(doc.get("error_message", ""))
        if "Only SELECT" in message:
            raise _refuse("it is not a SELECT")
        raise InvalidInput(f"the query does not parse: {message.splitlines()[0][:200] if message else 'unknown'}")
    stmts: list[dict[str, Any]] = doc.get("statements") or []
    if len(stmts) != 1:
        raise _refuse(f"it holds {len(stmts)} statements")
    walker = _Walker(frozenset(v.lower() for v in views), limits.max_depth)
    try:
        walker.walk(stmts[0], frozenset(), 0)
    except RecursionError as exc:
        raise _refuse("the query is nested too deeply") from exc
    ast: dict[str, Any] = stmts[0]
    return ast


def _order_modifier(ast: dict[str, Any]) -> dict[str, Any] | None:
    """The top-level ORDER BY of a parsed statement, if it has one."""
    modifiers: list[dict[str, Any]] = ast["node"].get("modifiers", [])
    return next((m for m in modifiers if m.get("type") == "ORDER_MODIFIER"), None)


# Functions whose one select-list entry can become several result columns (a struct unnested).
_EXPANDING_FUNCTIONS = frozenset({"unnest", "unlist"})


def _may_expand(node: Any) -> bool:
    """True if an expression holds a star, ``COLUMNS`` or an unnest anywhere (subqueries included)."""
    if isinstance(node, list):
        return any(_may_expand(item) for item in node)
    if not isinstance(node, dict):
        return False
    if node.get("class") == "STAR" or str(node.get("function_name", "")).lower() in _EXPANDING_FUNCTIONS:
        return True
    return any(_may_expand(v) for v in node.values() if isinstance(v, dict | list))


def select_width(ast: dict[str, Any]) -> int | None:
    """The number of result columns of a parsed SELECT when its text alone fixes it, else None.

    Only a plain SELECT whose select list has no star, ``COLUMNS`` or unnest qualifies: those, and set
    operations (``UNION BY NAME``), take their width from the data and need a description.
    """
    node = ast["node"]
    select_list = node.get("select_list")
    if node.get("type") != "SELECT_NODE" or not isinstance(select_list, list) or not select_list:
        return None
    return None if _may_expand(select_list) else len(select_list)


class _Watchdog:
    """One daemon thread that calls each armed function once its delay has passed, unless disarmed
    first; a ``threading.Timer`` per query would start and stop a thread on every call."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, delay_s: float, fn: Callable[[], None]) -> int:
        at = time.monotonic() + delay_s
        with self._cond:
            alarm = next(self._ids)
            earliest = self._heap[0][0] if self._heap else math.inf
            heapq.heappush(self._heap, (at, alarm))
            self._armed[alarm] = fn
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="analytics-query-timeout", daemon=True)
                self._thread.start()
            elif at < earliest:
                self._cond.notify()
        return alarm

    def disarm(self, alarm: int) -> None:
        with self._cond:
            self._armed.pop(alarm, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _, alarm = heapq.heappop(self._heap)
                fn = self._armed.pop(alarm, None)
            if fn is not None:
                with contextlib.suppress(Exception):
                    fn()


_WATCHDOG = _Watchdog()

Opener = Callable[[], "duckdb.DuckDBPyConnection"]


class ConnectionPool:
    """Idle locked-down connections by key (see the module docstring), the least recently used closed first.

    DuckDB connections are not safe to share between threads at once, so ``lease`` hands a
    connection to one caller and takes it back afterwards; a connection DuckDB reports broken
    (fatal or internal error) is closed instead.
    """

    def __init__(self, max_idle: int = 4, max_shapes: int = 256) -> None:
        self.max_idle = max_idle
        self.max_shapes = max_shapes
        self.opened = 0
        self._shapes: OrderedDict[tuple[Hashable, str], tuple[Column, ...]] = OrderedDict()
        self._idle: OrderedDict[Hashable, list[duckdb.DuckDBPyConnection]] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False

    def _take(self, key: Hashable) -> duckdb.DuckDBPyConnection | None:
        with self._lock:
            free = self._idle.get(key)
            if not free:
                return None
            con = free.pop()
            if not free:
                del self._idle[key]
            return con

    def _give_back(self, key: Hashable, con: duckdb.DuckDBPyConnection) -> None:
        evicted: list[duckdb.DuckDBPyConnection] = []
        with self._lock:
            if self._closed or self.max_idle < 1:
                evicted.append(con)
            else:
                self._idle.setdefault(key, []).append(con)
                self._idle.move_to_end(key)
                while sum(len(v) for v in self._idle.values()) > self.max_idle:
                    oldest = next(iter(self._idle))
                    evicted.append(self._idle[oldest].pop(0))
                    if not self._idle[oldest]:
                        del self._idle[oldest]
        for old in evicted:
            _close_quietly(old)

    @contextmanager
    def lease(self, key: Hashable, opener: Opener) -> Iterator[duckdb.DuckDBPyConnection]:
        """An idle connection of ``key``, or a new one from ``opener``; returned to the pool afterwards."""
        import duckdb  # heavy: the engine loads it on first use

        con = self._take(key)
        if con is None:
            con = opener()
            with self._lock:
                self.opened += 1
        keep = False
        try:
            yield con
            keep = True
        except (duckdb.FatalException, duckdb.InternalException):
            raise
        except Exception:
            keep = True
            raise
        finally:
            if keep:
                self._give_back(key, con)
            else:
                _close_quietly(con)

    def idle(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._idle.values())

    def shape(self, key: Hashable, text: str) -> list[Column] | None:
        """The result columns of ``text`` on connections of ``key``, if one of them ran it before.

        A key names its files by fingerprint, so while it lives the same text has the same columns.
        """
        with self._lock:
            found = self._shapes.get((key, text))
            if found is not None:
                self._shapes.move_to_end((key, text))
            return None if found is None else list(found)

    def remember_shape(self, key: Hashable, text: str, columns: Sequence[Column]) -> None:
        with self._lock:
            self._shapes[(key, text)] = tuple(columns)
            while len(self._shapes) > self.max_shapes:
                self._shapes.popitem(last=False)

    def close(self) -> None:
        """Close every idle connection; connections out on lease are closed when they come back."""
        with self._lock:
            self._closed = True
            idle = [c for v in self._idle.values() for c in v]
            self._idle.clear()
            self._shapes.clear()
        for con in idle:
            _close_quietly(con)


def _close_quietly(con: duckdb.DuckDBPyConnection) -> None:
    import duckdb  # heavy: the engine loads it on first use

    with contextlib.suppress(duckdb.Error):
        con.close()


class Engine:
    """Runs checked SELECTs over a fixed set of datasets.

    With a ``pool`` its connections are leased from it under a key of the datasets, their
    ``versions`` (file fingerprints) and the connection settings; without one each call opens a
    connection and closes it.
    """

    def __init__(
        self,
        datasets: Sequence[Dataset],
        limits: Limits = Limits(),
        parser: SqlParser | None = None,
        *,
        pool: ConnectionPool | None = None,
        versions: Mapping[str, str] | None = None,
    ) -> None:
        self._datasets = {d.name: d for d in datasets}
        if len(self._datasets) != len(datasets):
            raise InvalidInput("two datasets share a name; give each a distinct name")
        self.limits = limits
        self._pool = pool
        if pool is not None and (versions is None or any(d.name not in versions for d in datasets)):
            raise ValueError("a pooled engine needs the fingerprint of every dataset")
        self._key = (
            tuple(sorted((d.name, str(d.path), d.format, d.sheet, (versions or {}).get(d.name)) for d in datasets)),
            limits.threads,
            limits.memory_limit,
        )
        self._excel: dict[str, tuple[str, pyarrow.Table]] = {}
        self._lock = threading.Lock()
        # A shared parser saves opening a DuckDB database per call; it reads no files, so sharing is safe.
        self._own_parser = parser is None
        self._parser = parser or SqlParser()

    def close(self) -> None:
        """Close the parser connection unless it is shared (query connections never outlive a call)."""
        if self._own_parser:
            self._parser.close()

    @property
    def names(self) -> list[str]:
        return sorted(self._datasets)

    def dataset(self, name: str) -> Dataset:
        try:
            return self._datasets[name]
        except KeyError:
            raise NotFound(
                f"no dataset named {name[:40]!r}; registered: {', '.join(self.names[:20]) or 'none'}"
            ) from None

    def _excel_table(self, dataset: Dataset) -> pyarrow.Table:
        from servers.analytics.sources import fingerprint

        key = fingerprint(dataset.path)
        with self._lock:
            cached = self._excel.get(dataset.name)
        if cached is not None and cached[0] == key:
            return cached[1]
        table = read_excel(dataset)
        with self._lock:
            self._excel[dataset.name] = (key, table)
        return table

    def _open(self) -> duckdb.DuckDBPyConnection:
        import duckdb  # heavy: the engine loads it on first use

        con = duckdb.connect(
            ":memory:",
            config={
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "python_enable_replacements": False,
                "temp_directory": "",
                "threads": self.limits.threads,
                "memory_limit": self.limits.memory_limit,
            },
        )
        try:
            files = [str(d.path) for d in self._datasets.values() if d.format != "excel"]
            con.execute(f"SET allowed_paths = [{', '.join(sql_string(f) for f in files)}]")
            # A Parquet file's footer is read once per connection, not on every bind; the pool key holds
            # the file's fingerprint, so a changed file is read by a new connection.
            con.execute("SET parquet_metadata_cache = true")
            for d in self._datasets.values():
                if d.format == "excel":
                    con.register(d.name, self._excel_table(d))
                else:
                    scan = (self._pinned_csv(con, d) if self._pool is not None else None) or scan_sql(d)
                    con.execute(f"CREATE VIEW {quote_ident(d.name)} AS SELECT * FROM {scan}")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            state = con.execute(
                "SELECT current_setting('enable_external_access'), current_setting('lock_configuration'), "
                "current_setting('autoload_known_extensions'), current_setting('autoinstall_known_extensions')"
            ).fetchone()
            if state != (False, True, False, False):
                raise RuntimeError(f"the DuckDB connection did not lock down as required: {state}")
        except duckdb.Error as exc:
            con.close()
            raise InvalidInput(f"a dataset could not be opened: {_duck_message(exc)}; check the file") from exc
        except BaseException:
            con.close()
            raise
        return con

    @staticmethod
    def _pinned_csv(con: duckdb.DuckDBPyConnection, d: Dataset) -> str | None:
        """For a CSV or TSV, the ``read_csv`` call with the layout DuckDB's sniffer settles on, so that a
        pooled connection (which lives while the file is unchanged) does not sniff the file on every
        query; None (keep auto-detection) when the sniffer fails or the pinned call reads differently.

        Built from the sniffer's fields with this module's own quoting, never from its ``Prompt`` text,
        since column names come from the file.
        """
        import duckdb  # heavy: the engine loads it on first use

        auto = scan_sql(d)
        try:
            cur = con.execute(f"SELECT * FROM sniff_csv({auto.removeprefix('read_csv(')}")
            names = [str(c[0]) for c in cur.description or []]
            row = cur.fetchone()
            if row is None:
                return None
            sniffed = dict(zip(names, row, strict=True))

            def text(key: str) -> str:
                value = sniffed.get(key)
                return sql_string("" if value in (None, "(empty)") else str(value))

            columns = ", ".join(
                f"{sql_string(str(c['name']))}: {sql_string(str(c['type']))}" for c in sniffed["Columns"]
            )
            options = [
                "auto_detect = false",
                f"delim = {text('Delimiter')}",
                f"quote = {text('Quote')}",
                f"escape = {text('Escape')}",
                f"new_line = {text('NewLineDelimiter')}",
                f"comment = {text('Comment')}",
                f"skip = {int(sniffed['SkipRows'])}",
                f"header = {'true' if sniffed['HasHeader'] else 'false'}",
                f"columns = {{{columns}}}",
            ]
            for key, option in (("DateFormat", "dateformat"), ("TimestampFormat", "timestampformat")):
                if sniffed.get(key):
                    options.append(f"{option} = {text(key)}")
            pinned = f"read_csv({sql_string(str(d.path))}, {', '.join(options)})"
            same = (
                con.execute(f"DESCRIBE SELECT * FROM {pinned}").fetchall()
                == con.execute(f"DESCRIBE SELECT * FROM {auto}").fetchall()
            )
        except (duckdb.Error, KeyError, TypeError, ValueError):
            return None
        return pinned if same else None

    @contextmanager
    def _session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A locked connection whose statements together must finish within ``timeout_s``."""
        import duckdb  # heavy: the engine loads it on first use

        leased: contextlib.AbstractContextManager[duckdb.DuckDBPyConnection] = (
            self._pool.lease(self._key, self._open) if self._pool is not None else contextlib.closing(self._open())
        )
        try:
            # The deadline sits inside the lease so that the pool sees DuckDB's own error and can
            # tell a broken connection from a failed query.
            with leased as con, self._deadline(con):
                yield con
        except duckdb.InterruptException as exc:
            raise QueryTimeout(
                f"the query ran longer than {self.limits.timeout_s:g} s and was stopped; "
                "filter, aggregate or sample the data and try again"
            ) from exc
        except duckdb.Error as exc:
            message = _duck_message(exc)
            if "CSV Error" in message:
                message += " (the file is not well-formed CSV there: check its delimiter, quoting and column count)"
            raise InvalidInput(f"the query failed: {message}") from exc

    @contextmanager
    def _deadline(self, con: duckdb.DuckDBPyConnection) -> Iterator[None]:
        """Interrupt ``con`` once ``timeout_s`` has passed, unless the block is over by then."""
        import duckdb  # heavy: the engine loads it on first use

        armed = threading.Lock()
        active = [True]

        def interrupt() -> None:
            # Under the lock the block is either still running or over: a late alarm never
            # reaches the next user of a pooled connection.
            with armed, contextlib.suppress(duckdb.Error):
                if active[0]:
                    con.interrupt()

        alarm = _WATCHDOG.arm(self.limits.timeout_s, interrupt)
        try:
            yield
        finally:
            _WATCHDOG.disarm(alarm)
            with armed:
                active[0] = False

    def check(self, sql: str) -> dict[str, Any]:
        """Guard 2 only: the AST of ``sql`` if it is allowed here (see ``parse_select``)."""
        return parse_select(sql, self.names, self.limits, self._parser)

    def _check_wrapped(self, *statements: str) -> None:
        """What runs is checked too: a wrapper must not open a path the user's text could not.

        The rendered text may be longer and more parenthesised than the original, so the size caps
        (a defence against parser exhaustion, already applied to the user's text) are relaxed.
        """
        relaxed = replace(
            self.limits,
            max_query_chars=2 * self.limits.max_query_chars + 10_000,
            max_parens=2 * self.limits.max_parens + 2,
            max_depth=2 * self.limits.max_depth,
        )
        for sql in statements:
            parse_select(sql, self.names, relaxed, self._parser)

    def _described(self, con: duckdb.DuckDBPyConnection, text: str) -> list[Column]:
        """The result columns of ``text`` from a planning pass (``LIMIT 0``), kept per connection key."""
        known = self._pool.shape(self._key, text) if self._pool is not None else None
        if known is not None:
            return known
        described = con.execute(f"SELECT * FROM (\n{text}\n) AS _q LIMIT 0").description or []
        columns = [Column(name=str(d[0]), type=str(d[1])) for d in described]
        if self._pool is not None:
            self._pool.remember_shape(self._key, text, columns)
        return columns

    def _stable_inner(self, sql: str, ast: dict[str, Any], ncols: int) -> str:
        """The query, which has an ORDER BY, with the positions of all its columns appended to it."""
        orders = _order_modifier(ast)
        assert orders is not None
        positions = ", ".join(str(i) for i in range(1, ncols + 1))
        tie_break = parse_select(f"SELECT 1 ORDER BY {positions}", (), Limits(max_query_chars=10**7), self._parser)
        orders["orders"] = list(orders["orders"]) + tie_break["node"]["modifiers"][0]["orders"]
        rendered = self._parser.call("json_deserialize_sql", json.dumps({"error": False, "statements": [ast]}))
        if not rendered:
            raise InvalidInput("the query's ORDER BY could not be made stable for paging; simplify it")
        return rendered

    def query(self, sql: str, *, limit: int | None = None, offset: int = 0) -> QueryResult:
        """Run one checked SELECT and return rows ``offset .. offset+limit`` of its totally ordered result.

        ``limit`` defaults to and is capped at ``limits.max_rows``; ``truncated`` is true when rows
        remain after this page, and ``next_offset`` then says where the next page starts.
        """
        started = time.monotonic()
        if offset < 0:
            raise InvalidInput("offset must be 0 or more")
        cap = self.limits.max_rows
        page = cap if limit is None else limit
        if page < 1:
            raise InvalidInput(f"limit must be between 1 and {cap}")
        notes = []
        if page > cap:
            notes.append(f"limit lowered to the maximum of {cap} rows")
            page = cap
        ast = self.check(sql)
        text = _statement_body(sql)
        with self._session() as con:
            inner, width = text, None
            if _order_modifier(ast) is not None:
                # Tie-breaks after the query's own ORDER BY name every column by position.
                width = select_width(ast) or len(self._described(con, text))
                inner = self._stable_inner(text, ast, width)
            # Without an ORDER BY of its own the result is ordered by all its columns (ORDER BY 1, ..., k).
            order = "" if width is not None else " ORDER BY ALL"
            # One row past the page says whether more follow; only then is the total counted separately.
            page_sql = f"SELECT * FROM (\n{inner}\n) AS _q{order} LIMIT {page + 1} OFFSET {offset}"
            self._check_wrapped(page_sql)
            cur = con.execute(page_sql)
            rows = cur.fetchall()
            # The result describes itself: no separate planning pass for the column names and types.
            columns = [Column(name=str(d[0]), type=str(d[1])) for d in cur.description or []]
            if width is not None and len(columns) != width:
                raise RuntimeError("the query's column count differs from the one its ORDER BY was made stable for")
            if 0 < len(rows) <= page or (offset == 0 and not rows):
                total = offset + len(rows)
            else:
                count_sql = f"SELECT count(*) FROM (\n{inner}\n) AS _q"
                self._check_wrapped(count_sql)
                total_row = con.execute(count_sql).fetchone()
                total = int(total_row[0]) if total_row else 0
            rows = rows[:page]
        end = offset + len(rows)
        truncated = end < total
        out, clipped = json_rows(rows, self.limits.max_cell_chars, self.limits.max_cell_items)
        if clipped:
            notes.append(
                f"long values cut to {self.limits.max_cell_chars} characters or {self.limits.max_cell_items} items"
            )
        return QueryResult(
            columns=columns,
            rows=out,
            total_rows=total,
            offset=offset,
            truncated=truncated,
            next_offset=end if truncated else None,
            elapsed_ms=int((time.monotonic() - started) * 1000),
            notes=notes,
        )

    @contextmanager
    def trusted(self) -> Iterator[Callable[..., Table]]:
        """A function running SQL this package wrote (identifiers quoted, values as parameters) on one
        locked connection, all statements within one timeout.

        Skips guard 2 (internal SQL uses DESCRIBE and aggregates) but keeps guard 1 and the timeout.
        Never pass a caller's SQL to it; use ``query`` or ``frame``.
        """
        with self._session() as con:

            def run(sql: str, params: Sequence[Any] | None = None) -> Table:
                cur = con.execute(sql, list(params) if params else None)
                desc = cur.description or []
                rows = cur.fetchall()
                return Table(
                    columns=[Column(name=str(d[0]), type=str(d[1])) for d in desc],
                    rows=[[json_value(v) for v in r] for r in rows],
                )

            yield run

    def run_trusted(self, sql: str, params: Sequence[Any] | None = None) -> Table:
        """One statement through ``trusted``."""
        with self.trusted() as run:
            return run(sql, params)

    def frame(self, sql: str, max_rows: int) -> tuple[pandas.DataFrame, int]:
        """The first ``max_rows`` rows of a checked query as pandas (for models), and the total."""
        if max_rows < 1:
            raise InvalidInput("max_rows must be at least 1")
        self.check(sql)
        text = _statement_body(sql)
        count_sql = f"SELECT count(*) FROM (\n{text}\n) AS _q"
        rows_sql = f"SELECT * FROM (\n{text}\n) AS _q LIMIT {int(max_rows)}"
        self._check_wrapped(count_sql, rows_sql)
        with self._session() as con:
            total_row = con.execute(count_sql).fetchone()
            df = con.execute(rows_sql).df()
        return df, int(total_row[0]) if total_row else 0
