"""Search logic, with a deterministic Game-of-24 backend (search_doubles.py) behind the real LLM client."""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

import pytest
from search_doubles import Game24Double, solvable

from stackmind.llm import LLM
from stackmind.search import Budget, solve
from stackmind.tasks import Game24, State, TextGoal
from stackmind.tasks.game24 import apply_step
from stackmind.trace import Episode


def _numbers(prompt: str) -> tuple[Fraction, ...]:
    return tuple(sorted(Fraction(x) for x in re.findall(r"Numbers: ([^\n]*)\n", prompt)[-1].split()))


def _kind(req: object) -> str:
    return "propose" if "Next steps:" in req.prompts[0].rsplit("Numbers:", 1)[-1] else "value"  # type: ignore[attr-defined]


@pytest.mark.parametrize("strategy", ["bfs", "dfs", "mcts"])
def test_each_strategy_solves_with_a_good_judge(strategy: str) -> None:
    backend = Game24Double()
    result = solve(Game24([4, 9, 10, 13]), LLM(backend), strategy=strategy)
    assert result.success and result.stopped == "solved"
    expr = result.answer.split("=")[0]
    from stackmind.tasks import check_expression
    assert check_expression(expr, [4, 9, 10, 13])
    # the chosen path is real: each step applies to the state before it
    path = result.tree.path(result.best)
    assert len(path) == 4 and all(result.tree[n]["chosen"] for n in path)
    assert sum(1 for _, a in result.tree.graph.nodes(data=True) if a["chosen"]) == 4
    assert result.usage.calls == len(backend.requests) and result.usage.completion_tokens > 0


def test_bfs_batches_each_step_into_one_call_and_keeps_the_beam() -> None:
    backend = Game24Double()
    result = solve(Game24([4, 9, 10, 13]), LLM(backend), strategy="bfs", beam=3)
    kinds = [_kind(r) for r in backend.requests]
    # one expansion call and one scoring call per depth; the last depth's states are final, so the
    # verifier values them and the judge is not asked
    assert kinds == ["propose", "value", "propose", "value", "propose"]
    proposals = [r for r in backend.requests if _kind(r) == "propose"]
    assert [len(r.prompts) for r in proposals] == [1, 3, 3]  # the whole frontier in one batch
    assert all(r.n == 3 for r in backend.requests if _kind(r) == "value")  # sampled 3 times
    assert result.meta["expansions"] == 3
    kept = [n for n, a in result.tree.graph.nodes(data=True) if a["depth"] == 1 and a["outcome"] == "expanded"]
    assert len(kept) == 3


def test_states_are_merged_and_scored_once() -> None:
    backend = Game24Double()
    result = solve(Game24([2, 3, 4, 6]), LLM(backend), strategy="bfs", beam=5, stop_on_success=False)
    scored = [_numbers(p) for r in backend.requests if _kind(r) == "value" for p in r.prompts]
    assert scored and len(scored) == len(set(scored))  # no state asked about twice
    g = result.tree.graph
    merged = [(u, v) for u, v, a in g.edges(data=True) if a["merged"]]
    assert merged, "two frontier states that lead to the same numbers must share a node"
    keys = [a["key"] for _, a in g.nodes(data=True)]
    assert len(keys) == len(set(keys))
    # final states are valued by the verifier, never by the judge
    assert all(len(s) > 1 for s in scored)
    assert {a["outcome"] for _, a in g.nodes(data=True) if a["depth"] == 3} <= {"success", "failure"}


def test_invalid_arithmetic_never_enters_the_tree() -> None:
    backend = Game24Double()  # every proposal carries a wrong step and an absent number
    result = solve(Game24([1, 2, 3, 4]), LLM(backend), strategy="bfs", beam=2, stop_on_success=False)
    g = result.tree.graph
    for n, a in g.nodes(data=True):
        if n == 0:
            continue
        parent = result.tree.states[a["parent"]]
        assert apply_step(a["thought"], parent.data["items"]) is not None
        assert "1000" not in a["thought"] and "194" not in a["thought"]


def test_unsolvable_puzzle_returns_no_answer() -> None:
    result = solve(Game24([1, 1, 1, 1]), LLM(Game24Double()), strategy="bfs")
    assert not result.success and result.answer is None
    assert result.stopped in ("max depth", "exhausted")


@pytest.mark.parametrize(("budget", "reason"), [
    (Budget(llm_calls=2), "budget: llm_calls"),
    (Budget(tokens=50), "budget: tokens"),
    (Budget(seconds=0), "budget: seconds"),
    (Budget(nodes=6), "budget: nodes"),
])
@pytest.mark.parametrize("strategy", ["bfs", "dfs", "mcts"])
def test_budgets_stop_the_search(budget: Budget, reason: str, strategy: str) -> None:
    backend = Game24Double(noisy=True)
    result = solve(Game24([4, 9, 10, 13]), LLM(backend), strategy=strategy, budget=budget)
    assert result.stopped == reason
    if budget.llm_calls is not None:
        assert result.usage.calls <= budget.llm_calls
    if budget.nodes is not None:
        assert len(result.tree) <= budget.nodes
    if budget.seconds == 0:
        assert result.usage.calls == 0 and len(result.tree) == 1


class _Misleading:
    """Prefers states that cannot reach 24, to make DFS back up."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def score(self, goal: str, states: Sequence[State]) -> list[float]:
        self.batches.append(len(states))
        return [0.4 if solvable(list(s.facts)) else 0.9 for s in states]


def test_dfs_backtracks_out_of_dead_ends() -> None:
    scorer = _Misleading()
    backend = Game24Double()
    result = solve(Game24([4, 9, 10, 13]), LLM(backend), strategy="dfs", scorer=scorer, threshold=0.3)
    assert result.success
    g = result.tree.graph
    failures = [n for n, a in g.nodes(data=True) if a["outcome"] == "failure"]
    assert failures and min(failures) < result.best  # it tried and failed before it succeeded
    assert all(_kind(r) == "propose" for r in backend.requests)  # the scorer hook replaced the judge
    # at most one scoring batch per expansion (final states go to the verifier instead)
    assert 0 < len(scorer.batches) <= result.meta["expansions"]


def test_dfs_prunes_below_the_threshold() -> None:
    result = solve(Game24([4, 9, 10, 13]), LLM(Game24Double()), strategy="dfs", threshold=0.5)
    g = result.tree.graph
    pruned = [a for _, a in g.nodes(data=True) if a["outcome"] == "pruned"]
    assert pruned and all(a["value"] < 0.5 for a in pruned)
    assert result.success


def test_mcts_batches_leaves_and_counts_visits() -> None:
    backend = Game24Double(noisy=True)
    result = solve(Game24([4, 9, 10, 13]), LLM(backend), strategy="mcts", batch=3, simulations=60,
                   stop_on_success=False)
    proposals = [r for r in backend.requests if _kind(r) == "propose"]
    assert max(len(r.prompts) for r in proposals) > 1 and all(len(r.prompts) <= 3 for r in proposals)
    g = result.tree.graph
    root_visits = g.nodes[0]["visits"]
    assert root_visits > 3
    # every selection passes through the root: no node is visited more often than the root
    assert all(a["visits"] <= root_visits for _, a in g.nodes(data=True))
    assert any(a["outcome"] == "success" for _, a in g.nodes(data=True))


def test_bad_arguments_are_explained() -> None:
    llm = LLM(Game24Double())
    with pytest.raises(ValueError, match="unknown search strategy 'beam'"):
        solve(Game24([1, 2, 3, 4]), llm, strategy="beam")
    with pytest.raises(ValueError, match="dfs takes threshold, not beam"):
        solve(Game24([1, 2, 3, 4]), llm, strategy="dfs", beam=3)


class _TextDouble:
    """Plain-text goals: proposes an intermediate step and two answers; judges by the answer."""

    name = "double:text"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, request):  # noqa: ANN001, ANN201
        from stackmind.llm.base import Completion

        out = []
        for p in request.prompts:
            if "Next steps:" in p:
                text = "Add the two numbers.\nFinal answer: 6\nFinal answer: 5"
            else:
                last = p.split("Steps so far:")[-1]
                text = "Verdict: " + ("sure" if "answer: 5" in last else "impossible" if "answer" in last else "likely")
            out.append(Completion([text] * request.n, len(p.split()), 3 * request.n))
        return out


def test_solve_a_text_goal_takes_the_best_judged_answer() -> None:
    result = solve("What is 2 + 3?", LLM(_TextDouble()), strategy="bfs", beam=2)
    assert result.answer == "5" and not result.success  # nothing verified it
    verified = solve(TextGoal("What is 2 + 3?", verify=lambda a: float(a == "5")), LLM(_TextDouble()))
    assert verified.answer == "5" and verified.success


def test_episode_keeps_the_tree(tmp_path) -> None:  # noqa: ANN001
    result = solve(Game24([4, 9, 10, 13]), LLM(Game24Double()), strategy="bfs")
    episode = result.to_episode(model="double")
    path = episode.save(tmp_path)
    back = Episode.load(path)
    assert back.answer == result.answer and back.reward == 1.0
    assert [s.thought for s in back.steps] == result.path()
    from stackmind.search import SearchTree
    g = SearchTree.graph_from_json(back.tree)
    assert g.number_of_nodes() == len(result.tree) and g.number_of_edges() == result.tree.graph.number_of_edges()
    assert g.graph["best"] == result.best and g.nodes[result.best]["outcome"] == "success"
