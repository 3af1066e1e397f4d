"""Demonstrations are chosen by the kind of goal (its topic, numbers masked), with the real MiniLM
embedder and the starter traces."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackmind.demos import DemoLibrary, gives_data, topic
from stackmind.stepformat import StepFormat

TRACES = Path(__file__).resolve().parents[1] / "traces"


@pytest.fixture(scope="module")
def library() -> DemoLibrary:
    fmt = StepFormat.for_names({"python": "run Python code"})
    return DemoLibrary.load(fmt, [TRACES])


def test_topic_masks_numbers_and_the_answer_form() -> None:
    assert topic("What is 17 * 23? Answer with the number.") == "What is N * N?"
    assert topic("What is 4821 * 3907? Answer with the number.") == "What is N * N?"
    assert topic("Is -3.5 less than 1,024?") == "Is N less than N?"
    assert topic("Add up 3983385, 9375433, 4387898 and 7254658. Answer with the number.") == "Add up N."
    assert topic("Use 2 5 8 11 once each with + - * / to make 24.") == "Use N once each with + - * / to make N."
    assert topic("Answer with the number.") == "Answer with the number."  # nothing else: kept whole


def test_a_product_is_shown_the_product_and_not_a_game_of_24_program(library: DemoLibrary) -> None:
    chosen = library.select("What is 17 * 23? Answer with the number.", 2)
    assert [d.origin for d in chosen] == ["demo-arithmetic-product"]  # the next is far behind: not shown
    assert chosen[0].similarity > 0.95


def test_a_puzzle_is_shown_puzzles(library: DemoLibrary) -> None:
    chosen = library.select("Use 3 3 8 8 once each with + - * / to make 24.", 2)
    assert len(chosen) == 2 and all("game24" in d.origin for d in chosen)
    assert chosen[0].similarity >= chosen[1].similarity >= chosen[0].similarity - library.max_gap


def test_a_greeting_gets_no_arithmetic_and_a_goal_never_itself(library: DemoLibrary) -> None:
    assert [d.origin for d in library.select("Hi there! How are you today?", 2)] == ["demo-chat-greeting"]
    own = next(d for d in library.demos if d.origin == "demo-arithmetic-product")
    assert all(d.goal != own.goal for d in library.select(own.goal, 2))


def test_a_question_of_fact_is_not_shown_a_program_that_only_shares_a_word(library: DemoLibrary) -> None:
    # "capital" of a country against "Capitalise the first letter ...": 0.30, another kind of goal; shown
    # it, the model answered with @python(Paris) to the end of its step budget.
    chosen = library.select("What is the capital of France, and why is it famous?", 2)
    assert "demo-strings-title" not in [d.origin for d in chosen]
    assert all(d.similarity >= library.min_similarity for d in chosen)


def test_a_goal_gives_data_when_it_holds_a_number_a_quoted_span_or_asks_for_a_number() -> None:
    assert gives_data("What is 17 * 23?") and gives_data("Reverse the word 'stack'.")
    assert gives_data("Count the vowels in \u201cbanana\u201d.") and gives_data("What does `print(len([]))` print?")
    assert gives_data("Roque walks two hours a day. How many hours a week? Answer with the number.")
    assert not gives_data("Give me three tips for writing clear Python code.")
    assert not gives_data("What's France's capital, and why is it famous?")  # apostrophes quote nothing
    # how long to answer is not data; a number beside it still is
    assert not gives_data("Give me three tips for writing clear Python code, in about 80 words.")
    assert not gives_data("Explain what a binary search does, in 3 sentences.")
    assert gives_data("Tom writes 300 words a day. How many words does he write in 7 days?")
    assert gives_data("Summarise 'to be or not to be' in 5 words.")


def test_a_goal_with_nothing_to_compute_is_not_shown_a_program(library: DemoLibrary) -> None:
    # "Python code" made the code-printing example the closest (0.35) to a request for tips; shown
    # it, the model ran programs (and once answered "391") instead of answering in words.
    for goal in ("Give me three tips for writing clear Python code.", "How do I reverse a list in Python?"):
        assert not any(d.computes for d in library.select(goal, 2)), goal
    printed = library.select("What does this Python code print?\n\n```python\nx = 2\nprint(x * 3)\n```", 2)
    assert printed and printed[0].origin == "demo-code-loop" and printed[0].computes


def test_a_goal_no_example_is_close_to_is_shown_the_fallbacks(library: DemoLibrary) -> None:
    """One fact in words, one product by a program: the program only for a goal that gives data, and
    then nearest the goal (first)."""
    assert not library.select("What is the capital of France, and why is it famous?", 2)
    assert [d.origin for d in library.fallbacks("What is the capital of France, and why is it famous?")] == [
        "demo-chat-fact"]
    assert [(d.origin, d.computes) for d in library.fallbacks("What is 12 zorks in blips?")] == [
        ("demo-arithmetic-product", True), ("demo-chat-fact", False)]
    assert sum(d.fallback for d in library.demos) == 2
