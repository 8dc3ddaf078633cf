"""Keyword plans from PostgreSQL's own lexeme statistics (common.keywords)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from common.keywords import ElementStats, KeywordPlanner, quote, words

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
        assert plan.match == plan.rank == "'deploy' | 'zeppelin'"  # stemmed lexemes, stop word gone
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
        assert common.match == "'deploy' & 'cach'"
        hits = await conn.fetchval("SELECT count(*) FROM kw.docs WHERE tsv @@ $1::tsquery", common.match)
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


async def test_planners_of_one_config_look_a_new_word_up_once(database_url: str) -> None:
    conn = await _table(database_url, 100)
    try:
        counting = _CountingConn(conn)
        word = f"quokka{uuid.uuid4().hex[:8]}"
        first = await KeywordPlanner("docs").plan(counting, f"deploying {word}")
        assert counting.lookups == 1
        second = await KeywordPlanner("docs", column="tsv").plan(counting, f"{word} deploying")
        assert counting.lookups == 1  # the other planner already knew both words
        assert first is not None
        assert second is not None
        assert set(first.rank.split(" | ")) == set(second.rank.split(" | ")) == {"'deploy'", f"'{word}'"}
    finally:
        await conn.close()
