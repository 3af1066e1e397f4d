"""Measuring the agent on goals with verifiers, side by side with the bare model.

    runs = evaluate(goals, agent_arm(agent), log=path)     # the agent's loop, one episode per goal
    runs += evaluate(goals, bare_arm(llm), log=path)       # the same model, one prompt, no agent
    report = summarize(runs)                               # per family and arm: success, tokens, time

Every run is appended to a JSONL log as it ends, so a long measurement resumes where it stopped
(runs already in the log are not repeated). Goals of one arm run several at a time: the LLM layer
batches their steps together.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stackmind.agent import Agent
from stackmind.llm import LLM
from stackmind.settings import Settings
from stackmind.tasks.goals import Goal

ProgressFn = Callable[[str], None]

BARE_SYSTEM = "You are a helpful assistant."
BARE_INSTRUCTION = ("\n\nThink step by step. Then give the answer on the last line, as "
                    "\"Final answer: <answer>\", in the form the question asks for.")


@dataclass
class GoalRun:
    """One goal, one arm: what was answered and what it cost."""

    arm: str
    goal: str  # the goal's id
    family: str
    split: str
    success: bool
    answer: str | None
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    wall_seconds: float = 0.0
    steps: int = 0
    format_errors: int = 0  # steps whose reply was not in the step format
    episode: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Arm = tuple[str, Callable[[Sequence[Goal]], list[GoalRun]]]  # (name, run a batch of goals)


def measuring_settings(settings: Settings, home: Path) -> Settings:
    """The settings of an agent measured (or practising) in ``home``: the shared model cache, the
    policies of the data dir measured (its learned ones too), and none of what would carry one goal's
    answer into another (memory, online learning, demos from episodes)."""
    return settings.model_copy(update={"home": home, "memory": False, "learn": False,
                                       "demos_from_episodes": False, "cache": settings.cache_dir,
                                       "policies_home": settings.policies_home or settings.home})


def agent_arm(agent: Agent, name: str = "agent", *, concurrency: int = 4, progress: ProgressFn | None = None,
              **run_kw: Any) -> Arm:
    """The agent's loop on each goal (its verifier gives the episode's reward)."""

    def run_one(goal: Goal) -> GoalRun:
        t0 = time.perf_counter()
        ep = agent.run(goal.text, verify=goal.verify, meta={"goal_id": goal.id, "family": goal.family}, **run_kw)
        usage = ep.meta.get("usage", {})
        flat = list(_all_steps(ep.steps))
        run = GoalRun(name, goal.id, goal.family, goal.split, bool(ep.reward and ep.reward >= 1.0), ep.answer,
                      calls=int(usage.get("calls", 0)), prompt_tokens=int(usage.get("prompt_tokens", 0)),
                      completion_tokens=int(usage.get("completion_tokens", 0)),
                      cached_tokens=int(usage.get("cached_tokens", 0)),
                      wall_seconds=round(time.perf_counter() - t0, 3), steps=len(flat),
                      format_errors=sum(1 for s in flat if s.meta.get("format_error")), episode=ep.id)
        if progress:
            progress(f"{name} {goal.id}: {'ok' if run.success else 'no'} ({run.answer!r}, {run.wall_seconds:.0f} s)")
        return run

    def run_all(goals: Sequence[Goal]) -> list[GoalRun]:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            return list(pool.map(run_one, goals))

    return name, run_all


def bare_arm(llm: LLM, name: str = "bare", *, max_tokens: int = 512, batch: int = 8,
             progress: ProgressFn | None = None) -> Arm:
    """The same model with no agent: one chat prompt per goal, asked to reason step by step and to end
    with its answer; batched, greedy. The verifier reads the reply as it reads the agent's answers."""

    def run_all(goals: Sequence[Goal]) -> list[GoalRun]:
        out: list[GoalRun] = []
        for i in range(0, len(goals), batch):
            part = goals[i:i + batch]
            t0 = time.perf_counter()
            gen = llm.generate([[{"role": "system", "content": BARE_SYSTEM},
                                 {"role": "user", "content": g.text + BARE_INSTRUCTION}] for g in part],
                               max_tokens=max_tokens, temperature=0.0, seed=0)
            wall = (time.perf_counter() - t0) / len(part)
            share = len(part)
            for g, texts in zip(part, gen.texts, strict=True):
                reply = texts[0]
                out.append(GoalRun(name, g.id, g.family, g.split, g.verify(reply) >= 1.0, reply, calls=1,
                                   prompt_tokens=gen.usage.prompt_tokens // share,
                                   completion_tokens=gen.usage.completion_tokens // share,
                                   cached_tokens=gen.usage.cached_tokens // share, wall_seconds=round(wall, 3),
                                   steps=1))
            if progress:
                progress(f"{name}: {min(i + batch, len(goals))}/{len(goals)} goals")
        return out

    return name, run_all


def evaluate(goals: Sequence[Goal], arm: Arm, *, log: Path | None = None, chunk: int = 8) -> list[GoalRun]:
    """Run ``arm`` on every goal not yet in ``log`` (appending each run as it ends); all runs of the arm."""
    name, run = arm
    done = {r.goal: r for r in read_log(log) if r.arm == name} if log is not None else {}
    todo = [g for g in goals if g.id not in done]
    lock = threading.Lock()
    for i in range(0, len(todo), chunk):
        for r in run(todo[i:i + chunk]):
            done[r.goal] = r
            if log is not None:
                with lock:
                    log.parent.mkdir(parents=True, exist_ok=True)
                    with log.open("a", encoding="utf-8") as f:
                        f.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
    return [done[g.id] for g in goals if g.id in done]


def read_log(path: Path | None) -> list[GoalRun]:
    """The runs in a log; a torn last line (a run killed while writing) is left out."""
    if path is None or not path.is_file():
        return []
    runs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            runs.append(GoalRun(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return runs


def summarize(runs: Iterable[GoalRun], baseline: str = "bare") -> dict[str, Any]:
    """Per family and arm: success rate, format-valid rate, medians of calls, tokens and seconds;
    and each arm's ratio and difference in points to the baseline arm, family by family."""
    by: dict[tuple[str, str], list[GoalRun]] = {}
    for r in runs:
        by.setdefault((r.family, r.arm), []).append(r)
        by.setdefault(("all", r.arm), []).append(r)
    table: dict[str, dict[str, Any]] = {}
    for (family, arm), rs in sorted(by.items()):
        steps = sum(r.steps for r in rs)
        table.setdefault(family, {})[arm] = {
            "n": len(rs), "solved": sum(r.success for r in rs), "success": round(sum(r.success for r in rs) / len(rs), 4),
            "format_valid": round(1 - sum(r.format_errors for r in rs) / steps, 4) if steps else None,
            "calls_per_goal": statistics.median(r.calls for r in rs),
            "tokens_per_goal": statistics.median(r.prompt_tokens + r.completion_tokens for r in rs),
            "completion_tokens_per_goal": statistics.median(r.completion_tokens for r in rs),
            "seconds_per_goal": round(statistics.median(r.wall_seconds for r in rs), 2),
        }
    for arms in table.values():
        base = arms.get(baseline)
        for arm, row in arms.items():
            if base is not None and arm != baseline:
                row["points_over_" + baseline] = round(100 * (row["success"] - base["success"]), 1)
                row["ratio_to_" + baseline] = round(row["success"] / base["success"], 2) if base["success"] else None
    return table


def format_table(table: dict[str, Any]) -> str:
    arms = sorted({a for fam in table.values() for a in fam})
    lines = ["family       " + "".join(f"{a:>22}" for a in arms) + "   format-valid  calls  tokens  s/goal"]
    for family in [*(f for f in table if f != "all"), "all"]:
        if family not in table:
            continue
        row = table[family]
        cells = "".join(f"{row[a]['solved']:>9}/{row[a]['n']:<3} {100 * row[a]['success']:5.1f}%   " if a in row
                        else " " * 22 for a in arms)
        first = next((row[a] for a in arms if a != "bare" and a in row), next(iter(row.values())))
        fv = f"{100 * first['format_valid']:.1f}%" if first.get("format_valid") is not None else "-"
        lines.append(f"{family:<13}{cells}   {fv:>11}  {first['calls_per_goal']:>5}  "
                     f"{first['tokens_per_goal']:>6}  {first['seconds_per_goal']:>6}")
    return "\n".join(lines)


def _all_steps(steps: Iterable[Any]) -> Iterable[Any]:
    for s in steps:
        yield s
        yield from _all_steps(s.substeps)
