"""Versioned migrations per schema: discover, bootstrap, apply, roll back, verify, snapshot.

Several processes of several servers may start at the same moment against one database (two
Claude windows, a test spawning eight). Correctness therefore rests on PostgreSQL, not on the
process: a transaction-level advisory lock serialises the bootstrap, a session-level advisory lock
per schema serialises its migrations, and each migration commits together with its ledger row, so
a version is applied exactly once or not at all. Every function takes the ADMIN url (the one in
``DATABASE_URL``); migrations themselves run as the server's role so every object they create is
owned by it.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from common.errors import MigrationError
from common.logging import get_logger, redact
from common.schema_dump import SHARED_FILE, Snapshot, dump_schema_on, parse_shared, render_shared

log = get_logger(__name__)

#: The repository's ``migrations/`` folder (a source checkout; tests point at temporary copies).
DEFAULT_MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
#: The repository's ``schemas/`` folder of generated snapshots.
DEFAULT_SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "schemas"

BOOTSTRAP_DIRNAME = "_bootstrap"
LEDGER = "schema_migrations"
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_RESERVED = frozenset({"public", "extensions", "information_schema", "postgres", BOOTSTRAP_DIRNAME})
_FILE = re.compile(r"^(?P<version>\d{4})_(?P<description>[a-z0-9_]+)\.(?P<direction>up|down)\.sql$")
_IGNORED_SUFFIXES = (".md", ".txt")

DEFAULT_LOCK_TIMEOUT_S = 300.0

_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version integer PRIMARY KEY,
    description text NOT NULL,
    sha256 text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    execution_ms integer NOT NULL,
    success boolean NOT NULL
)
"""


@dataclass(frozen=True)
class Migration:
    """One ``NNNN_description.up.sql`` / ``.down.sql`` pair on disk."""

    version: int
    description: str
    up_path: Path
    down_path: Path
    sha256: str


@dataclass(frozen=True)
class MigrateResult:
    """What one :func:`migrate` call did: the versions it applied (empty = nothing to do)."""

    server: str
    applied: list[int]
    version: int
    elapsed_ms: int


@dataclass(frozen=True)
class MigrationStatus:
    """One version as seen on disk and in the ledger; ``file`` is None for a version whose file is gone."""

    version: int
    description: str
    applied: bool
    applied_at: datetime | None
    execution_ms: int | None
    checksum_ok: bool | None
    dirty: bool
    file: Path | None


@dataclass(frozen=True)
class _LedgerRow:
    version: int
    description: str
    sha256: str
    applied_at: datetime | None
    execution_ms: int | None
    success: bool


def validate_name(name: str) -> str:
    """Return ``name`` if it may be a schema and role name; otherwise raise.

    Names are interpolated (quoted) into DDL, so nothing reaches SQL that does not match the
    identifier pattern, and names that would collide with PostgreSQL's own are refused.
    """
    if not isinstance(name, str) or not IDENTIFIER.match(name) or name in _RESERVED or name.startswith("pg_"):
        raise MigrationError(
            f"Invalid server name {name!r}: use lower-case letters, digits and underscores "
            "(at most 63, not starting with a digit), and not a reserved name such as public or pg_*."
        )
    return name


def _q(name: str) -> str:
    return '"' + validate_name(name) + '"'


#: ``-- @include <kit>`` on a line of its own stands for ``migrations/kits/<kit>.sql``: DDL that several
#: servers create in their own schemas (the jobs table) is written once. Checksums cover the expanded text.
_INCLUDE = re.compile(r"^-- @include (?P<kit>[a-z_]+)\n", re.MULTILINE)
_CREATE_TABLE = re.compile(r"^CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.MULTILINE)


def kit_sql(kit: str, migrations_dir: Path | None = None) -> str:
    """The SQL of ``migrations/kits/<kit>.sql`` without its leading comment lines."""
    path = _dir(migrations_dir) / "kits" / f"{kit}.sql"
    if not path.is_file():
        raise MigrationError(f"{path}: no such kit; `-- @include {kit}` names a file of migrations/kits/.")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    while lines and lines[0].startswith("--"):
        lines.pop(0)
    return "".join(lines)


def read_up(path: Path, migrations_dir: Path | None = None) -> bytes:
    """An up file's bytes with its ``-- @include`` lines expanded (what runs, and what is checksummed)."""
    text = path.read_text(encoding="utf-8")
    if "-- @include" not in text:
        return text.encode("utf-8")
    return _INCLUDE.sub(lambda m: kit_sql(m["kit"], migrations_dir), text).encode("utf-8")


def _dir(migrations_dir: Path | None) -> Path:
    return migrations_dir if migrations_dir is not None else DEFAULT_MIGRATIONS_DIR


def discover(server: str, migrations_dir: Path | None = None) -> list[Migration]:
    """The server's migrations in version order; a misnamed file or an unpaired one raises, naming it."""
    folder = _dir(migrations_dir) / validate_name(server)
    if not folder.is_dir():
        return []
    ups: dict[int, tuple[str, Path]] = {}
    downs: dict[int, tuple[str, Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name.endswith(_IGNORED_SUFFIXES) or path.is_dir():
            continue
        match = _FILE.match(path.name)
        if match is None:
            raise MigrationError(
                f"{path}: not a migration file name. Use NNNN_description.up.sql and NNNN_description.down.sql "
                "(four digits, lower-case description)."
            )
        version = int(match["version"])
        if version == 0:
            raise MigrationError(f"{path}: versions start at 0001.")
        target = ups if match["direction"] == "up" else downs
        if version in target:
            raise MigrationError(f"{path}: version {version:04d} is used by {target[version][1].name} too; renumber.")
        target[version] = (match["description"], path)
    migrations = []
    for version in sorted(set(ups) | set(downs)):
        if version not in downs:
            raise MigrationError(f"{ups[version][1]}: has no matching .down.sql file; add one that undoes it.")
        if version not in ups:
            raise MigrationError(f"{downs[version][1]}: has no matching .up.sql file.")
        description, up = ups[version]
        if downs[version][0] != description:
            raise MigrationError(f"{downs[version][1]}: description differs from {up.name}; name the pair alike.")
        migrations.append(
            Migration(
                version=version,
                description=description,
                up_path=up,
                down_path=downs[version][1],
                sha256=hashlib.sha256(read_up(up, migrations_dir)).hexdigest(),
            )
        )
    return migrations


def _lock_key(scope: str) -> int:
    """A stable signed 64-bit advisory-lock key (the same in every process and PostgreSQL version)."""
    return int.from_bytes(hashlib.sha256(f"mcp-suite:{scope}".encode()).digest()[:8], "big", signed=True)


async def _connect(admin_url: str) -> asyncpg.Connection:
    """The admin connection every operation uses (tests wrap it to count queries)."""
    try:
        conn: asyncpg.Connection = await asyncpg.connect(
            admin_url, timeout=10, server_settings={"application_name": "mcp-suite-migrate"}
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise MigrationError(
            f"Cannot connect to PostgreSQL to run migrations ({redact(admin_url)}): {redact(str(exc))}. "
            "Check DATABASE_URL or run `mcp-suite doctor`."
        ) from exc
    return conn


# ---------------------------------------------------------------------------------------------- bootstrap


def _bootstrap_files(migrations_dir: Path | None) -> list[Path]:
    folder = _dir(migrations_dir) / BOOTSTRAP_DIRNAME
    if not folder.is_dir():  # a test's copy may hold only server folders
        folder = DEFAULT_MIGRATIONS_DIR / BOOTSTRAP_DIRNAME
    return sorted(folder.glob("*.sql"))


async def _set_password(conn: asyncpg.Connection, name: str, password: str) -> None:
    """``ALTER ROLE name PASSWORD ...`` (the same value from many processes at once is harmless)."""
    # The password is quoted by the server (format %L): utility statements take no parameters.
    stmt = await conn.fetchval("SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)", name, password)
    try:
        async with conn.transaction():
            await conn.execute(stmt)
    except asyncpg.exceptions.InternalServerError as exc:  # "tuple concurrently updated": another did it
        log.debug("db_role_password_race", role=name, error=str(exc))


async def set_role_password(admin_url: str, name: str, password: str) -> bool:
    """Give the existing role ``name`` this password; false if there is no such role yet."""
    validate_name(name)
    conn = await _connect(admin_url)
    try:
        if not await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", name):
            return False
        await _set_password(conn, name, password)
        return True
    finally:
        await conn.close()


async def _ensure_role(conn: asyncpg.Connection, name: str, password: str | None, is_superuser: bool) -> None:
    """Create login role ``name`` unless it exists; roles are cluster-wide, so other databases may race us."""
    exists = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", name)
    if not exists:
        template = "CREATE ROLE %I LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
        # The password is quoted by the server (format %L): utility statements take no parameters.
        if password is not None:
            stmt = await conn.fetchval(f"SELECT format('{template} PASSWORD %L', $1::text, $2::text)", name, password)
        else:
            stmt = await conn.fetchval(f"SELECT format('{template}', $1::text)", name)
        try:
            async with conn.transaction():  # a savepoint: losing the race must not abort the bootstrap
                await conn.execute(stmt)
            log.info("db_role_created", role=name)
        except (asyncpg.exceptions.DuplicateObjectError, asyncpg.exceptions.UniqueViolationError):
            log.debug("db_role_created_concurrently", role=name)
    elif password is not None:
        await _set_password(conn, name, password)
    if not is_superuser and not await conn.fetchval("SELECT pg_has_role(current_user, $1, 'MEMBER')", name):
        # A CREATEROLE admin must be able to SET ROLE to run migrations as the server's role.
        await conn.execute(await conn.fetchval("SELECT format('GRANT %I TO current_user', $1::text)", name))


async def _bootstrap_on(
    conn: asyncpg.Connection, names: Sequence[str], role_password: str | None, migrations_dir: Path | None
) -> None:
    names = [validate_name(n) for n in names]
    files = _bootstrap_files(migrations_dir)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key("_bootstrap"))
        for path in files:
            try:
                await conn.execute(path.read_text(encoding="utf-8"))
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"Bootstrap file {path} failed: {type(exc).__name__}: {exc}") from exc
        is_superuser = bool(await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))
        for name in names:
            await _ensure_role(conn, name, role_password, is_superuser)
            granted = await conn.fetchval(
                """SELECT EXISTS (SELECT 1 FROM pg_database d, aclexplode(d.datacl) a
                    WHERE d.datname = current_database() AND a.privilege_type = 'CONNECT'
                      AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1))""",
                name,
            )
            if not granted:
                await conn.execute(
                    await conn.fetchval(
                        "SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), $1::text)", name
                    )
                )
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(name)} AUTHORIZATION {_q(name)}")
            if not await conn.fetchval("SELECT has_schema_privilege($1, 'extensions', 'USAGE')", name):
                await conn.execute(f"GRANT USAGE ON SCHEMA extensions TO {_q(name)}")
    log.info("db_bootstrapped", servers=names)


async def bootstrap(
    admin_url: str, names: Iterable[str], *, role_password: str | None = None, migrations_dir: Path | None = None
) -> None:
    """Create the ``extensions`` schema with pgvector, and for each name a login role and its own schema.

    Idempotent and safe to run from many processes and databases at once.
    """
    conn = await _connect(admin_url)
    try:
        await _bootstrap_on(conn, list(names), role_password, migrations_dir)
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------------- ledger


@asynccontextmanager
async def _schema_lock(conn: asyncpg.Connection, server: str, timeout_s: float) -> AsyncIterator[None]:
    key = _lock_key(server)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", key, timeout=timeout_s)
    except TimeoutError as exc:
        raise MigrationError(
            f"Another process has held the migration lock of schema {server!r} for over {timeout_s:.0f}s. "
            "Wait for it to finish, or find it in pg_stat_activity (application_name mcp-suite-migrate)."
        ) from exc
    try:
        yield
    finally:
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", key)


async def _ensure_ledger(conn: asyncpg.Connection, server: str) -> None:
    async with conn.transaction():
        await conn.execute(f"SET LOCAL ROLE {_q(server)}")
        await conn.execute(_LEDGER_DDL.format(schema=_q(server)))


async def _read_ledger(conn: asyncpg.Connection, server: str) -> list[_LedgerRow] | None:
    """The ledger in version order, or None when the schema or the table does not exist yet."""
    try:
        rows = await conn.fetch(
            f"SELECT version, description, sha256, applied_at, execution_ms, success "
            f"FROM {_q(server)}.schema_migrations ORDER BY version"
        )
    except (asyncpg.exceptions.InvalidSchemaNameError, asyncpg.exceptions.UndefinedTableError):
        return None
    return [_LedgerRow(**dict(r)) for r in rows]


def _file_label(row: _LedgerRow, migration: Migration | None, folder: Path) -> str:
    if migration is not None:
        return str(migration.up_path)
    return str(folder / f"{row.version:04d}_{row.description}.up.sql")


def _problems(
    server: str, migrations: list[Migration], ledger: list[_LedgerRow], folder: Path, *, include_pending: bool
) -> list[str]:
    """Everything that stops the runner (and, with ``include_pending``, what is not applied yet)."""
    by_version = {m.version: m for m in migrations}
    problems = []
    applied = set()
    for row in ledger:
        m = by_version.get(row.version)
        label = _file_label(row, m, folder)
        if not row.success:
            problems.append(
                f"{label}: version {row.version} failed earlier and is marked dirty in {server}.schema_migrations. "
                f"Fix the file, then run `mcp-suite migrate repair --server {server} --to {row.version}` and migrate again."
            )
            continue
        applied.add(row.version)
        if m is None:
            problems.append(
                f"{label}: version {row.version} is applied in schema {server} but the file is missing. "
                "Restore it (the database is newer than this code), or roll back with the code that has it."
            )
        elif m.sha256 != row.sha256:
            problems.append(
                f"{m.up_path}: changed after it was applied to schema {server} (sha256 {row.sha256[:12]} in the "
                f"database, {m.sha256[:12]} on disk). Applied migrations are immutable: restore the file and put "
                "the change in a new migration."
            )
    newest = max(applied, default=0)
    for m in migrations:
        if m.version in applied or any(r.version == m.version for r in ledger):
            continue
        if m.version < newest:
            problems.append(
                f"{m.up_path}: version {m.version} is not applied but version {newest} is. "
                f"Renumber it above {newest:04d}."
            )
        elif include_pending:
            problems.append(f"{m.up_path}: not applied yet; run `mcp-suite migrate --server {server}`.")
    return problems


async def _apply(conn: asyncpg.Connection, server: str, migration: Migration) -> None:
    """Run one up file and its ledger row in one transaction, as the server's role."""
    data = read_up(migration.up_path, migration.up_path.parents[1])
    sha = hashlib.sha256(data).hexdigest()
    if sha != migration.sha256:
        raise MigrationError(f"{migration.up_path}: changed while migrating; run the migration again.")
    sql = data.decode("utf-8")
    started = time.perf_counter()
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL ROLE {_q(server)}")
            await conn.execute(f"SET LOCAL search_path = {_q(server)}, extensions")
            await conn.execute(sql)
            elapsed = int((time.perf_counter() - started) * 1000)
            await conn.execute(
                f"INSERT INTO {_q(server)}.schema_migrations "
                "(version, description, sha256, applied_at, execution_ms, success) VALUES ($1, $2, $3, now(), $4, true)",
                migration.version,
                migration.description,
                sha,
                elapsed,
            )
    except asyncpg.PostgresError as exc:
        elapsed = int((time.perf_counter() - started) * 1000)
        await _record_failure(conn, server, migration, sha, elapsed)
        log.error("migration_failed", server=server, version=migration.version, file=str(migration.up_path))
        raise MigrationError(
            f"{migration.up_path} failed and was rolled back: {_describe(exc, sql)} "
            f"Fix the file, then run `mcp-suite migrate repair --server {server} --to {migration.version}` and migrate again."
        ) from exc
    log.info("migration_applied", server=server, version=migration.version, execution_ms=elapsed)


def _describe(exc: asyncpg.PostgresError, sql: str) -> str:
    """The PostgreSQL error with its SQLSTATE, line, detail and hint, as one sentence-ish string."""
    text = f"{type(exc).__name__} ({exc.sqlstate}): {exc}"
    position = getattr(exc, "position", None)
    if position and str(position).isdigit():
        text += f" (line {sql[: int(position) - 1].count(chr(10)) + 1})"
    for attr in ("detail", "hint"):
        value = getattr(exc, attr, None)
        if value:
            text += f"; {attr}: {value}"
    return text + "."


async def _record_failure(conn: asyncpg.Connection, server: str, migration: Migration, sha: str, ms: int) -> None:
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL ROLE {_q(server)}")
            await conn.execute(
                f"INSERT INTO {_q(server)}.schema_migrations "
                "(version, description, sha256, applied_at, execution_ms, success) VALUES ($1, $2, $3, now(), $4, false) "
                "ON CONFLICT (version) DO UPDATE SET sha256 = EXCLUDED.sha256, applied_at = EXCLUDED.applied_at, "
                "execution_ms = EXCLUDED.execution_ms, success = false",
                migration.version,
                migration.description,
                sha,
                ms,
            )
    except asyncpg.PostgresError as exc:  # the original error matters more; say this one in the log
        log.error("migration_failure_not_recorded", server=server, version=migration.version, error=str(exc))


# ---------------------------------------------------------------------------------------------- migrate


async def _migrate_on(
    conn: asyncpg.Connection, server: str, target: int | None, migrations_dir: Path | None, lock_timeout_s: float
) -> MigrateResult:
    started = time.perf_counter()
    migrations = discover(server, migrations_dir)
    folder = _dir(migrations_dir) / server
    applied: list[int] = []
    async with _schema_lock(conn, server, lock_timeout_s):
        await _ensure_ledger(conn, server)
        ledger = await _read_ledger(conn, server) or []
        problems = _problems(server, migrations, ledger, folder, include_pending=False)
        if problems:
            raise MigrationError(problems[0])
        done = {r.version for r in ledger}
        for migration in migrations:
            if migration.version in done or (target is not None and migration.version > target):
                continue
            await _apply(conn, server, migration)
            applied.append(migration.version)
        version = max([*done, *applied], default=0)
    elapsed = int((time.perf_counter() - started) * 1000)
    if applied:
        log.info("migrations_applied", server=server, versions=applied, version=version, elapsed_ms=elapsed)
    return MigrateResult(server=server, applied=applied, version=version, elapsed_ms=elapsed)


async def migrate(
    admin_url: str,
    server: str,
    *,
    target: int | None = None,
    role_password: str | None = None,
    migrations_dir: Path | None = None,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
) -> MigrateResult:
    """Bootstrap the server's role and schema, then apply its pending migrations up to ``target``.

    A changed applied file, a dirty (failed) version, an applied version without a file, or a
    pending version older than an applied one stops with :class:`MigrationError` naming the file.
    """
    validate_name(server)
    conn = await _connect(admin_url)
    try:
        await _bootstrap_on(conn, [server], role_password, migrations_dir)
        return await _migrate_on(conn, server, target, migrations_dir, lock_timeout_s)
    finally:
        await conn.close()


async def migrate_all(
    admin_url: str,
    names: Iterable[str],
    *,
    role_password: str | None = None,
    migrations_dir: Path | None = None,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
) -> dict[str, MigrateResult]:
    """Bootstrap every name once, then migrate each server in turn (``mcp-suite migrate``)."""
    names = [validate_name(n) for n in names]
    conn = await _connect(admin_url)
    try:
        await _bootstrap_on(conn, names, role_password, migrations_dir)
        return {n: await _migrate_on(conn, n, None, migrations_dir, lock_timeout_s) for n in names}
    finally:
        await conn.close()


async def ensure_migrated(
    admin_url: str,
    server: str,
    *,
    role_password: str | None = None,
    migrations_dir: Path | None = None,
    apply_password: bool = False,
) -> Literal["up_to_date", "migrated"]:
    """Start-up check: ONE query when the ledger already matches the files; otherwise bootstrap and migrate.

    ``apply_password`` also sets ``role_password`` when nothing else needs doing (the embedded
    PostgreSQL: a role from an older version, or restored from a dump, gets its password back).
    """
    migrations = discover(server, migrations_dir)
    conn = await _connect(admin_url)
    try:
        try:
            rows = await conn.fetch(f"SELECT version, sha256, success FROM {_q(server)}.schema_migrations")
        except (asyncpg.exceptions.InvalidSchemaNameError, asyncpg.exceptions.UndefinedTableError):
            rows = None
        if rows is not None:
            in_db = {(r["version"], r["sha256"]) for r in rows if r["success"]}
            if len(in_db) == len(rows) and in_db == {(m.version, m.sha256) for m in migrations}:
                if apply_password and role_password is not None:
                    await _set_password(conn, server, role_password)
                return "up_to_date"
    finally:
        await conn.close()
    await migrate(admin_url, server, role_password=role_password, migrations_dir=migrations_dir)
    return "migrated"


# ---------------------------------------------------------------------------------------------- inspect


async def status(admin_url: str, server: str, migrations_dir: Path | None = None) -> list[MigrationStatus]:
    """Every version on disk or in the ledger, in order, with whether it is applied, intact and clean."""
    migrations = discover(server, migrations_dir)
    conn = await _connect(admin_url)
    try:
        ledger = {r.version: r for r in (await _read_ledger(conn, server) or [])}
    finally:
        await conn.close()
    by_version = {m.version: m for m in migrations}
    result = []
    for version in sorted(set(by_version) | set(ledger)):
        m, row = by_version.get(version), ledger.get(version)
        result.append(
            MigrationStatus(
                version=version,
                description=m.description if m else (row.description if row else ""),
                applied=bool(row and row.success),
                applied_at=row.applied_at if row else None,
                execution_ms=row.execution_ms if row else None,
                checksum_ok=(m.sha256 == row.sha256) if (m and row) else None,
                dirty=bool(row and not row.success),
                file=m.up_path if m else None,
            )
        )
    return result


async def verify(admin_url: str, server: str, migrations_dir: Path | None = None) -> list[str]:
    """Problems that would stop the server or break isolation; an empty list means all is well."""
    validate_name(server)
    try:
        migrations = discover(server, migrations_dir)
    except MigrationError as exc:
        return [str(exc)]
    conn = await _connect(admin_url)
    try:
        owner = await conn.fetchval("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1", server)
        if owner is None:
            return [f"Schema {server} does not exist: run `mcp-suite migrate --server {server}`."]
        problems = []
        if owner != server:
            problems.append(f"Schema {server} is owned by {owner}, not by role {server}.")
        foreign = await conn.fetch(
            "SELECT c.relname, pg_get_userbyid(c.relowner) AS owner FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND pg_get_userbyid(c.relowner) <> $1 "
            "ORDER BY c.relname",
            server,
        )
        problems += [f"{server}.{r['relname']} is owned by {r['owner']}, not by role {server}." for r in foreign]
        ledger = await _read_ledger(conn, server) or []
    finally:
        await conn.close()
    return problems + _problems(server, migrations, ledger, _dir(migrations_dir) / server, include_pending=True)


# ---------------------------------------------------------------------------------------------- undo


async def rollback(
    admin_url: str,
    server: str,
    *,
    to_version: int,
    migrations_dir: Path | None = None,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
) -> list[int]:
    """Undo every applied version above ``to_version``, newest first, each with its ledger row in one transaction."""
    if to_version < 0:
        raise MigrationError("to_version must be 0 (undo everything) or a version number.")
    migrations = {m.version: m for m in discover(server, migrations_dir)}
    folder = _dir(migrations_dir) / server
    undone: list[int] = []
    conn = await _connect(admin_url)
    try:
        async with _schema_lock(conn, server, lock_timeout_s):
            ledger = await _read_ledger(conn, server) or []
            for row in ledger:
                if not row.success:
                    raise MigrationError(
                        f"{_file_label(row, migrations.get(row.version), folder)}: version {row.version} is dirty; "
                        f"run `mcp-suite migrate repair --server {server} --to {row.version}` before rolling back."
                    )
            for row in sorted(ledger, key=lambda r: r.version, reverse=True):
                if row.version <= to_version:
                    break
                m = migrations.get(row.version)
                if m is None:
                    raise MigrationError(
                        f"{folder / f'{row.version:04d}_{row.description}.down.sql'}: missing, so version "
                        f"{row.version} cannot be rolled back. Restore the file."
                    )
                sql = m.down_path.read_text(encoding="utf-8")
                try:
                    async with conn.transaction():
                        await conn.execute(f"SET LOCAL ROLE {_q(server)}")
                        await conn.execute(f"SET LOCAL search_path = {_q(server)}, extensions")
                        await conn.execute(sql)
                        await conn.execute(f"DELETE FROM {_q(server)}.schema_migrations WHERE version = $1", m.version)
                except asyncpg.PostgresError as exc:
                    raise MigrationError(
                        f"{m.down_path} failed and was rolled back (version {m.version} is still applied): "
                        f"{_describe(exc, sql)}"
                    ) from exc
                undone.append(m.version)
                log.info("migration_rolled_back", server=server, version=m.version)
    finally:
        await conn.close()
    return undone


async def repair(admin_url: str, server: str, version: int, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
    """Forget a failed (dirty) version once its file is fixed, so the next migrate runs it again."""
    conn = await _connect(admin_url)
    try:
        async with _schema_lock(conn, server, lock_timeout_s):
            try:
                deleted = await conn.fetchval(
                    f"DELETE FROM {_q(server)}.schema_migrations WHERE version = $1 AND NOT success RETURNING version",
                    version,
                )
            except (asyncpg.exceptions.InvalidSchemaNameError, asyncpg.exceptions.UndefinedTableError):
                deleted = None
    finally:
        await conn.close()
    if deleted is None:
        raise MigrationError(
            f"Version {version} of {server} is not marked dirty, so there is nothing to repair "
            f"(see `mcp-suite migrate status {server}`)."
        )
    log.info("migration_repaired", server=server, version=version)


# ---------------------------------------------------------------------------------------------- snapshots


def shared_table_names(migrations_dir: Path | None = None) -> set[str]:
    """Tables every schema may have alike: the migration ledger and those the kits create."""
    kits = (_dir(migrations_dir) / "kits").glob("*.sql")
    created = (_CREATE_TABLE.findall(path.read_text(encoding="utf-8")) for path in kits)
    return {LEDGER, *(name for names in created for name in names)}


def shared_tables(schemas_dir: Path | None = None) -> dict[str, str]:
    """The committed shared tables (``schemas/shared.sql``); empty when there is none."""
    path = (schemas_dir if schemas_dir is not None else DEFAULT_SCHEMAS_DIR) / SHARED_FILE
    return parse_shared(path.read_text(encoding="utf-8")) if path.is_file() else {}


async def _dump(url: str, server: str, shared: Mapping[str, str]) -> Snapshot:
    conn = await _connect(url)
    try:
        snapshot = await dump_schema_on(conn, validate_name(server), shared)
    finally:
        await conn.close()
    if snapshot is None:
        raise MigrationError(f"Schema {server} does not exist: run `mcp-suite migrate --server {server}` first.")
    return snapshot


async def dump_schema(admin_url: str, server: str, *, schemas_dir: Path | None = None) -> str:
    """The deterministic DDL snapshot of schema ``server`` (what ``schemas/<server>.sql`` holds)."""
    return (await _dump(admin_url, server, shared_tables(schemas_dir))).text


def _with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


async def _render(url: str, names: list[str], migrations_dir: Path | None) -> tuple[dict[str, str], dict[str, str]]:
    """Each schema's snapshot and the shared tables, each the text most of ``names`` have."""
    await migrate_all(url, names, migrations_dir=migrations_dir)
    candidates = dict.fromkeys(shared_table_names(migrations_dir), "")
    found = [(await _dump(url, n, candidates)).shared for n in names]
    shared = {
        table: Counter(texts[table] for texts in found if table in texts).most_common(1)[0][0]
        for table in sorted({t for texts in found for t in texts})
    }
    return {n: (await _dump(url, n, shared)).text for n in names}, shared


async def render_snapshots(
    admin_url: str, names: Iterable[str], *, migrations_dir: Path | None = None, scratch: bool = True
) -> tuple[dict[str, str], dict[str, str]]:
    """Migrate ``names`` and return each schema's snapshot text and the shared tables' texts.

    With ``scratch`` (the default) this happens in a temporary database created next to the one in
    ``admin_url`` and dropped afterwards, so a developer's data is never touched; the per-server
    roles it creates are cluster-wide and stay (they are the same roles the servers use).
    """
    names = [validate_name(n) for n in names]
    if not scratch:
        return await _render(admin_url, names, migrations_dir)
    dbname = f"mcp_snapshot_{uuid.uuid4().hex[:12]}"
    conn = await _connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{dbname}"')
    finally:
        await conn.close()
    try:
        return await _render(_with_database(admin_url, dbname), names, migrations_dir)
    finally:
        conn = await _connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        finally:
            await conn.close()


async def write_snapshots(
    admin_url: str,
    names: Iterable[str],
    *,
    migrations_dir: Path | None = None,
    schemas_dir: Path | None = None,
    scratch: bool = True,
) -> dict[str, Path]:
    """Regenerate ``schemas/<name>.sql`` and ``schemas/shared.sql`` (``mcp-suite migrate snapshot``).

    ``names`` should be every server: a shared table is printed once, as most schemas have it, and
    each schema's own file lists it by name or, where its copy differs, prints it in full.
    """
    texts, shared = await render_snapshots(admin_url, names, migrations_dir=migrations_dir, scratch=scratch)
    folder = schemas_dir if schemas_dir is not None else DEFAULT_SCHEMAS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, text in {**texts, SHARED_FILE.removesuffix(".sql"): render_shared(shared)}.items():
        path = folder / f"{name}.sql"
        path.write_text(text, encoding="utf-8")
        written[name] = path
    log.info("schema_snapshots_written", servers=list(written), folder=str(folder))
    return written


def snapshot_path(server: str, schemas_dir: Path | None = None) -> Path:
    """Where the committed snapshot of ``server`` lives."""
    return (schemas_dir if schemas_dir is not None else DEFAULT_SCHEMAS_DIR) / f"{validate_name(server)}.sql"


__all__ = [
    "DEFAULT_MIGRATIONS_DIR",
    "DEFAULT_SCHEMAS_DIR",
    "MigrateResult",
    "Migration",
    "MigrationError",
    "MigrationStatus",
    "bootstrap",
    "discover",
    "dump_schema",
    "ensure_migrated",
    "migrate",
    "migrate_all",
    "render_snapshots",
    "repair",
    "rollback",
    "snapshot_path",
    "status",
    "verify",
    "write_snapshots",
]
