"""Probe: generated bad calls to every tool of every registered server, over stdio.

Too slow for the suite at full size (``tests/e2e/test_bad_calls.py`` runs a small seeded share). From
the repository root:

    .venv/bin/python -m tests.probes.bad_calls --calls 1000 --seed 1 [--servers notes,analytics]

Starts a throw-away embedded PostgreSQL, spawns each server as Claude does, lists its tools and sends
each tool argument sets built from its input schema with one thing wrong (a missing required
argument, a wrong type, an out-of-range number, a 100 KB string, NUL and control characters, odd
Unicode, an unknown id, a path outside any root, nesting 50 deep, an empty string, an unknown key).
The rules: every call is answered within 10 s, the server never exits, no reply says "Internal
error", no error text is over 1 KB and no failed call changes a row of the server's schema. Prints a table per server; exits 1 when a rule is broken.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from mcp import Client
from mcp.shared.exceptions import MCPError

from common.testing import create_database, server_params, start_cluster
from servers import registry

#: A call not answered within this many seconds is a hang.
CALL_TIMEOUT = 10.0
#: An error text longer than this breaks the rules.
MAX_ERROR_TEXT = 1024

#: Tables that change during a failed call by design: a log of failures, or background work of earlier calls.
UNCHECKED_TABLES = {
    "analytics.query_history": "the query history records failed queries too",
    "memory_management.memories": "the indexer and the expiry sweep update it between calls",
}

_HUGE = "x" * 100_000
_NASTY_STRINGS = [
    "a\x00b",
    "\x00",
    "\x01\x02\x1b[31m\x7f",
    "line\r\nbreak\tand\x0bvertical",
    "\u202etxt.exe\u200b\ufeff",
    "e\u0301\u0301\u0301 \U0001f600 \u0645\u0631\u062d\u0628\u0627 \uffff",
    "\U0010ffff\ufdd0",
    "' OR 1=1; DROP TABLE x; --",
    "%s%n{0}${x}{{x}}",
    "/etc/shadow",
    "../../../../etc/passwd",
    "..",
    "",
    " ",
]
_BAD_NUMBERS: list[Any] = [-1, -(2**31), 2**63, -(2**63) - 1, 1e30, -1e30, 0, "NaN", "Infinity", "-1", 1.5]


def _deep(depth: int, kind: str) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


@dataclasses.dataclass
class Schema:
    """A tool's input schema with its ``$defs`` at hand for resolving references."""

    root: dict[str, Any]

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in node and seen < 20:
            name = str(node["$ref"]).rsplit("/", 1)[-1]
            node = self.root.get("$defs", {}).get(name, {})
            seen += 1
        for key in ("anyOf", "oneOf"):
            options = [o for o in node.get(key, []) if isinstance(o, dict) and o.get("type") != "null"]
            if options:
                merged = {k: v for k, v in node.items() if k != key}
                return self.resolve({**options[0], **merged})
        return node

    def kind(self, node: dict[str, Any]) -> str:
        node = self.resolve(node)
        kind = node.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "string")
        if kind is None:
            kind = "object" if "properties" in node else "string"
        return str(kind)

    def plausible(self, node: dict[str, Any], depth: int = 0) -> Any:
        """A simple value of the right type, so each call has one thing wrong, not many."""
        node = self.resolve(node)
        if node.get("enum"):
            return node["enum"][0]
        if "const" in node:
            return node["const"]
        kind = self.kind(node)
        if kind == "integer":
            return max(1, int(node.get("minimum", 1)))
        if kind == "number":
            return float(max(1, node.get("minimum", 1)))
        if kind == "boolean":
            return False
        if kind == "array":
            items = node.get("items")
            if depth < 3 and isinstance(items, dict) and int(node.get("minItems", 0)) > 0:
                return [self.plausible(items, depth + 1)]
            return []
        if kind == "object":
            if depth >= 3:
                return {}
            props = node.get("properties", {})
            return {k: self.plausible(props[k], depth + 1) for k in node.get("required", []) if k in props}
        return "x" * max(1, int(node.get("minLength", 1)))

    def properties(self) -> dict[str, dict[str, Any]]:
        return dict(self.resolve(self.root).get("properties", {}))

    def required(self) -> list[str]:
        return list(self.resolve(self.root).get("required", []))


def _wrong_type(kind: str, rng: random.Random) -> Any:
    choices: dict[str, list[Any]] = {
        "integer": ["12", {"n": 1}, [1], True, 1.5],
        "number": ["1.0", [1.0], {"n": 1}],
        "boolean": ["yes", 2, [], {}],
        "array": [{"a": 1}, "a,b", 3],
        "object": [[1, 2], "{}", 7],
        "string": [["a"], {"s": "a"}, 42, None, True],
    }
    return rng.choice(choices.get(kind, ["x", 1, [], {}]))


def _mutations(schema: Schema, name: str, node: dict[str, Any], rng: random.Random) -> list[Callable[[], Any]]:
    kind = schema.kind(node)
    lowered = name.lower()
    ops: list[Callable[[], Any]] = [
        lambda: _wrong_type(kind, rng),
        lambda: rng.choice(_NASTY_STRINGS),
        lambda: _HUGE,
        lambda: _deep(50, rng.choice(["list", "dict"])),
        lambda: rng.choice(_BAD_NUMBERS),
        lambda: "",
    ]
    if kind in ("integer", "number"):
        ops += [lambda: rng.choice(_BAD_NUMBERS)] * 3
    if kind == "array":
        ops += [lambda: [_HUGE] * 3, lambda: [rng.choice(_NASTY_STRINGS)] * rng.choice([1, 2, 10_000])]
    if any(w in lowered for w in ("id", "key", "name", "ref", "run", "job")):
        ops += [lambda: str(uuid.UUID(int=rng.getrandbits(128))), lambda: rng.choice([999_999_999, -5, "nope"])]
    if any(w in lowered for w in ("path", "root", "dir", "file", "folder", "repo", "source")):
        ops += [
            lambda: rng.choice(["/etc/shadow", "../../../../etc/passwd", "/root/.ssh/id_rsa", "/proc/self/environ"])
        ]
    if any(w in lowered for w in ("url", "uri", "link", "site")):
        ops += [
            lambda: rng.choice(["file:///etc/shadow", "http://169.254.169.254/latest/", "javascript:1", "ht!tp://"])
        ]
    if any(w in lowered for w in ("sql", "query")):
        ops += [lambda: rng.choice(["DROP TABLE x", "SELECT pg_sleep(60)", "COPY x TO '/tmp/y'", "SELECT 1; SELECT 2"])]
    return ops


def bad_arguments(input_schema: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One argument set for a tool with ``input_schema``, built to have one thing wrong (seeded by ``rng``)."""
    schema = Schema(input_schema)
    props = schema.properties()
    required = [r for r in schema.required() if r in props]
    args: dict[str, Any] = {k: schema.plausible(props[k]) for k in required}
    # Often fill in an optional argument too, so the mutations reach it.
    for key in props:
        if key not in args and rng.random() < 0.3:
            args[key] = schema.plausible(props[key])
    roll = rng.random()
    if required and roll < 0.12:
        del args[rng.choice(required)]
        return args
    if roll < 0.2 or not props:
        args[rng.choice(["no_such_argument", "__proto__", "x" * 300, "\x00"])] = rng.choice([1, "x", None, _HUGE])
        return args
    target = rng.choice(list(props))
    args[target] = rng.choice(_mutations(schema, target, props[target], rng))()
    return args


@dataclasses.dataclass(frozen=True)
class Outcome:
    tool: str
    replied: bool
    is_error: bool
    internal: bool
    text_len: int
    seconds: float
    crashed: bool
    wrote: tuple[str, ...] = ()


def _text(result: Any) -> str:
    return "".join(getattr(c, "text", "") or "" for c in result.content)


async def call_once(client: Client, tool: str, args: dict[str, Any], call_timeout: float = CALL_TIMEOUT) -> Outcome:
    """Call ``tool``; a hang, a dropped connection or a protocol error is recorded, not raised."""
    started = time.perf_counter()
    try:
        with anyio.fail_after(call_timeout):
            result = await client.call_tool(tool, args)
    except TimeoutError:
        return Outcome(tool, False, True, False, 0, time.perf_counter() - started, False)
    except MCPError as exc:  # a JSON-RPC error reply: answered, an error
        text = str(exc)
        return Outcome(tool, True, True, "Internal error" in text, len(text), time.perf_counter() - started, False)
    except Exception:
        return Outcome(tool, False, True, False, 0, time.perf_counter() - started, True)
    text = _text(result)
    elapsed = time.perf_counter() - started
    return Outcome(tool, True, bool(result.is_error), "Internal error" in text, len(text), elapsed, False)


def broken(outcome: Outcome) -> list[str]:
    """The rules ``outcome`` breaks."""
    faults = []
    if outcome.crashed:
        faults.append("crash")
    elif not outcome.replied:
        faults.append("no reply in time")
    if outcome.internal:
        faults.append("Internal error")
    if outcome.is_error and outcome.wrote:
        faults.append(f"a failed call changed {', '.join(outcome.wrote)}")
    if outcome.is_error and outcome.text_len > MAX_ERROR_TEXT:
        faults.append(f"error text of {outcome.text_len} chars")
    return faults


async def fingerprint(conn: asyncpg.Connection, schema: str) -> list[tuple[str, int, int]]:
    """Per table of ``schema``: its row count and newest row version (an insert, update or delete moves one)."""
    tables = await conn.fetch(
        "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) AS t FROM pg_catalog.pg_tables "
        "WHERE schemaname = $1 AND tablename <> 'schema_migrations' ORDER BY 1",
        schema,
    )
    prints = []
    for row in tables:
        n, x = await conn.fetchrow(f"SELECT count(*), coalesce(max(xmin::text::bigint), 0) FROM {row['t']}") or (0, 0)
        prints.append((str(row["t"]), int(n), int(x)))
    return prints


async def probe_server(
    name: str,
    calls: int,
    seed: int,
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    data_dir: Path,
    call_timeout: float = CALL_TIMEOUT,
) -> list[tuple[Outcome, dict[str, Any]]]:
    """``calls`` bad calls spread over the tools of server ``name``; respawns it after a crash."""
    rng = random.Random(f"{seed}:{name}")
    params = server_params(name, database_url, redis_url, redis_prefix, data_dir)
    done: list[tuple[Outcome, dict[str, Any]]] = []
    conn = await asyncpg.connect(database_url)
    try:
        while len(done) < calls:
            async with Client(params, read_timeout_seconds=120) as client:
                tools = sorted((await client.list_tools()).tools, key=lambda t: t.name)
                while len(done) < calls:
                    tool = tools[len(done) % len(tools)]
                    args = bad_arguments(tool.input_schema, rng)
                    before = await fingerprint(conn, name)
                    outcome = await call_once(client, tool.name, args, call_timeout)
                    if outcome.is_error:
                        after = await fingerprint(conn, name)
                        # Tables created meanwhile are the server's lazy migrations, not the call's writes.
                        both = {t for t, *_ in before} & {t for t, *_ in after}
                        changed = tuple(
                            sorted({t for t, *_ in set(after) ^ set(before) if t in both} - UNCHECKED_TABLES.keys())
                        )
                        outcome = dataclasses.replace(outcome, wrote=changed)
                    done.append((outcome, args))
                    if outcome.crashed:
                        break
    finally:
        await conn.close()
    return done


def _short(args: dict[str, Any]) -> str:
    text = repr(args)
    return text if len(text) <= 160 else text[:160] + "..."


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


def report(results: dict[str, list[tuple[Outcome, dict[str, Any]]]]) -> int:
    """Print the table and the broken calls; the number of broken calls."""
    headers = ["server", "calls", "errors", "internal", "over 1 KB", "no reply", "crashes", "wrote", "slowest"]
    rows: list[list[str]] = []
    faults: list[str] = []
    for name, done in results.items():
        outs = [o for o, _ in done]
        slowest = max(outs, key=lambda o: o.seconds) if outs else None
        rows.append(
            [
                name,
                str(len(outs)),
                str(sum(o.is_error for o in outs)),
                str(sum(o.internal for o in outs)),
                str(sum(o.is_error and o.text_len > MAX_ERROR_TEXT for o in outs)),
                str(sum(not o.replied and not o.crashed for o in outs)),
                str(sum(o.crashed for o in outs)),
                str(sum(o.is_error and bool(o.wrote) for o in outs)),
                f"{slowest.seconds:.2f} s ({slowest.tool})" if slowest else "-",
            ]
        )
        faults += [f"{name}.{o.tool}: {', '.join(broken(o))}: {_short(a)}" for o, a in done if broken(o)]
    cells = [headers, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        _say(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            _say("-+-".join("-" * w for w in widths))
    for fault in faults:
        _say(fault)
    return len(faults)


async def run(calls: int, seed: int, names: list[str], redis_url: str) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bad_calls_"))
    server, cluster = start_cluster(tmp / "pg")
    try:
        url = await asyncio.to_thread(create_database, cluster, "bad_calls")
        results: dict[str, list[tuple[Outcome, dict[str, Any]]]] = {}
        share = max(1, calls // len(names))
        prefix = f"badcalls{uuid.uuid4().hex[:8]}"
        for name in names:
            results[name] = await probe_server(name, share, seed, url, redis_url, prefix, tmp / "data")
        return report(results)
    finally:
        server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=1000, help="bad calls in all, shared equally by the servers")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--servers", default=",".join(registry.names()), help="comma-separated server names")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ns = parser.parse_args()
    names = [n.strip() for n in ns.servers.split(",") if n.strip()]
    faults = asyncio.run(run(ns.calls, ns.seed, names, ns.redis_url))
    sys.exit(1 if faults else 0)


if __name__ == "__main__":
    main()
