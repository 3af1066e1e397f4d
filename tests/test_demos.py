"""Demonstrations are chosen by the kind of goal (its topic, numbers masked), with the real MiniLM
embedder and the starter traces."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackmind.demos import DemoLibrary, topic
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
