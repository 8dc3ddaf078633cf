"""The plain functions behind recall, without MCP or a database."""

from __future__ import annotations

import pytest

from servers.memory_management import ranking
from servers.memory_management.store import content_hash


def test_a_memory_top_of_both_lists_outranks_one_top_of_a_single_list() -> None:
    base = {"importance": 0.5, "age_s": 0.0, "useful_count": 0, "not_useful_count": 0}
    both = {"id": "a", "sem_rank": 2, "kw_rank": 2, **base}
    one = {"id": "b", "sem_rank": 1, "kw_rank": None, **base}
    scored = ranking.fuse([one, both], lists=2)
    assert [s.row["id"] for s in scored] == ["a", "b"]
    assert scored[0].score <= 1.1


def test_boosts_reorder_near_ties_but_not_a_clear_relevance_gap() -> None:
    row = {"age_s": 0.0, "useful_count": 0, "not_useful_count": 0}
    top = {"id": "top", "sem_rank": 1, "kw_rank": 1, "importance": 0.0, **row}
    far = {"id": "far", "sem_rank": 40, "kw_rank": None, "importance": 1.0, "useful_count": 50, "age_s": 0.0}
    assert [s.row["id"] for s in ranking.fuse([far, top], lists=2)] == ["top", "far"]
    a = {"id": "a", "sem_rank": 3, "kw_rank": None, "importance": 0.5, **row}
    b = {"id": "b", "sem_rank": 4, "kw_rank": None, "importance": 0.9, **row}
    assert [s.row["id"] for s in ranking.fuse([a, b], lists=1)] == ["b", "a"]


def test_near_duplicate_pairs_group_transitively() -> None:
    groups = ranking.group_pairs([("a", "b", 0.95), ("b", "c", 0.93), ("x", "y", 0.99)])
    assert groups == [(["x", "y"], 0.99), (["a", "b", "c"], 0.93)]


def test_dedupe_key_ignores_case_and_whitespace_only() -> None:
    assert content_hash("Deploy  on\nTuesday") == content_hash("deploy on tuesday")
    assert content_hash("deploy on tuesday") != content_hash("deploy on wednesday")


def test_touch_sql_inlines_only_uuids() -> None:
    from servers.memory_management.store import touch_sql

    good = "6f1c7a52-0b8e-4c55-9a57-5a0b3f8d2e11"
    other = "0a1c7a52-0b8e-4c55-9a57-5a0b3f8d2e11"
    sql = touch_sql([good, other, good])  # a batch of several recalls: an id counts once per access
    assert f"('{good}'::uuid,2)" in sql
    assert f"('{other}'::uuid,1)" in sql
    assert "synchronous_commit = off" in sql
    with pytest.raises(ValueError, match="badly formed"):
        touch_sql(["x'); DROP TABLE memories; --"])
