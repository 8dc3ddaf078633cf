"""The ``mcp-suite`` command: serve, migrate, db, reembed, doctor, config, demo.

This is a command-line tool, not a server: its tables go to stdout. ``serve`` hands stdout to the
MCP protocol and writes nothing there itself.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from common.logging import configure_logging
from common.settings import BaseServerSettings, SettingsError, load_settings
from servers import registry


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain-text table; every command that reports uses it."""
    cells = [[str(h) for h in headers], *[[("" if c is None else str(c)) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _shared_settings() -> BaseServerSettings:
    return load_settings(BaseServerSettings)


def _admin_url(settings: BaseServerSettings) -> str:
    from common.runtime import resolve_admin_url

    return resolve_admin_url(settings)


def _targets(server: str | None) -> list[str]:
    if server is None:
        return registry.names()
    registry.get(server)
    return [server]


def _password(settings: BaseServerSettings, name: str) -> str | None:
    from common.runtime import role_password

    return role_password(settings, name)


async def _migrate(args: argparse.Namespace) -> int:
    from common import migrate

    settings = _shared_settings()
    url = _admin_url(settings)
    action = args.action or "up"
    rows: list[tuple[object, ...]] = []
    if action == "up":
        for name in _targets(args.server):
            result = await migrate.migrate(url, name, role_password=_password(settings, name), target=args.to)
            rows.append((name, ", ".join(str(v) for v in result.applied) or "-", "ok"))
        _out(table(rows, ["server", "applied", "state"]))
    elif action == "status":
        for name in _targets(args.server):
            for st in await migrate.status(url, name):
                state = "dirty" if st.dirty else ("applied" if st.applied else "pending")
                if st.applied and not st.checksum_ok:
                    state = "CHANGED"
                rows.append((name, st.version, st.description, state, st.applied_at or "", st.execution_ms or ""))
        _out(table(rows, ["server", "version", "description", "state", "applied_at", "ms"]))
    elif action == "rollback":
        if args.server is None or args.to is None:
            _out("rollback needs --server NAME and --to VERSION")
            return 2
        undone = await migrate.rollback(url, args.server, to_version=args.to)
        _out(f"{args.server}: rolled back {', '.join(map(str, undone)) or 'nothing'}")
    elif action == "verify":
        bad = 0
        for name in _targets(args.server):
            problems = await migrate.verify(url, name)
            bad += len(problems)
            _out(f"{name}: " + ("ok" if not problems else "; ".join(problems)))
        return 1 if bad else 0
    elif action == "repair":
        if args.server is None or args.to is None:
            _out("repair needs --server NAME and --to VERSION (the dirty version)")
            return 2
        await migrate.repair(url, args.server, args.to)
        _out(f"{args.server}: version {args.to} is no longer marked dirty")
    elif action == "snapshot":
        # Shared tables are printed as most schemas have them, so every schema is rendered together.
        written = await migrate.write_snapshots(url, registry.names())
        for path in written.values():
            _out(f"wrote {path}")
    return 0


def _db(args: argparse.Namespace) -> int:
    from common import embedded_pg

    settings = _shared_settings()
    if settings.database_url is not None and args.action != "url":
        _out("DATABASE_URL is set, so the embedded PostgreSQL is not used; manage that server directly.")
        return 2
    if args.action == "start":
        # Marked detached: it stays up, whoever comes and goes, until `db stop`.
        url = embedded_pg.ensure_embedded(settings.data_dir, detached=True)
        _out(f"embedded PostgreSQL running: {url}")
    elif args.action == "stop":
        _out("stopped" if embedded_pg.stop(settings.data_dir) else "not running")
    elif args.action == "status":
        st = embedded_pg.status(settings.data_dir)
        rows = [
            ("data directory", st.pgdata),
            ("initialized", st.initialized),
            ("running", st.running),
            ("pid", st.pid or "-"),
            ("url", st.url or "-"),
            ("server processes holding it", ", ".join(map(str, st.handles)) or "-"),
            ("kept up until `db stop`", st.detached),
        ]
        _out(table(rows, ["embedded PostgreSQL", "value"]))
    elif args.action == "url":
        if settings.database_url is not None:
            from common.logging import redact

            _out(redact(settings.database_url.get_secret_value()))
        else:
            st = embedded_pg.status(settings.data_dir)
            if not st.running:
                _out("not running; start it with `mcp-suite db start`")
                return 1
            _out(st.url or "")
    return 0


async def _reembed(args: argparse.Namespace) -> int:
    from common.embeddings import DEFAULT_EMBEDDING_DIM, make_embedder, store_model
    from common.runtime import open_deps, service_factory

    spec = registry.get(args.server)
    settings = spec.load_settings()
    async with open_deps(spec.name, settings) as deps:
        state = await store_model.read(deps.db, spec.name)
        if state is None:
            _out(f"{spec.name} keeps no embedding model (it stores no vectors of its own); nothing to do.")
            return 2
        if args.cancel:
            state = await store_model.cancel_switch(deps.db, spec.name) or state
        if args.model is None:
            rows = [
                ("store model", state.model),
                ("switching to", state.target or "-"),
                ("rows re-embedded by the switch", state.done if state.target else "-"),
                ("EMBEDDING_MODEL here", settings.embedding_model),
                ("EMBEDDING_MODEL_POLICY", settings.embedding_model_policy),
            ]
            _out(table(rows, [spec.name, "value"]))
            return 0
        store_model.check_model_name(args.model)
        factory = service_factory(spec.build(settings))
        if factory is None:
            _out(f"{spec.name} has no service to re-embed with.")
            return 2
        async with factory(deps) as svc:
            step = getattr(svc, "reembed_step", None)
            if step is None:
                _out(f"{spec.name} cannot switch its model yet (its service has no reembed_step).")
                return 2
            target = make_embedder(
                settings.model_copy(update={"embedding_model": args.model}),
                cache=deps.cache,
                background=deps.background,
            )
            if target.dim != DEFAULT_EMBEDDING_DIM:  # every store's vector columns are vector(384)
                _out(f"{args.model} makes {target.dim}-dimensional vectors; the stores hold {DEFAULT_EMBEDDING_DIM}.")
                return 2
            done = await store_model.switch(deps.db, spec.name, target, step, batch=args.batch)
        _out(table([(done.schema, done.previous, done.model, done.reembedded)], ["store", "was", "now", "re-embedded"]))
    return 0


def _batch(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a number of rows from 1 to 1024")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-suite", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run one server over stdio (what an MCP client launches)")
    p.add_argument("name", choices=registry.names())

    p = sub.add_parser("migrate", help="apply migrations; or status | rollback | verify | repair | snapshot")
    p.add_argument("action", nargs="?", choices=["up", "status", "rollback", "verify", "repair", "snapshot"])
    p.add_argument("--server", choices=registry.names())
    p.add_argument("--to", type=int, help="target version (up, rollback) or the dirty version (repair)")

    p = sub.add_parser("db", help="the embedded PostgreSQL: start | stop | status | url")
    p.add_argument("action", choices=["start", "stop", "status", "url"])

    p = sub.add_parser("doctor", help="check PostgreSQL, pgvector, migrations, Redis, the model, Qdrant")
    p.add_argument("--skip-model", action="store_true", help="do not load the embedding model")

    p = sub.add_parser("reembed", help="show a store's embedding model, or switch it: re-embed every row, then flip")
    p.add_argument("server", choices=registry.names())
    p.add_argument("--model", help="the model to switch to (run again to resume an interrupted switch)")
    p.add_argument("--cancel", action="store_true", help="drop a switch under way (the store keeps its model)")
    p.add_argument("--batch", type=_batch, default=128, metavar="N", help="rows per step (1-1024)")

    p = sub.add_parser("config", help="client configuration for the registered servers")
    p.add_argument("client", choices=["claude"])
    p.add_argument("--format", choices=["all", "json", "cli"], default="all")
    p.add_argument("--include-examples", action="store_true", help="also list the example server(s)")
    p.add_argument(
        "--with-env",
        action="store_true",
        help="add an env block with the connection settings in force here (DATABASE_URL, REDIS_URL, ...)",
    )

    p = sub.add_parser("demo", help="launch every server over stdio as Claude would and make a few real calls")
    p.add_argument("--include-examples", action="store_true", default=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch a command; a bad setting or argument exits 2 with a message, never a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in registry.names():  # `python -m servers notes` == `mcp-suite serve notes`
        argv = ["serve", *argv]
    args = build_parser().parse_args(argv)
    if args.command != "serve":  # serve configures logging from its own settings
        # Library logs (model loading, the embedded PostgreSQL) must not mix into the tables on stdout.
        configure_logging("WARNING", "auto")
    try:
        if args.command == "serve":
            from servers.serve import serve

            return serve(args.name)
        if args.command == "migrate":
            return asyncio.run(_migrate(args))
        if args.command == "db":
            return _db(args)
        if args.command == "reembed":
            return asyncio.run(_reembed(args))
        if args.command == "doctor":
            from servers.doctor import run_doctor

            return asyncio.run(run_doctor(_shared_settings(), load_model=not args.skip_model))
        if args.command == "config":
            from servers.client_config import render, shared_env

            env = shared_env(_shared_settings()) if args.with_env else None
            _out(render(args.format, include_examples=args.include_examples, env=env))
            return 0
        if args.command == "demo":
            from servers.demo import run_demo

            return asyncio.run(run_demo(include_examples=args.include_examples))
    except SettingsError as exc:
        sys.stderr.write(f"{exc.code}\n")
        return 2
    except KeyError as exc:
        sys.stderr.write(f"{exc.args[0]}\n")
        return 2
    except Exception as exc:
        from common.errors import MigrationError, SuiteError
        from common.logging import redact

        if isinstance(exc, SuiteError | MigrationError):
            sys.stderr.write(f"error: {redact(str(exc))}\n")
            return 1
        raise
    return 0
