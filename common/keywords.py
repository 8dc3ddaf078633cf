"""Full-text candidates with bounded work: which query words filter, which only rank.

PostgreSQL ranks full-text hits (``ts_rank_cd``) row by row, so a keyword search costs as much as
the rows its query matches. A question made of common words ("deploy cache queue") OR-ed together
matches most of a large store and costs hundreds of milliseconds at 100k rows, while a GIN index
answers a rare word in microseconds. Search engines solve this with document frequencies (a word
in a third of all documents carries almost no weight in BM25), and PostgreSQL already keeps them:
``ANALYZE`` records the most common lexemes of a tsvector column and their frequencies in
``pg_stats``. :class:`KeywordPlanner` reads those (cached per process), then

* filters with the OR of the rarest words whose estimated hits stay under ``scan_cap`` rows,
* or, when even the rarest word is common, with the AND of every word (rows having them all),
* and always ranks with the OR of every word, so matching more words still ranks higher,

and the SQL caps the scanned rows at ``scan_cap`` whatever the estimate said. Small tables, and
tables never analysed, get the plain OR of every word: exact, and cheap at that size.

A plan names words, not lexemes: the SQL turns them into a query with ``to_tsquery(config, ...)``,
so PostgreSQL stems exactly as it stemmed the documents. Lexemes only serve the estimate, and a
word this process has not met yet gets a local Snowball stem for it (the algorithm PostgreSQL's
dictionaries run; the two agreed on all but 2 of 28k words of the Python docs) while its exact
lexemes are fetched after the answer (:meth:`KeywordPlanner.learn`). Asking first cost every
search with a new word a round trip before its statement could start (~0.4-1 ms on 2 busy cores).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import snowballstemmer

#: Rows a keyword filter may hand to ranking; also the LIMIT the SQL applies.
DEFAULT_SCAN_CAP = 500
#: A word in at least this share of the rows is common: BM25 gives it an IDF under 2.2 (a word in one
#: row of a thousand gets ~6.9), and matching it reads a posting list a tenth of the table long.
COMMON_WORD_SHARE = 0.1
#: Most distinct words of one query that take part.
MAX_QUERY_TERMS = 32
#: How long one process trusts the statistics it read.
STATS_TTL_S = 60.0
_MAX_CACHED_WORDS = 50_000
#: Most words waiting for ``learn`` (a caller that never learns cannot grow the set without end).
_MAX_UNKNOWN = 4_096
#: Words' lexemes by text search configuration, shared by the planners of a process.
_LEXEME_CACHES: dict[str, dict[str, tuple[str, ...]]] = {}
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CONFIG = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
#: Words met by guess, by configuration: their exact lexemes are fetched by ``learn``.
_UNKNOWN: dict[str, set[str]] = {}
#: English words PostgreSQL's english configuration may drop (a superset of its english.stop): looked
#: up with the first new words of a process, so a stop word is never planned by guess.
_ENGLISH_SEED_TEXT = (
    "a about above after again against all am an and any are as at be because been before being below "
    "between both but by can could did do does doing don down during each few for from further had has "
    "have having he her here hers herself him himself his how i if in into is it its itself just me more "
    "most my myself no nor not now of off on once only or other our ours ourselves out over own s same "
    "she should so some such t than that the their theirs them themselves then there these they this "
    "those through to too under until up very was we were what when where which while who whom why will "
    "with would you your yours yourself yourselves "
)
ENGLISH_SEED = tuple(_ENGLISH_SEED_TEXT.split())

_LEXEMES = """
SELECT w, coalesce((SELECT array_agg(lexeme ORDER BY lexeme) FROM unnest(to_tsvector($2::regconfig, w))), '{}') AS lex
FROM unnest($1::text[]) AS w
"""

_STATS = """
SELECT s.most_common_elems::text::text[] AS elems, s.most_common_elem_freqs AS freqs,
       (SELECT c.reltuples FROM pg_class c WHERE c.oid = to_regclass(quote_ident(current_schema()) || '.' || quote_ident($1)))
           AS rows
FROM (SELECT 1) AS one
LEFT JOIN pg_stats s ON s.schemaname = current_schema() AND s.tablename = $1 AND s.attname = $2
"""


def words(text: str) -> list[str]:
    """The distinct lower-cased words of ``text`` (letters and digits only, so no tsquery syntax gets in)."""
    return list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))[:MAX_QUERY_TERMS]


def quote(word: str) -> str:
    """A word or lexeme as one quoted tsquery operand."""
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def to_tsquery(param: str, config: str = "english") -> str:
    """SQL that makes a plan's ``match`` or ``rank`` (bound to ``param``, e.g. ``$3``) a tsquery.

    ``to_tsquery`` stems each quoted word with ``config`` exactly as ``to_tsvector`` stemmed the
    documents and drops stop words (a query left empty matches nothing).
    """
    if not _CONFIG.match(config):
        raise ValueError(f"not a text search configuration name: {config!r}")
    return f"to_tsquery('{config}'::regconfig, {param})"


def _stemmer(config: str) -> Any:
    """A Snowball stemmer for the configuration's language, or None (``simple`` and the unknown)."""
    language = config.rsplit(".", 1)[-1]
    return snowballstemmer.stemmer(language) if language in snowballstemmer.algorithms() else None


@dataclass(frozen=True)
class KeywordPlan:
    """``match`` selects candidate rows, ``rank`` scores them: quoted words for :func:`to_tsquery`."""

    match: str
    rank: str
    #: "all" (every word must match), "rare" (the rarest words), or "any" (every word, OR-ed).
    mode: str
    #: Every word is common (in at least :data:`COMMON_WORD_SHARE` of the rows): the rows that have
    #: them say little (BM25 weights such words near zero), yet finding them reads long posting lists
    #: and ranks up to the scan cap. A hybrid search may leave ranking to meaning alone; a
    #: keyword-only search still runs the plan.
    only_common: bool = False
    #: Some word's frequency was estimated from a local stem (met for the first time).
    guessed: bool = False
    config: str = "english"

    def sql(self, param: str) -> str:
        """SQL making ``match`` or ``rank``, bound to ``param`` (``$3``), a tsquery of this plan's configuration."""
        return to_tsquery(param, self.config)


@dataclass(frozen=True)
class _Stats:
    freqs: dict[str, float]
    floor: float
    rows: float
    at: float


class ElementStats:
    """How often each element (lexeme of a tsvector, item of an array) occurs in a column, per
    PostgreSQL's last ANALYZE (``pg_stats.most_common_elems``), cached ``ttl_s`` per process.

    Elements not listed are rarer than the least frequent one listed (``floor``). ``floor`` is -1
    when the table was never analysed: then nothing is known.
    """

    def __init__(self, table: str, column: str, *, ttl_s: float = STATS_TTL_S) -> None:
        self.table = table
        self.column = column
        self.ttl_s = ttl_s
        self._stats: _Stats | None = None

    async def get(self, conn: Any) -> _Stats:
        now = time.monotonic()
        if self._stats is None or now - self._stats.at > self.ttl_s:
            row = await conn.fetchrow(_STATS, self.table, self.column)
            elems, freqs = (row["elems"], row["freqs"]) if row is not None else (None, None)
            rows = float(row["rows"] or 0) if row is not None else 0.0
            if elems and freqs and len(freqs) >= len(elems) + 2:
                table = {e: float(f) for e, f in zip(elems, freqs, strict=False)}
                floor = float(freqs[len(elems)])  # the least frequency listed: unlisted elements are rarer
            else:
                table, floor = {}, -1.0  # never analysed: frequencies unknown
            self._stats = _Stats(freqs=table, floor=floor, rows=rows, at=now)
        return self._stats

    def forget(self) -> None:
        self._stats = None

    async def rarest(self, conn: Any, elements: Sequence[str], keep: int) -> list[str]:
        """At most ``keep`` of ``elements``, rarest first (all of them, in order, when nothing is known).

        For an index condition that must hold for all elements (array containment): checking only
        the rarest few finds the same rows once the exact condition rechecks them, and reads the
        index's shortest posting lists instead of its longest.
        """
        stats = await self.get(conn)
        if stats.floor < 0:
            return list(elements)
        return sorted(elements, key=lambda e: (stats.freqs.get(e, stats.floor / 2), e))[:keep]


class KeywordPlanner:
    """Plans keyword queries against one tsvector column; one instance per table and process."""

    def __init__(
        self,
        table: str,
        column: str = "tsv",
        *,
        config: str = "english",
        scan_cap: int = DEFAULT_SCAN_CAP,
        ttl_s: float = STATS_TTL_S,
    ) -> None:
        to_tsquery("$1", config)  # refuses a name that is not one
        self.table = table
        self.column = column
        self.config = config
        self.scan_cap = scan_cap
        self.ttl_s = ttl_s
        # Shared by every planner of this config: a word's lexemes do not depend on the table, and a
        # search that plans two tables (the graph's entities and observations) learns a word once.
        self._lexemes = _LEXEME_CACHES.setdefault(config, {})
        self._unknown = _UNKNOWN.setdefault(config, set())
        self._stem = _stemmer(config)
        self._element_stats = ElementStats(table, column, ttl_s=ttl_s)

    async def _look_up(self, conn: Any, ws: Sequence[str]) -> None:
        if len(self._lexemes) > _MAX_CACHED_WORDS:
            self._lexemes.clear()
        if not self._lexemes and self.config.rsplit(".", 1)[-1] == "english":
            ws = list(dict.fromkeys([*ws, *ENGLISH_SEED]))
        for row in await conn.fetch(_LEXEMES, list(ws), self.config):
            self._lexemes[row["w"]] = tuple(row["lex"])
            self._unknown.discard(row["w"])

    def _guess(self, word: str) -> tuple[str, ...]:
        return (self._stem.stemWord(word) if self._stem is not None and not word.isdigit() else word,)

    @property
    def pending(self) -> bool:
        """Words were planned by guess: :meth:`learn` fetches their lexemes (after the answer)."""
        return bool(self._unknown)

    async def learn(self, conn: Any) -> None:
        """Fetch the exact lexemes of the words planned by guess so far."""
        if self._unknown:
            await self._look_up(conn, sorted(self._unknown)[: MAX_QUERY_TERMS * 8])

    def learn_later(self, background: Any, db: Any) -> None:
        """After the answer, :meth:`learn` on a connection of ``db`` (a ``common.db.Database``).

        Through a ``common.background.Batcher``: the searches of a quarter of a second share one look-up.
        """
        if self._unknown:
            background.batcher(f"lexemes-{self.config}", lambda _: db.run(self.learn)).add([True])

    async def _current_stats(self, conn: Any) -> _Stats:
        return await self._element_stats.get(conn)

    def forget_stats(self) -> None:
        """Read the statistics again on the next plan (after an ANALYZE this process ran)."""
        self._element_stats.forget()

    async def plan(self, conn: Any, text: str) -> KeywordPlan | None:
        """The plan for ``text``, or None when it has no searchable words (only stop words, say).

        Never waits for a lexeme look-up once the process has planned its first query (whose words
        and, for English, :data:`ENGLISH_SEED` it looks up exactly): a new word's frequency is then
        estimated from its local stem, and :meth:`learn` fetches the truth.
        """
        ws = words(text)
        if not ws:
            return None
        if not self._lexemes:
            await self._look_up(conn, ws)
        lexemes: dict[str, tuple[str, ...]] = {}
        guessed = False
        for w in ws:
            known = self._lexemes.get(w)
            if known is None:
                known = self._guess(w)
                if len(self._unknown) < _MAX_UNKNOWN:
                    self._unknown.add(w)
                guessed = True
            if known:  # a stop word has none
                lexemes[w] = known
        if not lexemes:
            return None
        rank = " | ".join(quote(w) for w in lexemes)

        def made(match: str, mode: str, only_common: bool = False) -> KeywordPlan:
            return KeywordPlan(match, rank, mode, only_common=only_common, guessed=guessed, config=self.config)

        stats = await self._current_stats(conn)
        if stats.floor < 0 or stats.rows <= self.scan_cap:
            return made(rank, "any")
        # A word's frequency: that of its rarest lexeme (a word of two lexemes matches as a phrase).
        freq = {w: min(stats.freqs.get(lex, stats.floor) for lex in lexs) for w, lexs in lexemes.items()}
        common = min(freq.values()) >= COMMON_WORD_SHARE
        chosen: list[str] = []
        expected = 0.0
        for w in sorted(lexemes, key=lambda x: (freq[x], x)):
            hits = freq[w] * stats.rows
            if chosen and expected + hits > self.scan_cap:
                break
            chosen.append(w)
            expected += hits
        if len(chosen) == len(lexemes):
            return made(rank, "any", common)
        if expected > self.scan_cap:  # even the rarest word is common: rows with every word
            return made(" & ".join(quote(w) for w in lexemes), "all", common)
        return made(" | ".join(quote(w) for w in chosen), "rare", common)
