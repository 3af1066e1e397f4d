"""The hindsight labeller on real search trees (a rule-playing Game-of-24 backend behind the real client)."""

from __future__ import annotations

import networkx as nx
from value_doubles import Game24Rules

from stackmind.llm.base import LLM
from stackmind.search import Budget, SearchTree, solve
from stackmind.settings import Settings
from stackmind.tasks.game24 import Game24, check_expression
from stackmind.trace import Episode
from stackmind.value.hindsight import conclude, label_episode, relabel_game24
from stackmind.value.labels import Label, load_labels, save_labels


def _episode(numbers: list[int], *, wrong: bool = False, beam: int = 3) -> Episode:
    result = solve(Game24(numbers), LLM(Game24Rules(wrong=wrong)), strategy="bfs", beam=beam,
                   budget=Budget(llm_calls=40), stop_on_success=False)
    return Episode.from_text(result.to_episode().to_text())  # through the trace format, as stored


def test_success_labels_returns_to_go_mc_and_conclusion() -> None:
    ep = _episode([4, 9, 10, 13])
    assert ep.reward == 1.0
    labels = label_episode(ep)
    g = SearchTree.graph_from_json(ep.tree)
    rtg = [lab for lab in labels if lab.kind == "return_to_go"]
    assert [lab.node for lab in rtg] == [s.meta["node"] for s in ep.steps]
    assert all(lab.target == 1.0 for lab in rtg)
    # Scored (non-final) path nodes carry the value the search gave them, so an RPE exists.
    assert all(lab.predicted is not None for lab in rtg[:-1]) and rtg[-1].predicted is None
    mc = [lab for lab in labels if lab.kind == "monte_carlo"]
    assert mc, "off-path explored nodes with finished descendants get Monte-Carlo labels"
    for lab in mc:
        finals = [d for d in nx.descendants(g, lab.node) if g.nodes[d]["outcome"] in ("success", "failure")]
        wins = sum(g.nodes[d]["outcome"] == "success" for d in finals)
        assert lab.target == wins / len(finals) and lab.meta["finals"] == len(finals)
        assert not g.nodes[lab.node]["chosen"]
    (conc,) = [lab for lab in labels if lab.kind == "conclusion"]
    assert ep.answer in conc.thought and "left:" not in conc.thought
    assert check_expression(ep.answer, [4, 9, 10, 13])


def test_gamma_discounts_towards_the_start() -> None:
    ep = _episode([4, 9, 10, 13])
    rtg = [lab.target for lab in label_episode(ep, gamma=0.5) if lab.kind == "return_to_go"]
    assert rtg == [0.25, 0.5, 1.0]


def test_failed_episode_is_relabelled_with_the_value_it_reached() -> None:
    ep = _episode([1, 1, 1, 1])  # no way to 24
    assert ep.tree is not None and not ep.tree["graph"]["success"]
    labels = label_episode(ep)
    relabelled = [lab for lab in labels if lab.kind == "relabelled"]
    assert relabelled
    for lab in relabelled:
        assert lab.goal != ep.goal and lab.meta["original_goal"] == ep.goal and lab.target == 1.0
    concs = [lab for lab in labels if lab.kind == "conclusion"]
    assert concs and all(lab.meta["relabelled"] for lab in concs)
    for c in concs:
        made = c.goal.rsplit("make ", 1)[1].rstrip(".")
        expr = c.meta["answer"].split("=")[0]
        # The relabelled goal is true of the answer: it makes exactly that value from the puzzle.
        from fractions import Fraction

        from stackmind.tasks.game24 import check_expression as chk
        assert chk(expr, [1, 1, 1, 1], Fraction(made))
    assert all(lab.target == 0.0 for lab in labels if lab.kind == "return_to_go")


def test_no_reward_no_labels() -> None:
    assert label_episode(Episode(goal="say hi", reward=None)) == []


def test_relabel_game24_and_conclude() -> None:
    goal = "Use 4 9 10 13 once each with + - * / to make 24."
    assert relabel_game24(goal, "(13 - 9) * (10 - 4) = 24") is None  # that was the goal
    assert relabel_game24(goal, "(13 - 9) * 10 - 4 = 36") == "Use 4 9 10 13 once each with + - * / to make 36."
    assert relabel_game24("write a poem", "x = 3") is None
    text = conclude("Make 24 from 4 6.", ["4 * 6 = 24 (left: 24)"], "4 * 6 = 24")
    assert text == "Make 24 from 4 6. Steps: 4 * 6 = 24. Answer: 4 * 6 = 24"


def test_labels_round_trip_through_jsonl(settings: Settings) -> None:
    labels = label_episode(_episode([4, 9, 10, 13]), source="tests")
    path = save_labels(settings, labels)
    assert path is not None and path.parent == settings.home / "labels"
    back = load_labels(settings)
    assert [lab.to_dict() for lab in back] == [lab.to_dict() for lab in labels]
    assert {lab.kind for lab in load_labels(settings, kinds=["conclusion"])} == {"conclusion"}
    assert isinstance(back[0], Label) and back[0].source == "tests"
