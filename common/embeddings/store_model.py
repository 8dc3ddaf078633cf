"""One embedding model per store: the model a server's schema is embedded with, and the switch to another.

A schema whose rows carry vectors keeps a one-row table ``store_model`` (:data:`STORE_MODEL_DDL`: a
migration line ``-- @include store_model`` creates it; the migration seeds it from the data's model). :func:`bind` (called by
``common.runtime.open_deps``) records the configured model in a store that has none yet, and wraps
the process's embedder in a :class:`StoreEmbedder`, which always embeds with the store's model:

- a process configured with another ``EMBEDDING_MODEL`` follows the store (``EMBEDDING_MODEL_POLICY=follow``,
  the default, logs it once) or refuses every embedding with a message naming both models and the
  switch command (``refuse``), instead of finding nothing because its vectors match no row;
- :func:`switch` is the one way to change a store's model: it records the target, re-embeds every
  row in batches through the server's step, then flips the row; run again, it resumes where it
  stopped (the step only picks rows not yet embedded with the target). Every process re-reads the
  row at most every :data:`RECHECK_S` (as a tool call begins, or when it embeds), so all of them
  follow the flip.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from common.errors import Conflict, InvalidInput
from common.logging import get_logger
from common.migrate import kit_sql

if TYPE_CHECKING:
    import numpy as np

    from common.db import Database
    from common.embeddings.base import Embedder

log = get_logger(__name__)

#: The table's DDL (schema-local names); a server's migration creates it with ``-- @include store_model``.
STORE_MODEL_DDL = kit_sql("store_model")

#: Seconds a process trusts the store model it read last; the switch's flip reaches it within this.
RECHECK_S = 2.0
#: Rows one step of a switch re-embeds (and writes) at most.
SWITCH_BATCH = 128

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./:-]{0,199}$")

#: ``await step(embedder, limit)``: re-embed at most ``limit`` rows not yet embedded by
#: ``embedder.model_name`` with it, and say how many it picked (0: none are left).
ReembedStep = Callable[["Embedder", int], Awaitable[int]]
#: ``await progress(done, total, message)``, as tools report MCP progress.
Progress = Callable[[float, float | None, str], Awaitable[None]]


@dataclass(frozen=True)
class StoreModel:
    """A store's row: its model, and the model a switch under way goes to."""

    model: str
    target: str | None = None
    done: int = 0


@dataclass(frozen=True)
class Switched:
    """What :func:`switch` did."""

    schema: str
    previous: str
    model: str
    reembedded: int


def _table(schema: str) -> str:
    if not _SCHEMA.match(schema):
        raise ValueError(f"not a schema name: {schema[:40]!r}")
    return f"{schema}.store_model"


def check_model_name(model: str) -> str:
    """``model`` if it looks like a model name (``org/name``, ``hash-384``); InvalidInput otherwise."""
    if not _MODEL.match(model):
        raise InvalidInput(
            f"{model[:40]!r} is not a model name: use letters, digits and . _ / : - (at most 200), e.g. "
            "'sentence-transformers/all-MiniLM-L6-v2'."
        )
    return model


async def read(db: Database, schema: str) -> StoreModel | None:
    """The store's row; None when the schema has no ``store_model`` table or no model recorded yet."""
    import asyncpg

    sql = f"SELECT model, target_model, switch_done FROM {_table(schema)}"
    try:
        row = await db.fetchrow(sql)
    except asyncpg.UndefinedTableError:
        return None
    return None if row is None else StoreModel(row["model"], row["target_model"], int(row["switch_done"]))


async def claim(db: Database, schema: str, model: str) -> StoreModel:
    """Record ``model`` as the store's model unless one is recorded already; the row as it is then."""
    await db.execute(f"INSERT INTO {_table(schema)} (model) VALUES ($1) ON CONFLICT DO NOTHING", model)
    state = await read(db, schema)
    assert state is not None
    return state


def mismatch_message(schema: str, store: str, configured: str) -> str:
    """What a process configured with another model than its store's is told (names both and the fix)."""
    return (
        f"The {schema} store's vectors are made by {store!r}, but this process has EMBEDDING_MODEL={configured!r} "
        f"(and EMBEDDING_MODEL_POLICY=refuse). Set EMBEDDING_MODEL={store!r}, or switch the store to the new "
        f"model once: `mcp-suite reembed {schema} --model {configured}` (every process follows)."
    )


class StoreEmbedder:
    """The process's embedder for one store: it embeds with the store's model, whatever was configured.

    The store's row is re-read at most every :attr:`recheck_s`, when a tool call begins
    (:meth:`begin_call`, from ``common.runtime``) and when work outside a tool call embeds. A tool
    call keeps the model it began with to its end (a context variable), so the model it filters
    rows by and the model of its vectors never differ, even when a switch flips meanwhile. Outside
    a tool call, an embedding that straddles a flip is redone with the new model, so a caller that
    reads ``model_name`` after ``embed`` labels its vectors right.
    """

    def __init__(
        self,
        db: Database,
        schema: str,
        configured: Embedder,
        make: Callable[[str], Embedder],
        state: StoreModel,
        policy: Literal["follow", "refuse"] = "follow",
    ) -> None:
        self.db = db
        self.schema = schema
        self.configured = configured
        self.policy = policy
        self._current = state.model
        #: The model a switch under way goes to (None when none is).
        self.switching_to = state.target
        self.recheck_s = RECHECK_S
        self._make = make
        self._embedders: dict[str, Embedder] = {configured.model_name: configured}
        self._pinned: ContextVar[str | None] = ContextVar(f"store_model_{schema}", default=None)
        self._checked_at = time.monotonic()
        self._generation = 0
        self._warned = False
        self._note_mismatch()

    @property
    def model_name(self) -> str:
        """The store's model: as the current tool call began, or as last read outside one."""
        return self._pinned.get() or self._current

    @model_name.setter
    def model_name(self, model: str) -> None:
        self._current = model

    def _note_mismatch(self) -> None:
        if self.configured.model_name != self._current and self.policy == "follow" and not self._warned:
            self._warned = True
            log.warning(
                "embedding_model_follows_store",
                schema=self.schema,
                store_model=self._current,
                configured=self.configured.model_name,
            )

    def _inner(self, model: str) -> Embedder:
        inner = self._embedders.get(model)
        if inner is None:
            inner = self._embedders[model] = self._make(model)
        return inner

    @property
    def dim(self) -> int:
        return self._inner(self.model_name).dim

    @property
    def loaded(self) -> bool:
        return self._inner(self.model_name).loaded

    async def refresh(self, *, force: bool = False) -> None:
        """Re-read the store's model if the last read is older than :attr:`recheck_s` (or ``force``)."""
        now = time.monotonic()
        if not force and now - self._checked_at < self.recheck_s:
            return
        try:
            state = await read(self.db, self.schema)
        except Exception as exc:  # the call itself reports an unreachable database; keep the model known
            log.warning("store_model_check_failed", schema=self.schema, error=str(exc)[:200])
            return
        self._checked_at = now
        if state is None:
            return
        self.switching_to = state.target
        if state.model != self._current:
            log.info("store_model_changed", schema=self.schema, previous=self._current, model=state.model)
            self._current = state.model
            self._generation += 1
            self._note_mismatch()

    async def begin_call(self) -> None:
        """A tool call begins: see a flip (if the last read is old enough), then keep this model to its end."""
        await self.refresh()
        self._pinned.set(self._current)

    def _allowed(self, model: str) -> Embedder:
        if self.policy == "refuse" and self.configured.model_name != model:
            raise Conflict(mismatch_message(self.schema, model, self.configured.model_name))
        return self._inner(model)

    async def embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Embed with the store's model (see the class docstring)."""
        pinned = self._pinned.get()
        if pinned is not None:
            return await self._allowed(pinned).embed(texts)
        await self.refresh()
        while True:
            generation = self._generation
            out = await self._allowed(self._current).embed(texts)
            if generation == self._generation:
                return out

    async def embed_one(self, text: str, *, beside_work: bool = False) -> np.ndarray:
        """One text, with the store's model."""
        pinned = self._pinned.get()
        if pinned is not None:
            return await self._allowed(pinned).embed_one(text, beside_work=beside_work)
        await self.refresh()
        while True:
            generation = self._generation
            out = await self._allowed(self._current).embed_one(text, beside_work=beside_work)
            if generation == self._generation:
                return out


async def bind(
    db: Database,
    schema: str,
    configured: Embedder,
    make: Callable[[str], Embedder],
    policy: Literal["follow", "refuse"] = "follow",
) -> Embedder:
    """The embedder a process of ``schema`` uses: ``configured`` when the schema keeps no store model,
    else a :class:`StoreEmbedder` (recording ``configured``'s model if the store has none yet)."""
    state = await read(db, schema)
    if state is None:
        import asyncpg

        try:
            state = await claim(db, schema, configured.model_name)
        except asyncpg.UndefinedTableError:
            return configured
    return StoreEmbedder(db, schema, configured, make, state, policy)


async def switch(
    db: Database,
    schema: str,
    target: Embedder,
    step: ReembedStep,
    *,
    batch: int = SWITCH_BATCH,
    progress: Progress | None = None,
) -> Switched:
    """Switch ``schema``'s store to ``target``'s model: record it, re-embed every row, flip, sweep stragglers.

    Interrupted, it is resumed by running it again with the same model; a switch to another model
    than the one under way is refused (:func:`cancel_switch` first).
    """
    table = _table(schema)
    model = check_model_name(target.model_name)
    state = await read(db, schema)
    if state is None:
        await db.execute(f"INSERT INTO {table} (model) VALUES ($1) ON CONFLICT DO NOTHING", model)
        state = await read(db, schema)
        if state is None:
            raise InvalidInput(f"The {schema} schema keeps no store model (no store_model table); nothing to switch.")
    if state.target is not None and state.target != model:
        raise Conflict(
            f"A switch of {schema} to {state.target!r} is under way ({state.done} rows re-embedded). Resume it "
            f"with `mcp-suite reembed {schema} --model {state.target}`, or drop it with "
            f"`mcp-suite reembed {schema} --cancel` before switching to {model!r}."
        )
    previous = state.model
    if previous != model:
        await db.execute(
            f"UPDATE {table} SET target_model = $1, switch_started_at = coalesce(switch_started_at, now()), "
            "updated_at = now()",
            model,
        )
        log.info("store_model_switch_started", schema=schema, previous=previous, model=model, resumed=state.done)
    done = 0

    async def run_steps() -> None:
        nonlocal done
        while picked := await step(target, batch):
            done += picked
            await db.execute(f"UPDATE {table} SET switch_done = switch_done + $1, updated_at = now()", picked)
            if progress is not None:
                await progress(float(done), None, f"{done} rows re-embedded with {model}")

    await run_steps()
    await db.execute(
        f"UPDATE {table} SET model = $1, target_model = NULL, switch_started_at = NULL, switch_done = 0, "
        "updated_at = now()",
        model,
    )
    # Rows another process wrote with the previous model between the last step and the flip.
    await run_steps()
    log.info("store_model_switched", schema=schema, previous=previous, model=model, reembedded=done)
    return Switched(schema=schema, previous=previous, model=model, reembedded=done)


async def cancel_switch(db: Database, schema: str) -> StoreModel | None:
    """Drop a switch under way: the store keeps its model (rows already re-embedded count as another model's)."""
    await db.execute(
        f"UPDATE {_table(schema)} SET target_model = NULL, switch_started_at = NULL, switch_done = 0, "
        "updated_at = now()"
    )
    return await read(db, schema)


__all__ = [
    "RECHECK_S",
    "STORE_MODEL_DDL",
    "ReembedStep",
    "StoreEmbedder",
    "StoreModel",
    "Switched",
    "bind",
    "cancel_switch",
    "claim",
    "mismatch_message",
    "read",
    "switch",
]
