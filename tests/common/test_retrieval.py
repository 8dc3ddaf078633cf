"""The retrieval kit: fusion, token budgets and keyword query text."""

from __future__ import annotations

import pytest

from common.retrieval import any_word_tsquery, estimate_tokens, pack, query_words, rrf, rrf_rank


def test_rrf_ranks_an_item_found_by_both_lists_first() -> None:
    scores = rrf([["a", "b", "c"], ["c", "d"]])
    assert max(scores, key=lambda k: scores[k]) == "c"
    assert scores["a"] == pytest.approx(1 / 61)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert rrf_rank(None) == 0.0
    assert rrf_rank(1) == pytest.approx(1 / 61)


def test_rrf_weights_scale_each_list() -> None:
    scores = rrf([["a"], ["b"]], weights=[2.0, 1.0])
    assert scores["a"] == pytest.approx(2 * scores["b"])
    with pytest.raises(ValueError, match="one weight per list"):
        rrf([["a"]], weights=[1.0, 2.0])


def test_packing_skips_what_does_not_fit_and_keeps_later_small_blocks() -> None:
    items = [("1", "x" * 40), ("2", "y" * 400), ("3", "z" * 8)]
    blocks, ids, used, omitted = pack(items, budget=15)
    assert ids == ["1", "3"]
    assert omitted == 1
    assert used == estimate_tokens("x" * 40) + 1 + estimate_tokens("z" * 8) + 1
    assert blocks == ["x" * 40, "z" * 8]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("How do I deploy?", "how | do | deploy"),
        ("a & b | !c ('quoted') <-> x:*", "quoted"),
        ("naïve café ünïcode 東京", "naïve | café | ünïcode | 東京"),
        ("snake_case words", "snake | case | words"),
    ],
)
def test_any_word_queries_contain_only_words(text: str, expected: str) -> None:
    assert any_word_tsquery(text) == expected


def test_query_words_are_distinct_and_capped() -> None:
    assert query_words("the the cat cat") == ["the", "cat"]
    assert len(query_words(" ".join(f"w{i}" for i in range(100)))) == 32
