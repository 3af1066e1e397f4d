"""Core commands: run, status, stack."""

from __future__ import annotations

from typing import Any

import typer

from stackmind.interfaces._app import JSON_OPTION, app, console, fail, out, print_json, settings
from stackmind.llm.base import LLMError
from stackmind.settings import Settings
from stackmind.stack import Stack
from stackmind.storage import StorageError, open_episodes, open_store

stack_app = typer.Typer(help="Inspect the agent's named stacks.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")


@app.command()
def run(
    goal: str = typer.Argument(..., help="What to solve, in words."),
    stack: str = typer.Option(None, "--stack", help="Stack to work on (default: a new one per run)."),
    max_steps: int = typer.Option(None, "--max-steps", help="Step budget (default from settings)."),
    search: str = typer.Option(None, "--search",
                               help="none (one path), vote (several paths, the majority answer) or a tree "
                                    "of steps: bfs, dfs, mcts (default from settings)."),
    samples: int = typer.Option(None, "--samples", help="Paths sampled for --search vote."),
    json: bool = JSON_OPTION,
) -> None:
    """Reach one goal with the agent's loop; print the answer and write the episode."""
    from stackmind.agent import Agent, GoalError
    from stackmind.search import STRATEGIES

    if search is not None and search not in ("none", "vote", *STRATEGIES):
        raise fail(f"--search takes none, vote, {', '.join(STRATEGIES)}; not {search!r}")
    s = settings()
    agent = Agent.from_settings(s, warn=lambda msg: console.print(f"warning: {msg}"))
    try:
        with console.status("loading the model ...") as status:
            agent.model()
            status.update("thinking ...")
            episode = agent.run(goal, stack_name=stack, max_steps=max_steps, search=search, samples=samples,
                                progress=lambda msg: status.update(msg))
    except (LLMError, GoalError) as e:
        raise fail(str(e)) from e
    finally:
        agent.close()
    path = agent.episodes.where(episode.id) if agent.episodes is not None else ""
    if json:
        print_json({"answer": episode.answer, "episode": str(path), "stack": episode.stack,
                    "steps": len(episode.steps), **episode.meta})
        return
    out.print(episode.answer if episode.answer is not None else "(no answer within the step budget)")
    console.print(f"episode: {path}  stack: {episode.stack}  steps: {len(episode.steps)}")


@app.command()
def status(
    deployment: bool = typer.Option(False, "--deployment",
                                    help="Check that each configured service answers (database, chroma, model "
                                         "server): one line each; exit 1 when one is down."),
    json: bool = JSON_OPTION,
) -> None:
    """The data dir, model, backend, and the stacks with their sizes."""
    from stackmind.llm.embedded import GGUF_NAME, MODEL_NAME, dequantized_dir

    s = settings()
    if deployment:
        _deployment_status(s, json)
        return
    stacks: dict[str, int] = {}
    if s.database_url is not None or s.db_path.exists():
        try:
            store = open_store(s)
        except StorageError as e:
            raise fail(str(e)) from None
        stacks = store.stacks()
        store.close()
    if s.backend == "transformers":
        cached = (dequantized_dir(s) / "stackmind-ok").is_file()
    else:
        cached = (s.models_dir / GGUF_NAME).with_suffix(".verified").is_file()
    model = str(s.model_path) if s.model_path else MODEL_NAME
    if s.backend == "openai":
        model = f"{s.model} at {s.openai_base_url}"
    with open_episodes(s) as episode_store:
        episodes = len(episode_store.ids())
    adapter, gains = _adapter_status(s)
    info = {
        "home": str(s.home), "database": s.database_label, "backend": s.backend, "model": model,
        "embedded_model_cached": cached, "episodes": episodes, "stacks": stacks, "adapter": adapter,
        "learned": gains,
    }
    if json:
        print_json(info)
        return
    out.print(f"data dir   {s.home}")
    out.print(f"database   {s.database_label}")
    out.print(f"backend    {s.backend}")
    out.print(f"model      {model}" + ("" if s.backend not in ("transformers", "llamacpp") else
                                       f" ({'cached' if cached else 'not yet prepared: the first run does it'})"))
    out.print(f"episodes   {episodes}")
    if adapter is None:
        out.print("adapter    none (the base model)")
    else:
        gate = "; ".join(f"{k} {v['current']:.2f} -> {v['candidate']:.2f}" for k, v in adapter["gate"].items())
        out.print(f"adapter    {adapter['name']}" + (f" (gate: {gate})" if gate else ""))
    if gains is not None:
        changes = ", ".join(f"{f} {g:+.1f}" for f, g in gains["points"].items() if g is not None)
        out.print(f"learned    held-out, round 0 -> {gains['round']} ({gains['adapter'] or 'no adapter'}): "
                  f"{changes} points")
    out.print(f"stacks     {len(stacks)}")
    for name, n in stacks.items():
        out.print(f"  {name}  {n} frame{'s' if n != 1 else ''}")


def _adapter_status(s: Settings) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The promoted adapter with what its gate measured (current -> candidate per check), and the
    held-out change per family of the last `stackmind learn` (docs/learning.md)."""
    import json as jsonlib

    from stackmind.consolidate import AdapterRegistry, RegistryError

    try:
        current = AdapterRegistry.of(s).current()
    except (RegistryError, OSError):
        current = None
    adapter = None
    if current is not None:
        gate = current.meta.get("gate") or {}
        cand, cur = (gate.get("candidate") or {}), (gate.get("current") or {})
        scores = {k: {"current": cur.get("checks", {}).get(k), "candidate": v}
                  for k, v in (cand.get("checks") or {}).items()}
        if cand.get("loss") is not None and cur.get("loss") is not None:
            scores["held-out loss"] = {"current": cur["loss"], "candidate": cand["loss"]}
        adapter = {"name": current.name, "path": str(current.path),
                   "gate": {k: v for k, v in scores.items() if v["current"] is not None}}
    gains = None
    path = s.home / "learn" / "learn.json"
    try:
        c = jsonlib.loads(path.read_text()).get("curve") if path.is_file() else None
    except (OSError, ValueError):
        c = None
    if c and c.get("rounds"):
        gains = {"round": c["rounds"][-1], "adapter": c["adapters"][-1],
                 "points": {f: g[-1] for f, g in c["gain_points"].items()}}
    return adapter, gains


def _deployment_status(s: Settings, json: bool) -> None:
    from stackmind.deployment import check_deployment

    checks = check_deployment(s)
    if json:
        print_json({"ok": all(c.ok for c in checks), "services": [c.to_dict() for c in checks]})
    else:
        for c in checks:
            out.print(c.line())
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@stack_app.command("show")
def stack_show(
    name: str = typer.Argument(None, help="Stack name (default: the most recently used)."),
    budget: int = typer.Option(None, "--budget", help="Also show the render under this token budget."),
    json: bool = JSON_OPTION,
) -> None:
    """Show a stack's frames, bottom to top."""
    s = settings()
    if s.database_url is None and not s.db_path.exists():
        raise fail(f"no stacks yet in {s.home}: run `stackmind run \"...\"` first")
    store = open_store(s)
    names = store.stacks()
    if name is None:
        if not names:
            raise fail("there are no stacks yet")
        name = max(names, key=lambda n: store.frames(n)[-1].updated)
    elif name not in names:
        raise fail(f"no stack named {name!r}; known: {', '.join(names) or 'none'}")
    st = Stack(store, name)
    frames = st.frames()
    if json:
        data = {"stack": name, "frames": [f.to_dict() for f in frames]}
        if budget:
            data["render"] = st.render(budget)
        print_json(data)
        return
    out.print(f"stack {name}: {len(frames)} frames")
    for f in frames:
        text = f.text if len(f.text) <= 200 else f.text[:200] + " ..."
        out.print(f"  #{f.id:<5} {f.kind:<12} v={f.value:.2f} {f.tokens:>4} tok  {text}")
    if budget:
        out.print(f"\nrender under {budget} tokens:\n{st.render(budget)}")




@app.command()
def rate(
    episode: str = typer.Argument(..., help="Episode id (or a unique prefix) in the data dir."),
    verdict: str = typer.Argument(..., help="good | bad, or a reward in [-1, 1]."),
) -> None:
    """Give an episode its reward (as 👍/👎 do in Telegram): the value model learns from it."""
    from stackmind.agent import Agent
    from stackmind.interfaces.chat import rate_episode
    from stackmind.trace import Episode, TraceError

    s = settings()
    rewards = {"good": 1.0, "bad": -1.0}
    try:
        reward = rewards[verdict] if verdict in rewards else float(verdict)
    except ValueError as e:
        raise fail(f"the verdict is good, bad or a number in [-1, 1], not {verdict!r}") from e
    if not -1.0 <= reward <= 1.0:
        raise fail(f"a reward is between -1 and 1, not {reward}")
    found = sorted(s.episodes_dir.glob(f"{episode}*.trace.yaml")) if s.episodes_dir.is_dir() else []
    if len(found) != 1:
        raise fail(f"no episode {episode!r} in {s.episodes_dir}" if not found else
                   f"{len(found)} episodes start with {episode!r}: give more of the id")
    try:
        ep = Episode.load(found[0])
    except TraceError as e:
        raise fail(str(e)) from e
    agent = Agent(s.model_copy(update={"memory": False}))
    ep = rate_episode(agent, ep, reward, by="cli")
    learned = ep.meta.get("learning")
    out.print(f"episode {ep.id}: reward {reward:+g}" + (f"; value model {learned['value_version']} learned from "
                                                         f"{learned['labels']} labels" if learned else ""))
