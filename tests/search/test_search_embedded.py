"""One tiny search step with the real embedded model (slow: a few dozen tokens on CPU)."""

from __future__ import annotations

import pytest

from stackmind.llm import LLM
from stackmind.search import Budget, LLMJudge, solve
from stackmind.tasks import Game24
from stackmind.tasks.game24 import apply_step


@pytest.mark.slow
def test_one_real_expansion_and_judgement(embedded_llm: LLM) -> None:
    task = Game24([1, 1, 4, 6])
    task.propose_max_tokens = 40  # a few proposal lines are enough to check the plumbing
    task.value_max_tokens = 24
    calls_before = embedded_llm.usage.calls
    result = solve(task, embedded_llm, strategy="bfs", budget=Budget(llm_calls=1), temperature=0.0)
    assert result.stopped == "budget: llm_calls" and result.usage.calls == 1
    assert embedded_llm.usage.calls == calls_before + 1
    g = result.tree.graph
    root_items = result.tree.states[0].data["items"]
    # whatever the model wrote, only verified steps are in the tree
    for n in g.successors(0):
        assert apply_step(g.nodes[n]["thought"], root_items) is not None
    assert len(g) >= 2, "the model proposed no valid step for 1 1 4 6"
    # the judge: one batched call, three samples each, a value in [0, 1]
    states = [result.tree.states[n] for n in list(g.successors(0))[:1]]
    values = LLMJudge(embedded_llm, task, samples=3, seed=0).score(task.goal, states)
    assert len(values) == 1 and 0.0 <= values[0] <= 1.0
    assert embedded_llm.usage.calls == calls_before + 2
