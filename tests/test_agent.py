"""The agent's wiring, with every part real (the embedded model, chromadb, the policy library):
fast learning pushes policies, a `@name(...)` call runs its sub-goal, memories come back in a later
run (for their owner only), and `search=` runs a tree-of-thought search."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackmind.agent import Agent
from stackmind.llm import LLM
from stackmind.llm.base import Completion, Request
from stackmind.settings import Settings

pytestmark = pytest.mark.slow

ALWAYS_POLICY = """\
name: mind_the_units
description: State the units of every quantity before computing with it.
examples:
  - goal: How many minutes are in 2 hours?
    response: "2 hours = 2 * 60 minutes = 120 minutes. Final answer: 120"
    answer: "120"
training:
  fast: {trigger: always, examples: 1, trajectories: 0}
"""

# A policy whose examples hand the sub-goal's answer straight back, so the sub-loop ends in one step.
CALLED_POLICY = """\
name: lookup_colour
description: Look up the colour of a fruit.
parameters:
  - name: fruit
    description: the fruit
subgoal: "What colour is a {fruit}?"
examples:
  - goal: What colour is a banana?
    response: "Final answer: yellow"
    answer: yellow
  - goal: What colour is a lime?
    response: "Final answer: green"
    answer: green
training:
  fast: {trigger: similarity, threshold: 0.99}
"""


def _settings(tmp_path: Path, **kw: object) -> Settings:
    s = Settings(home=tmp_path / "home", **kw)  # type: ignore[arg-type]
    (s.home / "policies").mkdir(parents=True, exist_ok=True)
    return s.ensure_dirs()


def test_fast_learning_pushes_an_always_policy_before_the_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                embedded_llm) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)  # the library is the home's policies only
    s = _settings(tmp_path, memory=False, learn=False)
    (s.home / "policies" / "units.policy.yaml").write_text(ALWAYS_POLICY)
    agent = Agent.from_settings(s, llm=embedded_llm)
    try:
        ep = agent.run("How many seconds are in 3 minutes?", max_steps=1)
    finally:
        agent.close()
    assert ep.meta["policies"] == ["mind_the_units"]
    assert "@mind_the_units" in ep.steps[0].view and "2 * 60 minutes" in ep.steps[0].view


class _CallsFirst:
    """The embedded model's backend, except that the run's first step is the given reply: how often
    the small model obeys "call the policy" is not what the wiring test asks (on CI's machine it once
    thought, copied the example's answer and never called, three seeds running). Its sub-goal, and
    every step after, are the real model's."""

    def __init__(self, backend, reply: str) -> None:  # noqa: ANN001
        self.backend, self.reply, self.first = backend, reply, None

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.backend, name)

    def generate(self, request: Request) -> list[Completion]:
        if self.first is None:
            self.first = request
            return [Completion([self.reply] * request.n, 10, 10, finish_reasons=["stop"] * request.n)]
        return self.backend.generate(request)


def test_a_policy_call_in_a_step_solves_its_sub_goal_and_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 embedded_llm) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    s = _settings(tmp_path, memory=False, learn=False)
    (s.home / "policies" / "colour.policy.yaml").write_text(CALLED_POLICY)
    backend = _CallsFirst(embedded_llm.backend, 'Action: @lookup_colour(fruit="cherry")')
    agent = Agent.from_settings(s, llm=LLM(backend))
    assert agent.library is not None
    policy = agent.library.get("lookup_colour")
    try:  # pushed, the policy is callable (its frames say how); its name joins the step grammar
        ep = agent.run("What colour is the fruit called a cherry?", max_steps=3, policies=[policy])
    finally:
        agent.close()
    assert backend.first is not None and "lookup_colour" in (backend.first.grammar or "")
    assert "@lookup_colour" in ep.steps[0].view, "the pushed policy's frame says how to call it"
    first = ep.steps[0]
    assert first.action == '@lookup_colour(fruit="cherry")'
    assert first.substeps, "the call's sub-goal was solved by the loop, its steps kept"
    assert first.substeps[0].view.count("What colour is a cherry?") >= 1, "the sub-goal is the policy's, filled in"
    assert first.observation and "no answer" not in first.observation
    assert ep.answer is not None


def test_memories_come_back_in_a_later_run_for_their_owner_only(tmp_path: Path, embedded_llm) -> None:  # noqa: ANN001
    s = _settings(tmp_path, policies=False, learn=False)
    # A goal the small model answers in one step: "Name one primary colour." went greedy into a list
    # that repeated to the token limit, and on CI's machine its resample too came to no answer.
    goal = "What is the opposite of hot? Answer with one word."
    first = Agent.from_settings(s, llm=embedded_llm)
    try:
        ep1 = first.run(goal, max_steps=1)
    finally:
        first.close()
    assert ep1.answer is not None
    remembered = f"{goal} -> {ep1.answer}"
    again = Agent.from_settings(s, llm=embedded_llm)
    try:
        ep2 = again.run(goal, max_steps=1)
    finally:
        again.close()
    assert remembered in ep2.steps[0].view
    stranger = Agent.from_settings(s, llm=embedded_llm, owner="someone-else")
    try:
        ep3 = stranger.run(goal, max_steps=1)
    finally:
        stranger.close()
    assert remembered not in ep3.steps[0].view


def test_search_keeps_the_tree_and_says_which_scorer(tmp_path: Path, embedded_llm) -> None:  # noqa: ANN001
    s = _settings(tmp_path, memory=False, policies=False, learn=False, search_max_calls=2)
    agent = Agent.from_settings(s, llm=embedded_llm)
    try:
        ep = agent.run("Give one word that rhymes with cat.", search="bfs")
    finally:
        agent.close()
    assert ep.tree is not None and ep.tree["nodes"], "the search tree is kept on the episode"
    assert ep.meta["scorer"].startswith("LLM judge")  # no value model has been trained in this home
    assert ep.meta["search"]["strategy"] == "bfs"
    assert ep.meta["usage"]["calls"] <= 2 + 1
