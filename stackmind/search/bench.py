"""The Game of 24 benchmark: run a solver over puzzles and report what it took.

Per puzzle: success (the verifier's word), LLM calls, prompt and completion tokens, wall seconds.
The summary gives the success rate and medians, and the model's throughput during search (all
completion tokens over the model's wall time) against one single-stream decode measured first.
`search_solver` is thought search alone (comparable to the Tree-of-Thoughts paper); the command
line adds an agent solver (policies and tools) for ``--mode agent``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stackmind.llm.base import LLM
from stackmind.search.engine import Budget
from stackmind.search.solve import solve
from stackmind.tasks.game24 import Game24, Puzzle
from stackmind.trace import Episode


@dataclass
class PuzzleRun:
    puzzle: str
    index: int
    rank: int | None
    success: bool
    answer: str | None
    calls: int
    prompt_tokens: int
    completion_tokens: int
    wall_seconds: float
    llm_seconds: float
    nodes: int = 0
    stopped: str = ""
    episode: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Solver = Callable[[Puzzle], PuzzleRun]


def search_solver(
    llm: LLM,
    *,
    strategy: str = "bfs",
    budget: Budget | None = None,
    save: Callable[[Episode], Path | str] | None = None,
    **params: Any,
) -> Solver:
    """Thought search only: `solve` on each puzzle; ``save`` keeps each episode (with its tree)."""

    def run(puzzle: Puzzle) -> PuzzleRun:
        result = solve(Game24(puzzle), llm, strategy=strategy, budget=budget, **params)
        path = None
        if save is not None:
            episode = result.to_episode(model=llm.name)
            episode.meta["puzzle"] = puzzle.text
            path = str(save(episode))
        u = result.usage
        return PuzzleRun(
            puzzle=puzzle.text, index=puzzle.index, rank=puzzle.rank, success=result.success,
            answer=result.answer, calls=u.calls, prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens, wall_seconds=round(result.wall_seconds, 3),
            llm_seconds=round(u.wall_seconds, 3), nodes=result.nodes, stopped=result.stopped, episode=path,
        )

    return run


def single_stream_tokens_per_s(llm: LLM, max_tokens: int = 32) -> float:
    """Completion tokens per second of one prompt decoded alone (the baseline for batching)."""
    prompt = ["Count from 1 to 100, separated by spaces: 1 2 3"]
    llm.generate(prompt, max_tokens=4, temperature=0.0)  # warm-up: the first call pays one-time costs
    gen = llm.generate(prompt, max_tokens=max_tokens, temperature=0.0)
    return gen.usage.tokens_per_second


def run_bench(
    puzzles: Iterable[Puzzle],
    solver: Solver,
    *,
    on_done: Callable[[PuzzleRun], None] | None = None,
) -> list[PuzzleRun]:
    runs = []
    for puzzle in puzzles:
        run = solver(puzzle)
        runs.append(run)
        if on_done is not None:
            on_done(run)
    return runs


def summarize(runs: list[PuzzleRun], single_stream_tps: float | None = None) -> dict[str, Any]:
    if not runs:
        return {"puzzles": 0}

    def med(name: str) -> float:
        return round(float(statistics.median(getattr(r, name) for r in runs)), 3)

    def mean(name: str) -> float:
        return round(float(statistics.fmean(getattr(r, name) for r in runs)), 3)

    completion = sum(r.completion_tokens for r in runs)
    llm_seconds = sum(r.llm_seconds for r in runs)
    search_tps = completion / llm_seconds if llm_seconds else 0.0
    out: dict[str, Any] = {
        "puzzles": len(runs),
        "solved": sum(r.success for r in runs),
        "success_rate": round(sum(r.success for r in runs) / len(runs), 4),
        "median": {k: med(k) for k in ("calls", "prompt_tokens", "completion_tokens", "wall_seconds")},
        "mean": {k: mean(k) for k in ("calls", "prompt_tokens", "completion_tokens", "wall_seconds")},
        "total_wall_seconds": round(sum(r.wall_seconds for r in runs), 3),
        "search_tokens_per_s": round(search_tps, 3),
    }
    if single_stream_tps:
        out["single_stream_tokens_per_s"] = round(single_stream_tps, 3)
        out["batching_speedup"] = round(search_tps / single_stream_tps, 3)
    return out


def report(runs: list[PuzzleRun], summary: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The JSON results document: configuration, summary, and every puzzle's figures."""
    return {"benchmark": "game24", "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "config": config,
            "summary": summary, "puzzles": [asdict(r) for r in runs]}
