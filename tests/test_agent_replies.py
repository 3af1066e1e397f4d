"""How the loop reads a reply: `Agent.act` takes the reply as text, so these tests need no model;
the tools they call are the real ones (the sandbox runs the Python)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stackmind.agent import Agent, _close_tool_state, _copies_view, _restated_expression, default_tools
from stackmind.settings import Settings
from stackmind.tools import ToolContext

VIEW = """[policy] Learning policy @analogy: Map the problem onto a familiar one.
Example:
  goal: Two pipes fill a tank in 3 hours and 6 hours alone. How long together?
  response: Like two workers sharing a job: add their rates. Final answer: 2 hours
[goal] If 5 machines make 5 widgets in 5 minutes, how long do 100 machines take?"""


def test_a_reply_that_continues_the_stack_is_not_an_answer() -> None:
    assert _copies_view("[goal] If 5 machines make 5 widgets in 5 minutes, how long?", VIEW)
    assert _copies_view("[thought] maybe 100", VIEW)
    assert _copies_view("Like two workers sharing a job: add their rates.", VIEW)  # an example's text


def test_a_direct_answer_is_an_answer() -> None:
    assert not _copies_view("5 minutes", VIEW)
    assert not _copies_view("Each machine makes one widget in 5 minutes, so 5 minutes.", VIEW)
    assert not _copies_view("[5 minutes]", VIEW)


@pytest.fixture
def agent_ctx(settings: Settings) -> Iterator[tuple[Agent, ToolContext]]:
    ctx = ToolContext(settings)
    yield Agent(settings, tools=default_tools(settings)), ctx
    _close_tool_state(ctx, keep=set())


def _act(agent_ctx: tuple[Agent, ToolContext], reply: str, goal: str):  # type: ignore[no-untyped-def]
    agent, ctx = agent_ctx
    return agent.act(reply, f"[goal] {goal}", ctx, goal=goal)


def test_final_answer_that_is_a_call_answers_with_what_the_call_printed(agent_ctx) -> None:  # type: ignore[no-untyped-def]
    r = _act(agent_ctx, "Final answer: @python(print(2 ** 10))", "What is 2 to the 10th power?")
    assert r.ok and r.answer == "1024" and r.invocation is not None and r.invocation.name == "python"
    r = _act(agent_ctx, "Final answer: @python(print(1 / 0))", "What is 1 / 0?")
    assert not r.ok and r.answer is None and "ZeroDivisionError" in (r.observation or "")  # no answer from a failure
    r = _act(agent_ctx, "Action: @nosuch(1)", "Anything")
    assert not r.ok and r.answer is None and "unknown tool or policy @nosuch" in (r.observation or "")


def test_an_answer_restating_the_goal_s_expression_is_computed_in_the_sandbox(agent_ctx) -> None:  # type: ignore[no-untyped-def]
    goal = "What is 17 * 23? Answer with the number."
    r = _act(agent_ctx, "Final answer: 17 * 23", goal)
    assert r.ok and r.answer == "391" and r.invocation is not None and r.invocation.text == "@python(print(17 * 23))"
    r = _act(agent_ctx, "Final answer: 391", goal)
    assert r.answer == "391" and r.invocation is None  # a value is an answer as it stands
    # An expression the goal does not contain is itself the answer (a Game of 24 solution).
    r = _act(agent_ctx, "Final answer: 4 * 6 * (8 / 8)", "Use 4 6 8 8 and + - * / to make 24.")
    assert r.answer == "4 * 6 * (8 / 8)" and r.invocation is None


def test_which_answers_restate_the_goal() -> None:
    goal = "What is (12 + 30) * 7? Then what is 2^10?"
    assert _restated_expression("(12 + 30) * 7.", goal) == "(12 + 30) * 7"
    assert _restated_expression("12 + 30", goal) == "12 + 30"
    assert _restated_expression("(12+30)*7", goal) == "(12+30)*7"  # spacing aside
    assert _restated_expression("2 + 3", goal) is None  # inside the goal's numbers, not an expression of it
    assert _restated_expression("294", goal) is None  # a number, not an expression
    assert _restated_expression("2^10", goal) is None  # ^ is not Python's power: not run
    assert _restated_expression("7 * (12 + 30)", goal) is None  # not the goal's text
    assert _restated_expression("x * 7", "What is x * 7?") is None
