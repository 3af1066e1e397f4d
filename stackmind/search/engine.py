"""The machinery every strategy shares: batched expansion, merging, cached batched scoring, budgets.

`Search.expand(nodes)` sends the proposal prompts of all ``nodes`` to the model in ONE
``llm.generate`` call; children that reach a state already in the tree are merged into it.
`Search.evaluate(nodes)` values every node not yet valued: final states by the task's verifier,
the rest by the scorer in ONE batch; values are cached by state, so a state is scored once.
A strategy (bfs, dfs, mcts) decides which nodes to expand and keep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stackmind.llm.base import LLM, Usage
from stackmind.search.scorer import LLMJudge, Scorer
from stackmind.search.tree import SearchTree
from stackmind.tasks.base import Task
from stackmind.trace import Episode, Step

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class Budget:
    """Limits on one search; None means no limit. The search stops between steps when one is spent."""

    llm_calls: int | None = None
    tokens: int | None = None  # prompt + completion tokens
    seconds: float | None = None
    nodes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"llm_calls": self.llm_calls, "tokens": self.tokens, "seconds": self.seconds, "nodes": self.nodes}


@dataclass
class SearchResult:
    """The best conclusion found, with the tree it was found in and what the search used."""

    best: int | None  # node id of the best conclusion (or the most promising state when none)
    answer: str | None
    success: bool  # the task's verifier accepted the answer
    tree: SearchTree
    usage: Usage
    wall_seconds: float
    stopped: str  # why the search ended: solved, exhausted, budget: <which>
    strategy: str
    value: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def nodes(self) -> int:
        return len(self.tree)

    def path(self) -> list[str]:
        """The thoughts from the goal to the best node."""
        return [] if self.best is None else list(self.tree[self.best]["thoughts"])

    def summary(self) -> dict[str, Any]:
        return {
            "answer": self.answer, "success": self.success, "value": self.value, "strategy": self.strategy,
            "stopped": self.stopped, "nodes": self.nodes, "wall_seconds": round(self.wall_seconds, 3),
            "usage": self.usage.to_dict(), **self.meta,
        }

    def to_episode(self, model: str | None = None) -> Episode:
        """An episode whose steps are the chosen path and whose ``tree`` holds the whole tree."""
        g = self.tree.graph
        steps = []
        if self.best is not None:
            for n in self.tree.path(self.best)[1:]:
                a = g.nodes[n]
                steps.append(Step(thought=a["thought"], value=a["value"],
                                  meta={"node": n, "visits": a["visits"], "outcome": a["outcome"]}))
        return Episode(
            goal=g.graph["goal"], steps=steps, answer=self.answer,
            reward=1.0 if self.success else (0.0 if self.answer is not None and g.graph.get("verified") else None),
            model=model, meta={"search": self.summary()}, tree=self.tree.to_json(),
        )


def _usage_delta(now: Usage, before: Usage) -> Usage:
    return Usage(
        calls=now.calls - before.calls, prompts=now.prompts - before.prompts,
        prompt_tokens=now.prompt_tokens - before.prompt_tokens,
        completion_tokens=now.completion_tokens - before.completion_tokens,
        wall_seconds=now.wall_seconds - before.wall_seconds,
    )


class Search:
    """One search over one task: the shared state a strategy drives."""

    def __init__(
        self,
        task: Task,
        llm: LLM,
        *,
        scorer: Scorer | None = None,
        budget: Budget | None = None,
        strategy: str = "",
        samples: int = 1,
        temperature: float = 0.7,
        seed: int | None = None,
        stop_on_success: bool = True,
        progress: ProgressFn | None = None,
    ) -> None:
        self.task = task
        self.llm = llm
        self.scorer: Scorer = scorer if scorer is not None else LLMJudge(llm, task, seed=seed)
        self.budget = budget or Budget()
        self.samples = samples
        self.temperature = temperature
        self.seed = seed
        self.stop_on_success = stop_on_success
        self.progress = progress
        self.tree = SearchTree(task.goal, strategy, getattr(task, "name", type(task).__name__))
        self.values: dict[Hashable, float] = {}  # the value cache, by state
        self.expansions = 0
        self.scored_states = 0
        self._usage0 = Usage(**vars(llm.usage))
        self._t0 = time.perf_counter()
        self.tree.add_root(task.root())

    # ---- budgets ----------------------------------------------------------------------------
    def used(self) -> Usage:
        return _usage_delta(self.llm.usage, self._usage0)

    def exhausted(self) -> str | None:
        """The budget that is spent, if one is."""
        b, u = self.budget, self.used()
        if b.llm_calls is not None and u.calls >= b.llm_calls:
            return "budget: llm_calls"
        if b.tokens is not None and u.prompt_tokens + u.completion_tokens >= b.tokens:
            return "budget: tokens"
        if b.seconds is not None and time.perf_counter() - self._t0 >= b.seconds:
            return "budget: seconds"
        if b.nodes is not None and len(self.tree) >= b.nodes:
            return "budget: nodes"
        return None

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    # ---- the two batched operations ---------------------------------------------------------
    def expand(self, nodes: Sequence[int]) -> dict[int, list[int]]:
        """Propose children for every node in ONE generate call; returns each node's children."""
        todo = [n for n in nodes if not self.task.is_final(self.tree.states[n])]
        if not todo:
            return {n: [] for n in nodes}
        prompts = [self.task.propose_prompt(self.tree.states[n]) for n in todo]
        gen = self.llm.generate(
            prompts, n=self.samples, max_tokens=self.task.propose_max_tokens, temperature=self.temperature,
            stop=self.task.propose_stop, seed=self.seed, grammar=getattr(self.task, "propose_grammar", None),
        )
        self.expansions += 1
        out: dict[int, list[int]] = {n: [] for n in nodes}
        cap = self.budget.nodes
        for node, texts in zip(todo, gen.texts, strict=True):
            self.tree.set(node, outcome="expanded", visits=self.tree[node]["visits"] + 1, step=self.expansions)
            for child_state in self.task.children(self.tree.states[node], texts):
                if cap is not None and len(self.tree) >= cap and child_state.key not in self.tree._by_key:
                    break
                child, _new = self.tree.add_child(node, child_state)
                if child not in out[node]:
                    out[node].append(child)
            if not out[node]:
                self.tree.set(node, outcome="dead", value=0.0)
        self.say(f"expanded {len(todo)} node(s): {sum(len(c) for c in out.values())} children, "
                 f"{len(self.tree)} nodes")
        return out

    def evaluate(self, nodes: Sequence[int]) -> None:
        """Value every node not yet valued: verifier for final states, the scorer (one batch) for the rest."""
        pending: list[int] = []
        for n in dict.fromkeys(nodes):
            state = self.tree.states[n]
            if self.tree[n]["value"] is not None:
                continue
            if state.key in self.values:
                self.tree.set(n, value=self.values[state.key])
                continue
            if self.task.is_final(state):
                outcome = self.task.outcome(state)
                answer = self.task.answer(state)
                if outcome is None:
                    pending.append(n)
                    self.tree.set(n, outcome="final", answer=answer)
                else:
                    self.values[state.key] = outcome
                    self.tree.graph.graph["verified"] = True
                    self.tree.set(n, value=outcome, answer=answer,
                                  outcome="success" if outcome >= 1.0 else "failure")
                continue
            pending.append(n)
        if not pending:
            return
        values = self.scorer.score(self.task.goal, [self.tree.states[n] for n in pending])
        if len(values) != len(pending):
            raise ValueError(f"scorer returned {len(values)} values for {len(pending)} states")
        self.scored_states += len(pending)
        for n, v in zip(pending, values, strict=True):
            v = min(1.0, max(0.0, float(v)))
            self.values[self.tree.states[n].key] = v
            self.tree.set(n, value=v)

    # ---- reading the tree --------------------------------------------------------------------
    def value(self, node: int) -> float:
        v = self.tree[node]["value"]
        return 0.0 if v is None else float(v)

    def is_final(self, node: int) -> bool:
        return self.task.is_final(self.tree.states[node])

    def solved(self) -> int | None:
        """The first node that the verifier accepted, if any."""
        return next((n for n, a in self.tree.graph.nodes(data=True) if a["outcome"] == "success"), None)

    def finish(self, stopped: str) -> SearchResult:
        best = self._best()
        self.tree.choose(best)
        for _, a in self.tree.graph.nodes(data=True):
            if a["outcome"] == "open":
                a["outcome"] = "unexplored"
        concluded = best is not None and self.tree[best]["outcome"] in ("success", "final")
        answer = self.tree[best]["answer"] if concluded else None
        success = best is not None and self.tree[best]["outcome"] == "success"
        usage = self.used()
        wall = time.perf_counter() - self._t0
        value = self.tree[best]["value"] if best is not None else None
        self.tree.graph.graph.update(stopped=stopped, answer=answer, success=success)
        return SearchResult(
            best=best, answer=answer, success=success, tree=self.tree, usage=usage, wall_seconds=wall,
            stopped=stopped, strategy=self.tree.graph.graph["strategy"], value=value,
            meta={"expansions": self.expansions, "scored_states": self.scored_states},
        )

    def _best(self) -> int | None:
        """A verified success; else the best-valued conclusion; else the best-valued deepest state."""
        g = self.tree.graph
        if (s := self.solved()) is not None:
            return s
        finals = [n for n, a in g.nodes(data=True) if a["answer"] is not None and a["outcome"] != "failure"]
        if finals:
            return max(finals, key=lambda n: (self.value(n), -n))
        others = [n for n, a in g.nodes(data=True)
                  if n != self.tree.root and a["outcome"] not in ("failure", "dead")]
        if not others:
            return None
        return max(others, key=lambda n: (self.value(n), g.nodes[n]["depth"], -n))
