"""The hindsight labeller: once an episode has a reward, say what every explored state was worth.

- Returns-to-go for the chosen path: the node ``k`` steps before the end gets ``reward * gamma**k``.
- Monte-Carlo labels for explored nodes off the path: the fraction of their finished descendants
  (final states the verifier judged) that reached reward.
- Hindsight relabelling: a failed episode that still reached *something* is a success at reaching
  that (for the Game of 24: "make 18" when the steps made 18); its path is labelled 1 for that goal.
- A conclusion: the successful path compressed into one short text, for fine-tuning.

Each label carries the value the search predicted for that node when it was scored (``predicted``),
so the reward-prediction error is ``target - predicted``. Works from the episode alone (its saved
tree, or its steps when it was not searched).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import networkx as nx

from stackmind.search.tree import SearchTree
from stackmind.trace import Episode
from stackmind.value.labels import Label

SCORED = ("open", "expanded", "pruned", "dead", "unexplored")  # outcomes whose value came from the scorer


# ---- relabelling ------------------------------------------------------------------------------

_G24_GOAL = re.compile(r"^Use ([\d ]+) once each with \+ - \* / to make (-?[\d/]+)\.$")


def relabel_game24(goal: str, answer: str | None) -> str | None:
    """The Game of 24 goal a failed answer did reach: ``(13 - 9) * (10 - 4) = 18`` made 18."""
    m = _G24_GOAL.match(goal.strip())
    if not m or not answer or "=" not in answer:
        return None
    reached = answer.rsplit("=", 1)[1].strip()
    if not re.fullmatch(r"-?\d+(/\d+)?", reached) or reached == m.group(2):
        return None
    return f"Use {m.group(1)} once each with + - * / to make {reached}."


# task name (as the search tree records it) -> relabeller(goal, answer) -> the goal reached, or None
RELABELLERS: dict[str, Callable[[str, str | None], str | None]] = {"game24": relabel_game24}


# ---- conclusions ------------------------------------------------------------------------------


def conclude(goal: str, thoughts: list[str], answer: str | None) -> str:
    """The successful path as one short text: the steps without their bookkeeping, then the answer."""
    steps = [re.sub(r"\s*\(left:[^)]*\)\s*$", "", t.strip()) for t in thoughts if t.strip()]
    text = f"{goal.strip()} Steps: {'; '.join(steps)}." if steps else goal.strip()
    return f"{text} Answer: {answer.strip()}" if answer else text


# ---- the labeller -----------------------------------------------------------------------------


def label_episode(episode: Episode, *, source: str = "verifier", gamma: float = 1.0,
                  reward: float | None = None) -> list[Label]:
    """Every label hindsight can give an episode; [] when it has no reward yet.

    ``reward`` overrides the episode's (a later reassessment or a user's thumbs).
    """
    r = episode.reward if reward is None else reward
    if r is None and episode.tree and episode.tree.get("graph", {}).get("verified"):
        r = 1.0 if episode.tree["graph"].get("success") else 0.0  # the verifier judged its conclusions
    if r is None:
        return []
    r = min(1.0, max(0.0, float(r)))
    base: dict[str, Any] = {"source": source, "episode": episode.id}
    if episode.tree:
        labels = _label_tree(episode, SearchTree.graph_from_json(episode.tree), r, gamma, base)
    else:
        labels = _label_steps(episode, r, gamma, base)
    return labels


def _path(g: nx.DiGraph) -> list[int]:
    best = g.graph.get("best")
    return [] if best is None else _path_to(g, best)


def _path_to(g: nx.DiGraph, node: int) -> list[int]:
    out = [node]
    while (parent := g.nodes[out[-1]].get("parent")) is not None:
        out.append(parent)
    return out[::-1]


def _predicted(a: dict[str, Any]) -> float | None:
    v = a.get("value")
    return float(v) if v is not None and a.get("outcome") in SCORED else None


def _label_tree(episode: Episode, g: nx.DiGraph, r: float, gamma: float, base: dict[str, Any]) -> list[Label]:
    goal = g.graph.get("goal", episode.goal)
    path = _path(g)
    on_path = set(path)
    out: list[Label] = []
    # Returns-to-go along the chosen path (the root has no thought to value).
    steps = path[1:]
    for k, n in enumerate(steps):
        a = g.nodes[n]
        out.append(Label(goal=goal, stack=list(a["thoughts"][:-1]), thought=a["thought"],
                         target=r * gamma ** (len(steps) - 1 - k), kind="return_to_go", node=n,
                         predicted=_predicted(a), meta={"depth": a["depth"], "outcome": a["outcome"]}, **base))
    # Monte-Carlo labels for explored nodes off the path.
    for n, a in g.nodes(data=True):
        if n == 0 or n in on_path or a["outcome"] in ("success", "failure", "final"):
            continue
        finals = [d for d in nx.descendants(g, n) if g.nodes[d]["outcome"] in ("success", "failure")]
        if not finals:
            continue
        wins = sum(1 for d in finals if g.nodes[d]["outcome"] == "success")
        out.append(Label(goal=goal, stack=list(a["thoughts"][:-1]), thought=a["thought"],
                         target=wins / len(finals), kind="monte_carlo", node=n, predicted=_predicted(a),
                         weight=min(1.0, len(finals) / 4), meta={"depth": a["depth"], "finals": len(finals)},
                         **base))
    thoughts = [g.nodes[n]["thought"] for n in steps]
    answer = episode.answer
    if r >= 1.0 and thoughts:
        out.append(Label(goal=goal, stack=[], thought=conclude(goal, thoughts, answer), target=r,
                         kind="conclusion", meta={"path": thoughts, "answer": answer}, **base))
    if r < 1.0:
        out += _relabel(g, goal, base)
    return out


def _relabel(g: nx.DiGraph, goal: str, base: dict[str, Any], limit: int = 5) -> list[Label]:
    """Failed conclusions in the tree, relabelled as successes at the goal each one did reach."""
    relabel = RELABELLERS.get(g.graph.get("task", ""))
    if relabel is None:
        return []
    out: list[Label] = []
    done: set[str] = set()
    for n, a in sorted(g.nodes(data=True), key=lambda t: t[0]):
        if a["outcome"] != "failure" or len(done) >= limit:
            continue
        reached = relabel(goal, a.get("answer"))
        if not reached or reached in done:
            continue
        done.add(reached)
        path = _path_to(g, n)[1:]
        for m in path:
            b = g.nodes[m]
            out.append(Label(goal=reached, stack=list(b["thoughts"][:-1]), thought=b["thought"], target=1.0,
                             kind="relabelled", node=m, meta={"original_goal": goal}, **base))
        thoughts = [g.nodes[m]["thought"] for m in path]
        out.append(Label(goal=reached, stack=[], thought=conclude(reached, thoughts, a.get("answer")), target=1.0,
                         kind="conclusion", node=n, meta={"path": thoughts, "answer": a.get("answer"),
                                                          "original_goal": goal, "relabelled": True}, **base))
    return out


def _label_steps(episode: Episode, r: float, gamma: float, base: dict[str, Any]) -> list[Label]:
    thoughts = [s.thought for s in episode.steps]
    out = [Label(goal=episode.goal, stack=thoughts[:k], thought=s.thought,
                 target=r * gamma ** (len(thoughts) - 1 - k), kind="return_to_go", predicted=s.value,
                 meta={"depth": k + 1}, **base) for k, s in enumerate(episode.steps)]
    if r >= 1.0 and thoughts:
        out.append(Label(goal=episode.goal, stack=[], thought=conclude(episode.goal, thoughts, episode.answer),
                         target=r, kind="conclusion", meta={"path": thoughts, "answer": episode.answer}, **base))
    return out


def apply_returns(episode: Episode, labels: list[Label]) -> Episode:
    """Write the returns-to-go into the episode's steps (``step.reward``), as the trace format keeps them."""
    by_node = {lab.node: lab.target for lab in labels if lab.kind == "return_to_go" and lab.node is not None}
    for k, step in enumerate(episode.steps):
        node = step.meta.get("node")
        if node in by_node:
            step.reward = by_node[node]
        elif not by_node:
            rtg = [lab for lab in labels if lab.kind == "return_to_go"]
            if k < len(rtg):
                step.reward = rtg[k].target
    return episode
