"""`loops`: when a sample is stuck repeating itself (no model needed)."""

from __future__ import annotations

from stackmind.llm.base import LOOP_TOKENS, loops


def test_one_token_over_and_over_is_a_loop_once_it_covers_the_least_span() -> None:
    assert not loops([7] * LOOP_TOKENS)
    assert loops([7] * (LOOP_TOKENS + 1))


def test_a_sentence_three_times_is_a_loop_twice_is_not() -> None:
    sentence = list(range(100, 130))  # 30 tokens
    assert loops([1, 2, 3] + sentence * 3)
    assert not loops([1, 2, 3] + sentence * 2 + sentence[:-1])
    assert not loops(sentence * 2 + sentence[:20])  # the third copy unfinished


def test_text_that_moves_on_is_not_a_loop() -> None:
    assert not loops(list(range(500)))
    counting = [t for i in range(60) for t in (1000 + i, 11)]  # "1, 2, 3, ..." : a comma between new numbers
    assert not loops(counting)
    assert not loops([5, 6] * 20)  # 40 tokens: short of the least span


def test_a_span_longer_than_the_period_limit_is_not_looked_for() -> None:
    long = list(range(200, 280))  # 80 tokens
    assert not loops(long * 3)
    assert loops(long * 3, period=80)
