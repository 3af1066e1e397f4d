"""`stackmind policy ...`: write, check, list, show, graph and test learning policies."""

from __future__ import annotations

import html
import json as jsonlib
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from stackmind.interfaces._app import JSON_OPTION, app, console, fail, out, print_json, settings
from stackmind.policies import json_schema
from stackmind.policies.library import composite_graph, cycles, default_policy_dirs, load_lenient
from stackmind.policies.parser import FileProblems, Problem
from stackmind.policies.schema import Policy, valid_name

policy_app = typer.Typer(help="Author learning policies: new, check, list, show, graph, test, schema; the agent's "
                         "own: synthesize, review.",
                         no_args_is_help=True)
app.add_typer(policy_app, name="policy")

DIR_OPTION = typer.Option(None, "--dir", "-d", help="Policy folder (repeatable; default ./policies, "
                          "$STACKMIND_HOME/policies).")


def _dirs(dirs: list[Path] | None) -> list[Path]:
    found = list(dirs) if dirs else default_policy_dirs(settings().home)
    if not found:
        raise fail("no policy folder found: make ./policies (`stackmind policy new NAME`) or pass --dir")
    return found


def _print_problems(problems: list[Problem]) -> None:
    for p in problems:
        colour = "red" if p.severity == "error" else "yellow"
        console.print(f"{escape(p.path)}:{p.line}:{p.column}: [{colour}]{p.severity}:[/] {escape(p.message)}",
                      markup=True, highlight=False, soft_wrap=True)


def _library(dirs: list[Path] | None):  # type: ignore[no-untyped-def]
    lib, problems = load_lenient(_dirs(dirs))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        console.print(f"[yellow]note:[/] {len(errors)} problem(s) in the policy files; "
                      "`stackmind policy check` lists them", markup=True)
    return lib


def _get(name: str, dirs: list[Path] | None) -> Policy:
    lib = _library(dirs)
    policy = lib.get(name.lstrip("@"))
    if policy is None:
        raise fail(f"no policy @{name.lstrip('@')}; known: {', '.join('@' + n for n in sorted(lib.names())) or 'none'}")
    return policy


@policy_app.command("new")
def new(
    name: str = typer.Argument(..., help="The policy's name: the symbol that invokes it, @name(...)."),
    directory: Annotated[Path, typer.Option("--dir", "-d", help="Folder to write into.")] = Path("policies"),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a new policy file with every section filled in as a starting point."""
    name = name.lstrip("@")
    if not valid_name(name):
        raise fail(f"{name!r} cannot be a policy name: use letters, digits and _, not starting with a digit")
    path = directory / f"{name}.policy.yaml"
    if path.exists() and not force:
        raise fail(f"{path} exists: edit it, or pass --force to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(SCAFFOLD.format(name=name), encoding="utf-8")
    out.print(str(path))
    console.print(f"edit it, then run: stackmind policy check {path}")


@policy_app.command("check")
def check_cmd(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Policy or trace files, or folders (default: the library).")] = None,
    json: bool = JSON_OPTION,
    strict: bool = typer.Option(False, "--strict", help="Treat warnings as errors."),
) -> None:
    """Validate policies and traces; list every problem as file:line:column; exit 1 on errors."""
    from stackmind.policies.library import check

    targets = list(paths) if paths else [*_dirs(None), *([Path("traces")] if Path("traces").is_dir() else [])]
    known: list[Policy] = []
    lib_dirs = default_policy_dirs(settings().home)
    if lib_dirs:  # traces and policies may invoke policies of the library
        lib, _ = load_lenient(lib_dirs)
        known = list(lib)
    try:
        report = check(targets, known=known)
    except FileProblems as e:  # pragma: no cover - check collects, but never show a traceback
        report = None
        problems = e.problems
    else:
        problems = report.problems
    errors = [p for p in problems if p.severity == "error" or strict]
    if json:
        print_json({
            "ok": not errors,
            "policies": [p.name for p in report.policies] if report else [],
            "traces": [path for path, _ in report.traces] if report else [],
            "problems": [p.__dict__ for p in problems],
        })
    else:
        _print_problems(problems)
        n_pol = len(report.policies) if report else 0
        n_tr = len(report.traces) if report else 0
        warnings = len(problems) - len([p for p in problems if p.severity == "error"])
        summary = (f"{n_pol} polic{'y' if n_pol == 1 else 'ies'}, {n_tr} trace{'' if n_tr == 1 else 's'}: "
                   f"{len(problems) - warnings} error(s), {warnings} warning(s)")
        out.print(("ok: " if not errors else "failed: ") + summary)
    if errors:
        raise typer.Exit(1)


@policy_app.command("list")
def list_cmd(dirs: list[Path] = DIR_OPTION, json: bool = JSON_OPTION) -> None:
    """The policies in the library, with their triggers and sizes."""
    lib = _library(dirs)
    rows = []
    for p in lib:
        fast = p.training.fast
        rows.append({
            "name": p.name, "description": p.description,
            "fast": fast.trigger if fast else None, "slow": p.training.slow.weight if p.training.slow else None,
            "examples": len(p.examples), "trajectories": len(p.trajectories), "source": p.source,
        })
    if json:
        print_json(rows)
        return
    if not rows:
        out.print("no policies")
        return
    width = max(len(r["name"]) for r in rows) + 1
    for r in rows:
        trig = r["fast"] or "-"
        slow = f"slow x{r['slow']:g}" if r["slow"] is not None else ""
        out.print(f"@{r['name']:<{width}} {trig:<24} {r['examples']:>2} ex {r['trajectories']:>2} traj  "
                  f"{slow:<9} {r['description']}")


@policy_app.command("show")
def show(
    name: str = typer.Argument(..., help="Policy name."),
    dirs: list[Path] = DIR_OPTION,
    json: bool = JSON_OPTION,
) -> None:
    """A policy's parts, and the frames fast learning pushes for it."""
    from stackmind.policies.fast import policy_frames

    p = _get(name, dirs)
    if json:
        print_json({**p.model_dump(mode="json"), "source": p.source})
        return
    out.print(f"@{p.name}({', '.join(a.name + ('' if a.required else '?') for a in p.parameters)})  {p.source}")
    out.print(f"  {p.description}")
    fast, slow = p.training.fast, p.training.slow
    out.print(f"  training: fast={fast.trigger if fast else '-'}"
              f"{f' (threshold {fast.threshold})' if fast and fast.threshold is not None else ''}"
              f"  slow={'weight ' + format(slow.weight, 'g') if slow else '-'}")
    out.print(f"  motivation: {len(p.motivation)}  examples: {len(p.examples)} "
              f"({sum(e.split == 'heldout' for e in p.examples)} held out)  trajectories: {len(p.trajectories)}")
    for m in p.motivation:
        out.print(f"    - {m.aim} {m.target or '?'}: {m.error}")
    out.print("\nframes pushed by fast learning:")
    k = fast.examples if fast else 3
    for f in policy_frames(p, p.train_examples()[:k], fast.trajectories if fast else 1):
        out.print(f"[{f.kind}] " + f.text.replace("\n", "\n    "))


@policy_app.command("graph")
def graph(
    dirs: list[Path] = DIR_OPTION,
    png: Annotated[Path | None, typer.Option("--png", help="Also draw the graph to this PNG file.")] = None,
    html_path: Annotated[Path | None, typer.Option(
        "--html", help="Also write the graph as a self-contained HTML page.")] = None,
    json: bool = JSON_OPTION,
) -> None:
    """The composite dependency graph (policy -> the policies and tools its examples invoke)."""
    lib = _library(dirs)
    g = composite_graph(list(lib))
    cyc = cycles(g)
    if json:
        print_json({
            "nodes": [{"name": n, **{k: v for k, v in d.items() if k != "description"}} for n, d in g.nodes(data=True)],
            "edges": [{"from": a, "to": b, "examples": d["examples"]} for a, b, d in g.edges(data=True)],
            "cycles": cyc,
        })
    else:
        for n in sorted(g.nodes):
            if g.nodes[n].get("kind") != "policy":
                continue
            callees = sorted(g.successors(n))
            out.print(f"@{n}" + (" -> " + ", ".join(f"@{c}" + ("" if g.nodes[c].get("kind") == "policy" else " (tool)")
                                                    for c in callees) if callees else ""))
        for c in cyc:
            console.print("[red]cycle:[/] " + " -> ".join(f"@{n}" for n in c), markup=True)
    if png:
        _draw_png(g, png)
        console.print(f"wrote {png}")
    if html_path:
        html_path.write_text(_graph_html(g, cyc), encoding="utf-8")
        console.print(f"wrote {html_path}")
    if cyc:
        raise typer.Exit(1)


def _layout(g):  # type: ignore[no-untyped-def]
    import networkx as nx

    return nx.spring_layout(g, seed=0) if len(g) else {}


def _draw_png(g, path: Path) -> None:  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    fig, ax = plt.subplots(figsize=(8, 6))
    pos = _layout(g)
    colours = ["#4c78a8" if g.nodes[n].get("kind") == "policy" else "#f58518" for n in g.nodes]
    nx.draw_networkx(g, pos, ax=ax, node_color=colours, font_size=8, node_size=900, arrows=True,
                     labels={n: f"@{n}" for n in g.nodes}, font_color="white")
    ax.set_title("learning policies (blue) and tools (orange) they invoke")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _graph_html(g, cyc: list[list[str]]) -> str:  # type: ignore[no-untyped-def]
    pos = _layout(g)
    w, h, pad = 900, 600, 80

    def xy(n: str) -> tuple[float, float]:
        x, y = pos[n]
        return pad + (x + 1) / 2 * (w - 2 * pad), pad + (y + 1) / 2 * (h - 2 * pad)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">',
             '<defs><marker id="a" markerWidth="10" markerHeight="7" refX="28" refY="3.5" orient="auto">'
             '<polygon points="0 0, 10 3.5, 0 7" fill="#555"/></marker></defs>']
    for a, b in g.edges:
        (x1, y1), (x2, y2) = xy(a), xy(b)
        parts.append(f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="#555" '
                     'marker-end="url(#a)"/>')
    for n, d in g.nodes(data=True):
        x, y = xy(n)
        fill = "#4c78a8" if d.get("kind") == "policy" else "#f58518"
        title = html.escape(d.get("description", "tool"))
        parts.append(f'<g><title>{title}</title><circle cx="{x:.0f}" cy="{y:.0f}" r="22" fill="{fill}"/>'
                     f'<text x="{x:.0f}" y="{y + 38:.0f}" text-anchor="middle" font-size="13">@{html.escape(n)}</text></g>')
    parts.append("</svg>")
    cyc_html = "".join(f"<li>{' &rarr; '.join('@' + html.escape(n) for n in c)}</li>" for c in cyc) or "<li>none</li>"
    data = html.escape(jsonlib.dumps({"edges": [list(e) for e in g.edges]}))
    return (f"<!doctype html><meta charset=utf-8><title>stackmind policy graph</title>"
            f"<h1>Learning policies</h1><p>Blue: policies; orange: tools. An arrow means an example of the first "
            f"invokes the second.</p>{''.join(parts)}<h2>Cycles</h2><ul>{cyc_html}</ul>"
            f"<script type='application/json' id='graph'>{data}</script>")


@policy_app.command("test")
def test_cmd(
    name: str = typer.Argument(..., help="Policy name."),
    split: str = typer.Option("all", "--split", help="all (leave-one-out), train or heldout."),
    limit: int = typer.Option(None, "--limit", help="Test at most this many examples."),
    max_steps: int = typer.Option(None, "--max-steps", help="The agent's step budget per example."),
    dirs: list[Path] = DIR_OPTION,
    family: str = typer.Option(None, "--family", "-f", help="Test on a goal family instead (docs/goals.md): "
                               "its --split goals (default heldout), checked by their verifiers."),
    json: bool = JSON_OPTION,
) -> None:
    """Run the policy's labelled examples through the agent, pushed vs not; report both pass rates.
    With --family: the goal suite's goals of that family instead, at the same step budget."""
    from stackmind.learning.trials import AgentRunner, PolicyTestError, run_policy_test
    from stackmind.llm.base import LLMError

    if family is not None:
        _test_on_family(_get(name, dirs), family, "heldout" if split == "all" else split, limit, max_steps, json)
        return
    if split not in ("all", "train", "heldout"):
        raise fail(f"--split must be all, train or heldout, not {split!r}")
    policy = _get(name, dirs)
    s = settings()
    try:
        runner = AgentRunner(s, max_steps=max_steps)
        try:
            with console.status("loading the model ...") as status:
                runner.agent.model()
                report = run_policy_test(policy, runner, split=split, limit=limit,  # type: ignore[arg-type]
                                         progress=lambda m: status.update(m))
        finally:
            runner.close()
    except (PolicyTestError, LLMError) as e:
        raise fail(str(e)) from e
    if json:
        print_json(report.to_dict())
        return
    for c in report.cases:
        out.print(f"  example {c.index}: pushed {'PASS' if c.pushed_ok else 'fail'} ({_short(c.pushed)})  "
                  f"not pushed {'PASS' if c.bare_ok else 'fail'} ({_short(c.bare)})  expected {c.expected}")
    n = len(report.cases)
    out.print(f"@{policy.name} [{split}] n={n}: pass rate pushed {report.pushed_rate:.0%} "
              f"({sum(c.pushed_ok for c in report.cases)}/{n}), not pushed {report.bare_rate:.0%} "
              f"({sum(c.bare_ok for c in report.cases)}/{n})")


def _test_on_family(policy: Policy, family: str, split: str, limit: int | None, max_steps: int | None,
                    json: bool) -> None:
    """The policy pushed vs not on a family's goals: the same agent, step budget and verifiers; the
    agent's memory, online learning and demos from episodes off, in a data dir of its own."""
    from stackmind.agent import Agent
    from stackmind.learning.evaluate import agent_arm, evaluate, format_table, measuring_settings, summarize
    from stackmind.tasks.goals import GoalError, load_goals

    s = settings()
    try:
        goals = load_goals(family, split)[:limit]  # type: ignore[arg-type]
    except GoalError as e:
        raise fail(str(e)) from e
    if not goals:
        raise fail(f"no {split} goals in the {family} family")
    where = s.home / "policy-tests" / f"{policy.name}-{family}-{split}"
    agent = Agent.from_settings(measuring_settings(s, where / "home"), warn=lambda _m: None)
    kw: dict[str, object] = {"max_steps": max_steps} if max_steps else {}
    log = where / "runs.jsonl"  # a rerun resumes
    say = console.print
    runs = evaluate(goals, agent_arm(agent, "pushed", progress=say, policies=[policy], **kw), log=log)
    runs += evaluate(goals, agent_arm(agent, "not pushed", progress=say, policies=[], **kw), log=log)
    agent.close()
    table = summarize(runs, baseline="not pushed")
    result = {"policy": policy.name, "family": family, "split": split, "goals": len(goals),
              "max_steps": max_steps or s.max_steps, "table": table}
    (where / "result.json").write_text(jsonlib.dumps(result, indent=2) + "\n")
    if json:
        print_json(result)
        return
    out.print(format_table(table))
    row = table[family]
    out.print(f"@{policy.name} on {family} [{split}] n={len(goals)}: pushed {row['pushed']['success']:.1%}, "
              f"not pushed {row['not pushed']['success']:.1%} "
              f"({row['pushed'].get('points_over_not pushed', 0):+.1f} points)")


def _short(text: str | None, n: int = 40) -> str:
    if text is None:
        return "no answer"
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


@policy_app.command("schema")
def schema(output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write to this file instead of stdout.")] = None) -> None:
    """The JSON Schema of policy files, for editors (e.g. yaml-language-server)."""
    text = jsonlib.dumps(json_schema(), indent=2) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")
    else:
        out.print(text.rstrip("\n"))


@policy_app.command("synthesize")
def synthesize_cmd(
    from_episodes: Annotated[list[Path] | None, typer.Option(
        "--from-episodes", help="Episode folders or files to learn from (repeatable; default the data dir's "
        "episodes).")] = None,
    dry_run: bool = typer.Option(False, "--dry-run", help="Write and validate candidates; ground, keep and "
                                 "save nothing."),
    remeasure_kept: bool = typer.Option(False, "--remeasure", help="First re-ground the kept policies and "
                                        "retire those whose ROI fell below the threshold."),
    json: bool = JSON_OPTION,
) -> None:
    """One synthesis round by hand: surprises -> clusters -> candidate policies -> grounding -> keep or discard."""
    from stackmind.learning.synthesize import SynthesisConfig, remeasure, synthesize_round
    from stackmind.llm import load_llm
    from stackmind.llm.base import LLMError

    s = settings()
    config = SynthesisConfig()
    try:
        with console.status("loading the model ...") as status:
            llm = load_llm(s)
            remeasured = (remeasure(s, llm, config=config, progress=lambda m: status.update(m))
                          if remeasure_kept and not dry_run else [])
            report = synthesize_round(s, llm, config=config, episode_dirs=from_episodes, dry_run=dry_run,
                                      progress=lambda m: status.update(m))
    except LLMError as e:
        raise fail(str(e)) from e
    report.remeasured = remeasured
    data = report.to_dict()
    if json:
        print_json(data)
        return
    for r in remeasured:
        g = r.get("grounding", {})
        out.print(f"re-measured @{r['name']} v{r['version']}: {'retired' if r['retired'] else 'kept'} "
                  f"({g.get('verdict', r.get('reason', ''))})")
    out.print(f"{data['episodes']} episodes, {data['surprises']} surprising steps, {len(data['clusters'])} clusters")
    for c in data["clusters"]:
        out.print(f"  cluster of {c['size']} step(s) in {c['episodes']} episode(s), e.g. {c['example_goal']!r}: "
                  + (f"skipped: {c['skipped']}" if "skipped" in c else
                     f"written from {c['written_from']}, {c['heldout']} held out"))
    for c in data["candidates"]:
        g = c["grounding"] or {}
        why = g.get("verdict") or "; ".join(c["problems"]) or ("not grounded (dry run)" if dry_run else "")
        out.print(f"@{c['name']}" + (f" v{c['version']}" if c["version"] else "") + f": {c['status']}"
                  + (" after one repair" if c["repaired"] else "") + f" - {why}"
                  + (f"\n    {c['file']}" if c["file"] else ""))
    for n in data["notes"]:
        console.print(f"note: {escape(n)}")
    out.print(f"written {data['written']}, kept {data['kept']}, pending review {data['pending']}, "
              f"discarded {data['discarded']}, dropped {data['dropped']}")


@policy_app.command("review")
def review_cmd(
    accept: Annotated[list[str] | None, typer.Option("--accept", help="Accept NAME or NAME.vN (repeatable).")] = None,
    reject: Annotated[list[str] | None, typer.Option("--reject", help="Reject NAME or NAME.vN (repeatable).")] = None,
    status_filter: Annotated[str | None, typer.Option("--status", help="List only this status "
                                                      "(kept, pending, discarded, dropped, retired, ...).")] = None,
    json: bool = JSON_OPTION,
) -> None:
    """The policies the agent wrote, with their trial results; accept or reject them.

    Without --accept or --reject, at a terminal, asks about each candidate pending review."""
    import sys

    from stackmind.learning.synthesize import SynthesisConfig
    from stackmind.policies.review import PolicyStore, ReviewError, summarize

    store = PolicyStore(settings(), SynthesisConfig().learned_dir)
    try:
        for ref in accept or []:
            e = store.accept(ref)
            console.print(f"accepted @{e.key}: in use ({store.active().get(e.name)})")
        for ref in reject or []:
            e = store.reject(ref)
            console.print(f"rejected @{e.key}" + (" and took it out of use" if e.status == "rejected" else ""))
        if not accept and not reject and not json and sys.stdin.isatty():
            for e in [e for e in store.entries() if e.status == "pending"]:
                row = summarize([e])[0]
                answer = typer.prompt(f"@{e.key} ({row['reason']}) - accept, reject or skip?", default="skip")
                if answer.lower().startswith("a"):
                    store.accept(e.key)
                elif answer.lower().startswith("r"):
                    store.reject(e.key)
    except ReviewError as e:
        raise fail(str(e)) from e
    rows = summarize(store.entries())
    if status_filter:
        rows = [r for r in rows if r["status"] == status_filter]
    if json:
        print_json({"learned_dir": str(store.learned), "log": str(store.log_path), "candidates": rows})
        return
    if not rows:
        out.print("no synthesized policies yet: `stackmind policy synthesize` writes some")
        return
    for r in rows:
        roi = f"ROI {r['roi_per_1k_tokens']:.3f}/1k tok" if r["roi_per_1k_tokens"] is not None else ""
        solved = (f"{r['success_with']} vs {r['success_without']} of {r['n']} solved"
                  if r["n"] is not None else "")
        out.print(f"@{r['name']}.v{r['version']:<3} {r['status']:<10} {solved:<22} {roi:<20} {r['reason']}")
    out.print(f"kept policies: {store.learned}; decisions: {store.log_path}")


SCAFFOLD = """\
# stackmind policy v1: see docs/policies.md
# yaml-language-server: $schema=policy.schema.json   (stackmind policy schema -o policy.schema.json)
name: {name}
description: TODO one line, what the policy does.
parameters:
  - name: goal
    description: TODO what to pass when invoking @{name}(goal=...)
subgoal: "TODO the sub-goal an invocation pushes: {{goal}}"

# Error examples: spans of state where something went wrong, that this policy fixes.
motivation:
  - state: |
      [goal] TODO
      [thought] TODO the step that went wrong
    error: TODO what went wrong
    aim: improve          # improve | predict | control
    target: TODO the X to improve

# Labelled examples: (goal, state, question) -> response. A response may invoke a policy: @name(...).
examples:
  - goal: TODO
    state: ""
    question: TODO the question asked at this point
    response: |
      TODO the response
      Final answer: TODO
    answer: TODO          # the final answer, for `stackmind policy test`
    match: {{kind: exact}}  # exact | regex | contains | numeric | judge
  - goal: TODO a held-out example, tested but never pushed
    response: TODO
    answer: TODO
    split: heldout

# Grounding trajectories: steps that use @{name} to reach a goal, and their reward.
trajectories:
  - goal: TODO
    steps:
      - thought: TODO
        action: "@{name}(goal=\\"TODO\\")"
        observation: TODO
        reward: 1.0
    answer: TODO
    reward: 1.0

training:
  fast:
    trigger: similarity   # similarity | prediction_error | reward_prediction_error | always
  slow:
    weight: 1.0
"""
