"""Keyword plans from PostgreSQL's own lexeme statistics (common.keywords)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from common import keywords
from common.keywords import ENGLISH_SEED, ElementStats, KeywordPlanner, quote, to_tsquery, words

pytestmark = pytest.mark.anyio

COMMON = ["deploy", "cache", "queue", "billing"]


async def _table(url: str, rows: int) -> asyncpg.Connection:
    """``kw.docs``: every row has two of four common words; one row in 500 also has 'zeppelin'."""
    conn = await asyncpg.connect(url, server_settings={"search_path": "kw"})
    await conn.execute(
        "DROP SCHEMA IF EXISTS kw CASCADE; CREATE SCHEMA kw;"
        "CREATE TABLE kw.docs (id int PRIMARY KEY, body text, tsv tsvector GENERATED ALWAYS AS "
        "(to_tsvector('english', body)) STORED); CREATE INDEX ON kw.docs USING gin (tsv)"
    )
    await conn.executemany(
        "INSERT INTO kw.docs (id, body) VALUES ($1, $2)",
        [
            (i, f"{COMMON[i % 4]} {COMMON[(i + 1) % 4]} item {i}" + (" zeppelin" if i % 500 == 0 else ""))
            for i in range(rows)
        ],
    )
    return conn


def test_words_are_lowercased_distinct_and_free_of_query_syntax() -> None:
    assert words("Deploy & deploy | !cache:* 'x'") == ["deploy", "cache", "x"]
    assert quote("o'neil") == "'o''neil'"


async def test_small_tables_and_unanalysed_tables_match_any_word(database_url: str) -> None:
    conn = await _table(database_url, 300)
    try:
        plan = await KeywordPlanner("docs", scan_cap=500).plan(conn, "deploy the zeppelin")
        assert plan is not None
        assert plan.mode == "any"
        assert plan.match == plan.rank == "'deploy' | 'zeppelin'"  # stop word gone
        assert await KeywordPlanner("docs").plan(conn, "the of and") is None  # only stop words
    finally:
        await conn.close()


async def test_large_tables_filter_by_rare_words_or_by_all_common_ones(database_url: str) -> None:
    conn = await _table(database_url, 20_000)
    try:
        await conn.execute("ANALYZE kw.docs")
        planner = KeywordPlanner("docs", scan_cap=500)
        rare = await planner.plan(conn, "zeppelin deploy")
        assert rare is not None
        assert rare.mode == "rare"
        assert rare.match == "'zeppelin'"  # 40 rows; 'deploy' alone would hand 10,000 to ranking
        assert rare.rank == "'zeppelin' | 'deploy'"
        common = await planner.plan(conn, "deploy cache")
        assert common is not None
        assert common.mode == "all"
        assert common.match == "'deploy' & 'cache'"
        hits = await conn.fetchval(f"SELECT count(*) FROM kw.docs WHERE tsv @@ {common.sql('$1')}", common.match)
        assert 0 < hits < 20_000 / 2
        # Both words are in half of the rows: common. 'zeppelin' (one row in 500) is not, and one
        # word that is not common keeps the plan from being only common.
        assert common.only_common
        assert not rare.only_common
        alone = await planner.plan(conn, "zeppelin")
        assert alone is not None
        assert not alone.only_common
        roomy = await KeywordPlanner("docs", scan_cap=15_000).plan(conn, "deploy")
        assert roomy is not None
        assert roomy.mode == "any"  # fits the cap, yet still a word in half of the rows
        assert roomy.only_common
        elements = ElementStats("docs", "tsv")
        assert await elements.rarest(conn, ["deploy", "zeppelin", "cach"], 1) == ["zeppelin"]
    finally:
        await conn.close()


async def test_statistics_are_cached_until_forgotten(database_url: str) -> None:
    conn = await _table(database_url, 2_000)
    try:
        assert await ElementStats("docs", "tsv").rarest(conn, ["deploy", "zeppelin"], 1) == ["deploy", "zeppelin"]
        planner = KeywordPlanner("docs", scan_cap=500)
        first = await planner.plan(conn, "deploy")
        assert first is not None
        assert first.mode == "any"  # not analysed yet: frequencies unknown
        await conn.execute("ANALYZE kw.docs")
        again = await planner.plan(conn, "deploy zeppelin")
        assert again is not None
        assert again.mode == "any"  # still the cached (empty) statistics
        planner.forget_stats()
        fresh = await planner.plan(conn, "deploy zeppelin")
        assert fresh is not None
        assert fresh.mode == "rare"
    finally:
        await conn.close()


class _CountingConn:
    """A connection that counts the lexeme look-ups that reach PostgreSQL."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lookups = 0

    async def fetch(self, sql: str, *args: Any) -> Any:
        if "to_tsvector" in sql:
            self.lookups += 1
        return await self.conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self.conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.conn.fetchval(sql, *args)


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planners made in the test start with no word known, as in a process that just started."""
    monkeypatch.setitem(keywords._LEXEME_CACHES, "english", {})
    monkeypatch.setitem(keywords._UNKNOWN, "english", set())


async def test_a_new_word_is_planned_at_once_and_learned_after(database_url: str, fresh_process: None) -> None:
    conn = await _table(database_url, 2_000)
    try:
        await conn.execute("ANALYZE kw.docs")
        counting = _CountingConn(conn)
        planner = KeywordPlanner("docs", scan_cap=500)
        # The first plan of a process waits for one look-up: its words and the English seed.
        assert await planner.plan(counting, "the of and") is None
        assert counting.lookups == 1
        word = f"quokka{uuid.uuid4().hex[:8]}"
        plan = await KeywordPlanner("docs", scan_cap=500).plan(counting, f"Deploying the {word}")
        assert counting.lookups == 1  # planned without asking: the stem guessed 'deploy'
        assert plan is not None
        assert plan.guessed
        assert plan.rank == f"'deploying' | '{word}'"  # 'the' is a known stop word
        assert plan.match == f"'{word}'"  # 'deploy' is in half of the rows: the guess found it common
        # PostgreSQL stems the words itself: 'deploying' matches the rows that say 'deploy'.
        hits = await conn.fetchval(f"SELECT count(*) FROM kw.docs WHERE tsv @@ {plan.sql('$1')}", plan.rank)
        assert hits == 1_000
        assert planner.pending  # both planners share what they have not learned yet
        await planner.learn(counting)
        assert counting.lookups == 2
        assert not planner.pending
        again = await planner.plan(counting, f"{word} deploying")
        assert again is not None
        assert not again.guessed
        assert counting.lookups == 2
    finally:
        await conn.close()


async def test_the_english_seed_holds_every_stop_word_of_postgresql(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        share = await conn.fetchval("SELECT setting FROM pg_config WHERE name = 'SHAREDIR'")
        stop = set((Path(share) / "tsearch_data" / "english.stop").read_text().split())
        assert len(stop) > 100
        assert stop <= set(ENGLISH_SEED), sorted(stop - set(ENGLISH_SEED))
        dropped = await conn.fetchval(
            "SELECT count(*) FROM unnest($1::text[]) w WHERE to_tsvector('english', w) = ''::tsvector", list(stop)
        )
        assert dropped == len(stop)
    finally:
        await conn.close()


def test_configuration_names_are_checked_before_they_reach_sql() -> None:
    assert to_tsquery("$3", "pg_catalog.english") == "to_tsquery('pg_catalog.english'::regconfig, $3)"
    with pytest.raises(ValueError, match="configuration"):
        KeywordPlanner("docs", config="english'); DROP TABLE x; --")


async def test_any_text_makes_a_query_postgresql_accepts(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        text = "² café ﬁle 1e5 v2 x86_64 naïve 東京 12abc -- ' \\ :* & | ! (deploy) <-> o'neil"
        plan = await KeywordPlanner("docs", scan_cap=500).plan(conn, text)
        assert plan is not None
        query = await conn.fetchval(f"SELECT {plan.sql('$1')}::text", plan.rank)
        assert "'deploy'" in query
        assert "'naïv'" in query  # stemmed by PostgreSQL
        assert "'neil'" in query  # the quote split the word; nothing reached the query syntax
    finally:
        await conn.close()
