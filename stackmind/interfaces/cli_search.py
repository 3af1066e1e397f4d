"""Search commands: ``stackmind tree show EPISODE`` and ``stackmind bench game24``."""

from __future__ import annotations

import json as jsonlib
import time
from pathlib import Path

import networkx as nx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stackmind.interfaces._app import JSON_OPTION, app, bench_app, console, fail, out, print_json, settings
from stackmind.llm.base import LLM, LLMError
from stackmind.search.bench import (
    PuzzleRun,
    Solver,
    report,
    run_bench,
    search_solver,
    single_stream_tokens_per_s,
    summarize,
)
from stackmind.search.engine import Budget
from stackmind.search.solve import STRATEGIES
from stackmind.search.viewer import render_html
from stackmind.settings import Settings
from stackmind.storage import open_episodes
from stackmind.tasks.game24 import Puzzle, PuzzleError, answer_expression, check_expression, load_puzzles
from stackmind.tasks.goals.external import game24_goal, game24_split
from stackmind.trace import Episode, TraceError

# Path-typed options (module-level, so the defaults are built once).
_HTML_OUT = typer.Option(None, "--out", "-o", help="HTML file to write (default: beside the episode).")
_CSV = typer.Option(..., "--csv", help="Puzzles: a CSV with a 'Puzzles' column, like game24_dev.csv.")
_RESULTS_OUT = typer.Option(None, "--out", "-o", help="JSON results file (default: <home>/bench/...).")

tree_app = typer.Typer(help="Search trees: see what a search explored.", no_args_is_help=True)
app.add_typer(tree_app, name="tree")


def find_episode(s: Settings, ref: str) -> Path:
    """An episode by path, by id (in the episodes folder), or by a unique id prefix."""
    path = Path(ref)
    if path.is_file():
        return path
    folder = s.episodes_dir
    exact = folder / f"{ref}.trace.yaml"
    if exact.is_file():
        return exact
    matches = sorted(folder.glob(f"{ref}*.trace.yaml")) if folder.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(m.name.removesuffix(".trace.yaml") for m in matches[:5])
        raise fail(f"{ref!r} names {len(matches)} episodes ({names}...): give more of the id")
    raise fail(f"no episode {ref!r}: give a trace file's path or an episode id from {folder}")


@tree_app.command("show")
def tree_show(
    episode: str = typer.Argument(..., help="Episode id (or prefix) in the data dir, or a trace file path."),
    output: Path = _HTML_OUT,
    json: bool = JSON_OPTION,
) -> None:
    """Write an episode's search tree as one self-contained HTML page."""
    s = settings()
    path = find_episode(s, episode)
    try:
        ep = Episode.load(path)
    except TraceError as e:
        raise fail(str(e)) from e
    if not ep.tree:
        raise fail(f"{path}: this episode has no search tree (it ran without search); "
                   "run with search, e.g. stackmind bench game24, to get one")
    try:
        page = render_html(ep.tree, title=f"{ep.goal}  ({ep.id})")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, nx.NetworkXException) as e:
        raise fail(f"{path}: the tree cannot be drawn ({type(e).__name__}: {e}); the trace's 'tree' must be "
                   "node-link data, as a search writes it") from e
    target = output or path.with_name(path.name.removesuffix(".trace.yaml") + ".tree.html")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    nodes = len(ep.tree.get("nodes", []) or [])
    if json:
        print_json({"html": str(target), "nodes": nodes, "episode": str(path)})
        return
    out.print(str(target))
    console.print(f"{nodes} nodes; open it in a browser")


def _load_llm(s: Settings) -> LLM:
    from stackmind.llm import load_llm

    return load_llm(s)


def _agent_solver(s: Settings, llm: LLM) -> Solver:
    """The agent's loop (its tools, learning policies and worked examples) on each puzzle, in its own
    data dir (<home>/bench/game24-agent) with nothing carried from one puzzle to the next (the goal
    suite's measuring settings); its answer checked by the verifier."""
    from stackmind.agent import Agent
    from stackmind.learning.evaluate import measuring_settings

    agent = Agent.from_settings(measuring_settings(s, s.home / "bench" / "game24-agent"), llm=llm,
                                warn=lambda m: None)

    def run(puzzle: Puzzle) -> PuzzleRun:
        goal = game24_goal(puzzle.text)
        t0 = time.perf_counter()
        episode = agent.run(goal)
        wall = time.perf_counter() - t0
        answer = episode.answer
        ok = answer is not None and check_expression(answer_expression(answer), puzzle.numbers)
        u = episode.meta.get("usage", {})
        return PuzzleRun(
            puzzle=puzzle.text, index=puzzle.index, rank=puzzle.rank, success=ok, answer=answer,
            calls=int(u.get("calls", 0)), prompt_tokens=int(u.get("prompt_tokens", 0)),
            completion_tokens=int(u.get("completion_tokens", 0)), wall_seconds=round(wall, 3),
            llm_seconds=float(u.get("wall_seconds", 0.0)), stopped="answered" if answer else "no answer",
            episode=agent.episodes.where(episode.id) if agent.episodes else "", extra={"steps": len(episode.steps)},
        )

    return run


@bench_app.command("game24")
def bench_game24(
    csv: Path = _CSV,
    range_: str = typer.Option(None, "--range", help="Rows A:B of the file (0-based, B excluded), e.g. 0:50."),
    split: str = typer.Option(None, "--split", help="Only the puzzles of this split of the file: train "
                              "(the easier half) | dev | heldout (alternate rows of the harder half)."),
    limit: int = typer.Option(None, "--limit", help="At most this many puzzles (after --range and --split)."),
    strategy: str = typer.Option("bfs", "--strategy", help="bfs | dfs | mcts"),
    mode: str = typer.Option("search", "--mode", help="search (thought search only) | agent (policies, tools)"),
    beam: int = typer.Option(5, "--beam", help="bfs: states kept per depth."),
    threshold: float = typer.Option(0.3, "--threshold", help="dfs: prune states valued below this."),
    simulations: int = typer.Option(24, "--simulations", help="mcts: selections in all."),
    batch: int = typer.Option(4, "--batch", help="mcts: leaves expanded together."),
    samples: int = typer.Option(1, "--samples", help="Proposal samples per expanded node."),
    max_calls: int = typer.Option(None, "--max-calls", help="Budget: LLM calls per puzzle."),
    max_tokens: int = typer.Option(None, "--max-tokens", help="Budget: prompt+completion tokens per puzzle."),
    max_seconds: float = typer.Option(None, "--max-seconds", help="Budget: seconds per puzzle."),
    max_nodes: int = typer.Option(None, "--max-nodes", help="Budget: tree nodes per puzzle."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    results: Path = _RESULTS_OUT,
    json: bool = JSON_OPTION,
) -> None:
    """Game of 24: per-puzzle success, LLM calls, tokens and seconds; a summary; a JSON results file."""
    if strategy not in STRATEGIES:
        raise fail(f"--strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if mode not in ("search", "agent"):
        raise fail(f"--mode must be search or agent, not {mode!r}")
    if split not in (None, "train", "dev", "heldout"):
        raise fail(f"--split must be train, dev or heldout, not {split!r}")
    try:
        puzzles = load_puzzles(csv, range_)
        if split is not None:
            rows = len(load_puzzles(csv))
            puzzles = [p for p in puzzles if game24_split(p.index, rows) == split]
    except PuzzleError as e:
        raise fail(str(e)) from e
    puzzles = puzzles[:limit] if limit else puzzles
    if not puzzles:
        raise fail("no puzzles left: check --range, --split and --limit")
    s = settings().ensure_dirs()
    budget = Budget(llm_calls=max_calls, tokens=max_tokens, seconds=max_seconds, nodes=max_nodes)
    params = {"bfs": {"beam": beam}, "dfs": {"threshold": threshold},
              "mcts": {"simulations": simulations, "batch": batch}}[strategy]
    target = results or s.home / "bench" / f"game24-{mode}-{strategy}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    single: float | None = None
    config = {"csv": str(csv), "range": range_, "split": split, "limit": limit, "strategy": strategy, "mode": mode, "model": None,
              "params": params, "samples": samples, "seed": seed, "budget": budget.to_dict()}

    def save(runs: list[PuzzleRun]) -> dict:
        """The results file, rewritten after every puzzle so that a stopped run keeps its figures."""
        doc = report(runs, summarize(runs, single), config)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(jsonlib.dumps(doc, indent=2), encoding="utf-8")
        tmp.replace(target)
        return doc

    try:
        with console.status("loading the model ..."):
            llm = _load_llm(s)
            config["model"] = llm.name
            single = single_stream_tokens_per_s(llm)
        if mode == "search":
            solver = search_solver(llm, strategy=strategy, budget=budget, samples=samples, seed=seed,
                                   save=open_episodes(s).save, **params)
        else:
            solver = _agent_solver(s, llm)
        columns = (TextColumn("game24 {task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("solved {task.fields[solved]}"), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=json) as progress:
            task = progress.add_task(mode if mode == "agent" else f"{mode}/{strategy}", total=len(puzzles), solved=0)
            solved = 0
            so_far: list[PuzzleRun] = []

            def done(run: PuzzleRun) -> None:
                nonlocal solved
                solved += run.success
                so_far.append(run)
                save(so_far)
                progress.update(task, advance=1, solved=solved)
                if not json:
                    mark = "[green]solved[/]" if run.success else "[red]failed[/]"
                    progress.console.print(
                        f"{run.puzzle:>14}  {mark}  calls {run.calls:3d}  tokens {run.prompt_tokens}+"
                        f"{run.completion_tokens}  {run.wall_seconds:.1f}s  {run.answer or ''}", highlight=False)

            runs = run_bench(puzzles, solver, on_done=done)
    except LLMError as e:
        raise fail(str(e)) from e
    summary = summarize(runs, single)
    doc = save(runs)
    if json:
        print_json({**doc, "results_file": str(target)})
        return
    m = summary["median"]
    out.print(f"solved {summary['solved']}/{summary['puzzles']} ({summary['success_rate']:.0%})  "
              f"median: calls {m['calls']:g}, tokens {m['prompt_tokens']:g}+{m['completion_tokens']:g}, "
              f"{m['wall_seconds']:.1f} s")
    tps = f"tokens/s during search {summary['search_tokens_per_s']:.1f}"
    if "single_stream_tokens_per_s" in summary:
        tps += (f" vs single-stream {summary['single_stream_tokens_per_s']:.1f} "
                f"(x{summary['batching_speedup']:.2f})")
    out.print(tps)
    out.print(f"results: {target}")
