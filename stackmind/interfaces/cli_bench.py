"""`stackmind bench goals`: the agent against the bare model on the goal suite, in one run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from stackmind.interfaces._app import bench_app, console, fail, out, settings
from stackmind.learning.evaluate import (
    agent_arm,
    bare_arm,
    evaluate,
    format_table,
    measuring_settings,
    summarize,
)
from stackmind.tasks.goals import GoalError, families, load_goals

_FAMILY = typer.Option(None, "--family", "-f", help="Families to run (default: the seven built-in ones).")
_DIR = typer.Option(None, "--dir", help="Where the log, the agent's data dir and the JSON go "
                    "(default: <home>/bench/goals-<split>); a rerun resumes from its log.")
_JSON = typer.Option(None, "--json", help="Write the figures here too.")


@bench_app.command("goals")
def bench_goals(
    family: list[str] = _FAMILY,
    split: str = typer.Option("dev", "--split", help="dev | heldout | train"),
    limit: int = typer.Option(None, "--limit", help="At most this many goals per family."),
    bare: bool = typer.Option(True, "--bare/--no-bare", help="Also run the bare model (one prompt, no agent)."),
    search: str = typer.Option(None, "--search", help="The agent's strategy: none | vote | bfs | dfs | mcts."),
    samples: int = typer.Option(None, "--samples", help="Paths voted on (search vote)."),
    concurrency: int = typer.Option(4, "--concurrency", help="Goals the agent works on at once."),
    directory: Path = _DIR,
    json_out: Path = _JSON,
) -> None:
    """Success per family of the agent and of the bare model (same model, one prompt), their ratio and
    difference, format-valid reply rate, LLM calls, tokens and seconds per goal. The agent runs in its
    own data dir with memory, online learning and demonstrations from its own episodes off, so no goal
    of the split teaches another."""
    s = settings()
    chosen = family or [f for f in families() if f not in ("gsm8k", "game24")]
    try:
        goals = [g for f in chosen for g in load_goals(f, split)[:limit]]
    except GoalError as e:
        raise fail(str(e)) from e
    where = directory or s.home / "bench" / f"goals-{split}"
    home = where / "home"
    agent_settings = measuring_settings(s, home)
    from stackmind.agent import Agent

    agent = Agent.from_settings(agent_settings, warn=lambda m: None)
    log = where / "runs.jsonl"
    say = console.print
    kw = {}
    if search:
        kw["search"] = search
    if samples:
        kw["samples"] = samples
    t0 = time.perf_counter()
    say(f"{len(goals)} goals ({', '.join(chosen)}, {split}); log {log}")
    runs = evaluate(goals, agent_arm(agent, concurrency=concurrency, progress=say, **kw), log=log)
    if bare:
        runs += evaluate(goals, bare_arm(agent.model(), progress=say), log=log)
    agent.close()
    table = summarize(runs)
    out.print(format_table(table))
    result = {"split": split, "families": chosen, "goals": len(goals), "model": agent.model().name,
              "search": search or agent_settings.search, "samples": samples or agent_settings.samples,
              "wall_seconds": round(time.perf_counter() - t0, 1), "table": table}
    (where / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2) + "\n")
    say(f"wrote {where / 'result.json'}")
