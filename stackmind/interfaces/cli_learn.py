"""`stackmind learn`: practise, consolidate, gate and measure, for N rounds (docs/learning.md)."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path

import typer

from stackmind.interfaces._app import JSON_OPTION, app, console, fail, out, print_json, settings

_FAMILY = typer.Option(None, "--family", "-f",
                       help="Families to practise and measure (default: lists, dates, strings, word).")
_DIR = typer.Option(None, "--dir", help="Logs and report (default <home>/learn); a rerun resumes.")


@app.command()
def learn(
    family: list[str] = _FAMILY,
    rounds: int = typer.Option(1, "--rounds", min=1, help="Practice-consolidate-measure rounds after round 0."),
    train_goals: int = typer.Option(12, "--train-goals", min=1, help="Train goals per family and round."),
    attempts: int = typer.Option(2, "--attempts", min=1, help="Attempts per goal: one greedy, the rest sampled."),
    temperature: float = typer.Option(0.8, "--temperature", min=0.0, help="Sampling temperature of later attempts."),
    dev_goals: int = typer.Option(5, "--dev-goals", min=0, help="Dev goals per family the gate compares on."),
    heldout_goals: int = typer.Option(None, "--heldout-goals", min=1,
                                      help="Held-out goals per family (default: the whole split)."),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="Goals worked on at once."),
    train_minutes: float = typer.Option(30.0, "--train-minutes", min=0.1,
                                        help="Consolidation's time budget per round (--max-minutes)."),
    max_steps: int = typer.Option(None, "--max-steps", help="Stop each round's LoRA training after this many steps."),
    rank: int = typer.Option(None, "--rank", help="LoRA rank of a fresh adapter (8, 16, 32, 64)."),
    synthesis: int = typer.Option(2, "--synthesis", min=0,
                                  help="Policies the agent may write from each round's practice (0: none)."),
    seed: int = typer.Option(0, "--seed"),
    directory: Path = _DIR,
    report: bool = typer.Option(False, "--report", help="Show the last learn report and exit."),
    json: bool = JSON_OPTION,
) -> None:
    """The self-improvement cycle: practise on train goals (verified, hindsight-labelled), consolidate
    (LoRA on the step format, value model, gate on each family's dev goals), measure held-out; a
    learning curve per family as JSON and PNG. Resumable: run it again to continue."""
    from pydantic import ValidationError

    from stackmind.consolidate import AdapterVerificationError, ConsolidateConfig, ConsolidationLocked
    from stackmind.learning.cycle import LearnConfig, LearnError, format_curve, learn_dir
    from stackmind.learning.cycle import learn as run_learn
    from stackmind.tasks.goals import GoalError

    s = settings()
    where = directory or learn_dir(s)
    if report:
        path = where / "learn.json"
        if not path.is_file():
            raise fail(f"no learn report in {where}: run `stackmind learn` first")
        data = jsonlib.loads(path.read_text())
        if json:
            print_json(data)
        else:
            out.print(format_curve(data))
            console.print(f"report: {path}, {where / 'learn.png'}")
        return
    overrides: dict[str, object] = {}
    if max_steps is not None:
        overrides["max_steps"] = max_steps
    if rank is not None:
        overrides.update(rank=rank, init="fresh")
    try:
        cconfig = ConsolidateConfig(**overrides)
    except ValidationError as e:
        raise fail("; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())) from e
    config = LearnConfig(rounds=rounds, train_goals=train_goals, attempts=attempts, temperature=temperature,
                         dev_goals=dev_goals, heldout_goals=heldout_goals, concurrency=concurrency,
                         train_minutes=train_minutes, synthesis=synthesis, seed=seed)
    if family:
        config.families = list(family)
    try:
        record = run_learn(s, config, where, consolidate_config=cconfig,
                           progress=lambda m: console.print(f"[dim]learn:[/] {m}", markup=True, highlight=False))
    except (LearnError, GoalError) as e:
        raise fail(str(e)) from e
    except ConsolidationLocked as e:
        raise fail(f"{e}; run `stackmind learn` again when it is done (it resumes)") from e
    except AdapterVerificationError as e:
        raise fail(f"{e}. Run `stackmind learn` again after a fix: it resumes.") from e
    if json:
        print_json(record)
        return
    out.print(format_curve(record))
    out.print(f"report: {where / 'learn.json'}, {record['png']}")
