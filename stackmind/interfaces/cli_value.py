"""`stackmind value ...`: train, measure, inspect and reassess the learned value model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from stackmind.interfaces._app import JSON_OPTION, app, console, fail, out, print_json, settings

value_app = typer.Typer(help="The learned value model: train, eval, show, reassess.", no_args_is_help=True)
app.add_typer(value_app, name="value")


@value_app.command("train")
def train_cmd(
    game24: Annotated[Path | None, typer.Option("--game24", help="Also label Game of 24 states of this puzzle CSV "
                                                "exactly (the solver decides) and store them first.")] = None,
    puzzles: str | None = typer.Option(None, "--range", help="Puzzles of --game24 to use, A:B (0-based)."),
    per_depth: int = typer.Option(10, help="With --game24: states per depth (1 and 2) per puzzle."),
    epochs: int = typer.Option(40, help="Training epochs over the labels."),
    eval_fraction: float = typer.Option(0.2, help="Fraction of goals held out for the metrics."),
    seed: int = typer.Option(0),
    json_: bool = JSON_OPTION,
) -> None:
    """Full retrain on every stored label (held-out goals apart); saves a new version and makes it current."""
    from stackmind.tasks.game24 import PuzzleError, load_puzzles
    from stackmind.value import TrainConfig, ValueModelError, retrain, save_labels
    from stackmind.value.game24_states import dataset

    s = settings().ensure_dirs()
    if game24 is not None:
        try:
            chosen = load_puzzles(game24, puzzles)
        except PuzzleError as e:
            raise fail(str(e)) from None
        labels = dataset(chosen, per_depth=per_depth, seed=seed)
        save_labels(s, labels)
        console.print(f"stored {len(labels)} solver-labelled states of {len(chosen)} puzzles")
    try:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("embedding labels", total=epochs)

            def progress(epoch: int, total: int, row: dict[str, float]) -> None:
                bar.update(task, completed=epoch, description=f"epoch {epoch}/{total} loss {row['train_loss']:.4f}")

            model, report = retrain(s, eval_fraction=eval_fraction, config=TrainConfig(epochs=epochs, seed=seed),
                                    progress=progress)
    except ValueModelError as e:
        raise fail(str(e)) from None
    result = {"version": model.version, "train": report.train, "eval": report.eval,
              "seconds": round(report.seconds, 2), "metrics": report.metrics}
    if json_:
        print_json(result)
        return
    m = report.metrics
    out.print(f"value model {model.version}: {report.train} train / {report.eval} held-out labels, "
              f"{report.seconds:.1f} s")
    if m:
        out.print(f"held-out AUC {m.get('auc')}  Brier {m.get('brier')} (base rate {m.get('brier_base')})  "
                  f"ECE {m.get('ece')}")


@value_app.command("eval")
def eval_cmd(
    version: str | None = typer.Option(None, help="Version to measure (default: current)."),
    png: Annotated[Path | None, typer.Option(help="Reliability diagram path (default: the version's folder).")] = None,
    json_: bool = JSON_OPTION,
) -> None:
    """Brier, ECE and AUC on the version's held-out goals, and a reliability-diagram PNG."""
    from stackmind.value import ValueModel, ValueModelError, calibration, load_labels, reliability_diagram
    from stackmind.value.learn import TRAINABLE
    from stackmind.value.select import trust

    s = settings()
    try:
        model = ValueModel.load(s, version)
    except ValueModelError as e:
        raise fail(str(e)) from None
    goals = set(model.meta.get("data", {}).get("eval_goals", []))
    held = [lab for lab in load_labels(s, kinds=TRAINABLE) if lab.goal in goals]
    if not held:
        raise fail(f"no held-out labels for {model.version}: retrain with `stackmind value train`")
    y = [lab.target for lab in held]
    p = model.predict(held)
    metrics = calibration(y, p).to_dict()
    path = png or s.home / "value" / str(model.version) / "reliability.png"
    reliability_diagram({str(model.version): (y, p)}, path, title=f"value model {model.version}, held-out goals")
    ok, why = trust(metrics)
    result = {"version": model.version, "metrics": metrics, "png": str(path), "used_by_search": ok, "reason": why}
    if json_:
        print_json(result)
        return
    out.print(f"{model.version} on {metrics['n']} held-out labels ({metrics['positives']} reaching reward):")
    out.print(f"  AUC {metrics['auc']} ± {metrics['auc_stderr']}   Brier {metrics['brier']} "
              f"(base rate {metrics['brier_base']}, skill {metrics['brier_skill']})   ECE {metrics['ece']}")
    out.print(f"  search uses it: {'yes' if ok else 'no'} ({why})")
    out.print(f"  reliability diagram: {path}")


@value_app.command("show")
def show_cmd(last: int = typer.Option(20, help="How many recent RPEs to list."), json_: bool = JSON_OPTION) -> None:
    """Versions and the most recent reward-prediction errors."""
    from stackmind.value import current_version, load_rpe, versions

    s = settings()
    vs = versions(s)
    rpes = load_rpe(s, last=last)
    if json_:
        print_json({"current": current_version(s),
                    "versions": [{k: v for k, v in m.items() if k != "history"} for m in vs],
                    "rpe": [r.to_dict() for r in rpes]})
        return
    if not vs:
        out.print("no value model yet: `stackmind value train`")
    current = current_version(s)
    for m in vs[-10:]:
        mark = "*" if m["version"] == current else " "
        met = m.get("metrics", {})
        out.print(f"{mark} {m['version']} {m['kind']:<7} {m['created']}  train {m['data'].get('train')}  "
                  f"AUC {met.get('auc')}  Brier {met.get('brier')}  ECE {met.get('ece')}")
    if not rpes:
        out.print("no reward-prediction errors recorded yet")
        return
    table = Table(title=f"last {len(rpes)} reward-prediction errors")
    for col in ("episode", "node", "thought", "predicted", "achieved", "RPE", "scorer"):
        table.add_column(col)
    for r in rpes:
        table.add_row(str(r.episode), str(r.node), r.thought[:50], f"{r.predicted:.2f}", f"{r.achieved:.2f}",
                      f"{r.rpe:+.2f}", r.scorer)
    console.print(table)


@value_app.command("reassess")
def reassess_cmd(top: int = typer.Option(10, help="How many episodes to list."), json_: bool = JSON_OPTION) -> None:
    """Re-score finished episodes with the current model; list those whose judged value moved most."""
    from stackmind.storage import open_episodes
    from stackmind.trace import TraceError
    from stackmind.value import ValueModel, ValueModelError, reassess

    s = settings()
    try:
        model = ValueModel.load(s)
        with open_episodes(s) as store:
            episodes = list(store.episodes())
            where = store.location
    except (ValueModelError, TraceError) as e:
        raise fail(str(e)) from None
    moved = reassess(model, [e for e in episodes if e.steps])[:top]
    if json_:
        print_json([{**vars(r), "moved": round(r.moved, 4)} for r in moved])
        return
    if not moved:
        out.print(f"no scored episodes in {where}")
        return
    for r in moved:
        out.print(f"{r.moved:+.2f}  {r.before:.2f} -> {r.after:.2f}  reward {r.reward}  {r.episode}  {r.goal[:60]}")
