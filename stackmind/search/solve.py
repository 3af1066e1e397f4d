"""`solve`: the one call the agent and the benchmark make."""

from __future__ import annotations

import inspect
from typing import Any

from stackmind.llm.base import LLM
from stackmind.search.bfs import bfs
from stackmind.search.dfs import dfs
from stackmind.search.engine import Budget, ProgressFn, Search, SearchResult
from stackmind.search.mcts import mcts
from stackmind.search.scorer import Scorer
from stackmind.tasks.base import Task
from stackmind.tasks.text import TextGoal

STRATEGIES = {"bfs": bfs, "dfs": dfs, "mcts": mcts}


def solve(
    goal_or_task: str | Task,
    llm: LLM,
    *,
    strategy: str = "bfs",
    scorer: Scorer | None = None,
    budget: Budget | None = None,
    samples: int = 1,
    temperature: float = 0.7,
    seed: int | None = None,
    stop_on_success: bool = True,
    progress: ProgressFn | None = None,
    **params: Any,
) -> SearchResult:
    """Search for a conclusion to a goal (a `TextGoal` is made from a string) or a task.

    ``strategy`` is bfs (``beam=5``), dfs (``threshold=0.3``) or mcts (``simulations=24,
    c_puct=1.0, batch=4``); strategy parameters go in ``params``. ``scorer`` defaults to the LLM
    judgement (`LLMJudge`). ``samples`` is the number of proposals sampled per expanded node.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown search strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    run = STRATEGIES[strategy]
    allowed = set(inspect.signature(run).parameters) - {"search"}
    if unknown := set(params) - allowed:
        raise ValueError(f"{strategy} takes {', '.join(sorted(allowed))}, not {', '.join(sorted(unknown))}")
    task = TextGoal(goal_or_task) if isinstance(goal_or_task, str) else goal_or_task
    search = Search(task, llm, scorer=scorer, budget=budget, strategy=strategy, samples=samples,
                    temperature=temperature, seed=seed, stop_on_success=stop_on_success, progress=progress)
    stopped = run(search, **params)
    return search.finish(stopped)
