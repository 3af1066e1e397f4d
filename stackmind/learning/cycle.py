"""The self-improvement cycle as one command (`stackmind learn`): practise, consolidate, gate, measure.

    report = learn(settings, LearnConfig(families=["lists", "dates"], rounds=1))

Round 0 only measures. Each round after it:

1. **practice**: train goals of each family (``train_goals`` a round, the next ones each round), each
   ``attempts`` times: the first greedy, the others sampled at ``temperature``, each with its own seed.
   Every attempt is an ordinary episode in the learning data dir, its reward given by the goal's
   verifier; then every episode is labelled in hindsight (returns-to-go; a failed attempt's
   conclusion as the goal it did reach) by the value package. This is expert iteration: the
   successes and the relabelled partial successes are the training data.
2. **consolidation** (`stackmind.consolidate.consolidate`) in that data dir: a LoRA on exactly the
   step-format prompts the agent saw, with replay of earlier rounds' examples; the value model
   retrained on the new labels; the gate compares candidate and current on each family's first
   ``dev_goals`` dev goals, through the agent's loop on llama.cpp at the same budget, and promotes
   only when no family is worse by more than one dev goal (and the held-out loss is not worse).
3. **measurement**: each family's held-out goals through the agent's loop with the promoted adapter,
   in a data dir of its own (a held-out goal never becomes training data), memory, online learning
   and demonstrations from episodes off, as in `stackmind bench goals`.

The data dir is the agent's own (``STACKMIND_HOME``): practice episodes join its experience and the
promoted adapter is what `stackmind run` and chat use next. Every attempt and every measured goal is appended to a log as it ends and every stage is recorded in
``learn.json`` when done, so a killed `learn` resumes where it stopped (consolidation from its last
finished stage). The report (``learn.json``, ``learn.png``: held-out success per family per round,
training and held-out loss, the value model's calibration) is rewritten after every stage.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stackmind.agent import Agent
from stackmind.consolidate import ConsolidateConfig, consolidate, unfinished_run
from stackmind.consolidate.dataset import atomic_write
from stackmind.consolidate.registry import AdapterRegistry
from stackmind.errors import StackmindError
from stackmind.learning.evaluate import GoalRun, agent_arm, evaluate, measuring_settings
from stackmind.learning.grounding import HeldoutTask, goal_task
from stackmind.learning.hooks import learning_hooks
from stackmind.llm import LLM, load_llm
from stackmind.settings import Settings
from stackmind.tasks.goals import Goal, load_goals

ProgressFn = Callable[[str], None]
REPORT = "learn.json"


class LearnError(StackmindError, ValueError):
    pass


@dataclass
class LearnConfig:
    """How much a `learn` run does. The defaults are the smallest configuration that runs one round in
    about an hour and a half on two CPU cores (docs/learning.md has the figures and a GPU one)."""

    families: list[str] = field(default_factory=lambda: ["lists", "dates", "strings", "word"])
    rounds: int = 1
    train_goals: int = 12  # per family and round: the next ones of its train split each round
    attempts: int = 2  # per goal: the first greedy, the others sampled
    temperature: float = 0.8
    dev_goals: int = 5  # per family, for the gate
    heldout_goals: int | None = None  # per family (None: the whole held-out split)
    concurrency: int = 4
    train_minutes: float | None = 30.0  # consolidation's --max-minutes (its training share is 3/4)
    synthesis: int = 2  # policies the agent may write from each round's practice (0: no synthesis)
    seed: int = 0

    def check(self) -> LearnConfig:
        if self.rounds < 1 or self.attempts < 1 or self.train_goals < 1 or self.dev_goals < 0:
            raise LearnError("rounds, attempts and train goals must be at least 1, dev goals at least 0")
        if not self.families:
            raise LearnError("no families to learn on")
        return self


def learn_dir(settings: Settings) -> Path:
    return settings.home / "learn"


def learn(settings: Settings, config: LearnConfig, directory: Path | None = None, *,
          consolidate_config: ConsolidateConfig | None = None,
          progress: ProgressFn | None = None) -> dict[str, Any]:
    """Run (or resume) the cycle on the data dir of ``settings``: its episodes, its adapters (the
    promoted one is what the agent uses next); logs, measurement data dirs and the report in
    ``directory`` (default ``<home>/learn``). Returns the report (also in ``learn.json``)."""
    config.check()
    say = progress or (lambda _m: None)
    directory = directory or learn_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    home = settings.home
    learner = measuring_settings(settings, home)
    goals = _splits(config)
    report = _load(directory) or {"started": _now(), "config": asdict(config), "home": str(home), "rounds": []}
    if report.get("config", {}).get("families") != config.families:
        raise LearnError(f"{directory} holds a learn run on {report['config']['families']}; resume it with "
                         "those families, or choose another --dir")
    report["config"] = asdict(config)  # more rounds may be asked of a finished run
    rounds: list[dict[str, Any]] = report["rounds"]
    if not rounds:
        rounds.append({"round": 0, "adapter": _current(learner)})
    if "heldout" not in rounds[0]:
        rounds[0]["heldout"] = _measure(learner, directory, 0, goals["heldout"], config, say)
        _save(directory, report)
    for r in range(1, config.rounds + 1):
        if len(rounds) <= r:
            rounds.append({"round": r})
        row = rounds[r]
        if "practice" not in row:
            row["practice"] = _practise(learner, directory, r, goals["train"], config, say)
            _save(directory, report)
        if "consolidate" not in row:
            row["consolidate"] = _consolidate(learner, goals["dev"], config, consolidate_config, say)
            row["adapter"] = _current(learner)
            _save(directory, report)
        if "synthesis" not in row and config.synthesis:
            row["synthesis"] = _synthesise(learner, goals["dev"], config, say)
            _save(directory, report)
        if "heldout" not in row:
            if row["adapter"] == rounds[r - 1]["adapter"] and not (row.get("synthesis") or {}).get("kept"):
                say(f"round {r}: the adapter did not change ({row['adapter'] or 'none'}): held-out as before")
                row["heldout"] = {**rounds[r - 1]["heldout"], "same_as_round": rounds[r - 1].get(
                    "heldout", {}).get("same_as_round", r - 1)}
            else:
                row["heldout"] = _measure(learner, directory, r, goals["heldout"], config, say)
            _save(directory, report)
    report["finished"] = _now()
    report["curve"] = curve(report)
    _save(directory, report)
    report["png"] = str(draw(report, directory / "learn.png"))
    _save(directory, report)
    return report


# ---- the stages ---------------------------------------------------------------------------------


def _splits(config: LearnConfig) -> dict[str, dict[str, list[Goal]]]:
    """split -> family -> goals: all of train (practice walks through it), the first dev and held-out ones."""
    return {"train": {f: load_goals(f, "train") for f in config.families},
            "dev": {f: load_goals(f, "dev")[:config.dev_goals] for f in config.families},
            "heldout": {f: load_goals(f, "heldout")[:config.heldout_goals] for f in config.families}}


def _practise(learner: Settings, directory: Path, r: int, train: dict[str, list[Goal]], config: LearnConfig,
              say: ProgressFn) -> dict[str, Any]:
    """Each family's next train goals, ``attempts`` times each, as episodes of the learning data dir;
    then hindsight labels on every episode. Per family: attempts, successes, goals solved at least once."""
    start = (r - 1) * config.train_goals
    goals = [g for f in config.families for g in _window(train[f], start, config.train_goals)]
    log = directory / "practice.jsonl"
    say(f"round {r}: practice on {len(goals)} train goals x {config.attempts} attempts")
    llm = load_llm(learner)
    runs: list[GoalRun] = []
    try:
        for i in range(config.attempts):
            attempt = learner.model_copy(update={"temperature": 0.0 if i == 0 else config.temperature,
                                                 "seed": config.seed + 1000 * r + i})
            agent = Agent.from_settings(attempt, llm=llm, warn=lambda _m: None)
            runs += evaluate(goals, agent_arm(agent, f"practice-{r}-{i}", concurrency=config.concurrency,
                                              progress=say), log=log)
            agent.close()
    finally:
        _close(llm)
    from stackmind.value.consolidation import label_unlabelled

    labelled = label_unlabelled(learner)
    out: dict[str, Any] = {"goals": len(goals), "attempts": len(runs), "labels": labelled, "families": {}}
    for f in config.families:
        mine = [x for x in runs if x.family == f]
        out["families"][f] = {"attempts": len(mine), "successes": sum(x.success for x in mine),
                              "goals_solved": len({x.goal for x in mine if x.success}),
                              "goals": len({x.goal for x in mine})}
    say(f"round {r}: practice " + ", ".join(f"{f} {v['successes']}/{v['attempts']}"
                                            for f, v in out["families"].items()))
    return out


def _window(goals: list[Goal], start: int, n: int) -> list[Goal]:
    """``n`` goals from ``start``, wrapping around the split (later rounds see earlier goals again)."""
    if not goals:
        return []
    return [goals[(start + k) % len(goals)] for k in range(min(n, len(goals)))]


def _consolidate(learner: Settings, dev: dict[str, list[Goal]], config: LearnConfig,
                 consolidate_config: ConsolidateConfig | None, say: ProgressFn) -> dict[str, Any]:
    cconfig = consolidate_config or ConsolidateConfig()
    hooks = learning_hooks(learner, cconfig)
    for family, goals in dev.items():
        if goals:
            name = f"dev {family} ({len(goals)} goals)"
            hooks.checks[name] = dev_check(learner, goals, config.concurrency)
            hooks.margins[name] = 1.0 / len(goals) + 1e-9  # one dev goal: the noise of so few
    resume = unfinished_run(learner) is not None
    record = consolidate(learner, cconfig, resume=resume, max_minutes=config.train_minutes, hooks=hooks,
                         progress=lambda m: say(f"consolidate: {m}"))
    train = record.get("train") or {}
    gate = record.get("gate") or {}
    log = train.get("log") or []
    return {
        "run": record["run"], "outcome": record["outcome"], "dataset": record.get("dataset"),
        "train": {k: train.get(k) for k in ("steps", "examples", "seconds", "examples_per_hour",
                                            "stopped_by_budget", "init", "rank") if k in train},
        "train_loss": [{"step": e.get("step"), "loss": e.get("loss")} for e in log if "loss" in e],
        "gate": {k: gate.get(k) for k in ("current", "candidate", "passed", "reasons")} if gate else None,
        "value": record.get("value"), "report": record.get("report"),
    }


def _synthesise(learner: Settings, dev: dict[str, list[Goal]], config: LearnConfig,
                say: ProgressFn) -> dict[str, Any]:
    """A synthesis round on the practice episodes (`stackmind.learning.synthesize`): surprising steps
    clustered, a policy written per cluster, each grounded with and without it on tasks it was not
    written from (the cluster's other goals, then its family's dev goals, by the suite's verifiers),
    kept only when it gained. What was written, kept and discarded, with gains and stack tokens."""
    from stackmind.learning.synthesize import Cluster, SynthesisConfig, synthesize_round

    def family_tasks(c: Cluster, exclude: set[str]) -> list[HeldoutTask]:
        families = Counter(ep.meta.get("family") for ep in c.episodes)
        family = families.most_common(1)[0][0] if families else None
        return [goal_task(g) for g in dev.get(family, []) if g.text not in exclude]

    say("synthesis: writing policies from the practice episodes")
    llm = load_llm(learner)
    try:
        result = synthesize_round(learner, llm, config=SynthesisConfig(max_candidates=config.synthesis,
                                                                       seed=config.seed),
                                  extra_tasks=family_tasks, progress=lambda m: say(f"synthesis: {m}")).to_dict()
    finally:
        _close(llm)
    out = {k: result.get(k) for k in ("episodes", "surprises", "written", "kept", "discarded", "dropped", "notes")}
    out["policies"] = [{"name": c.get("name"), "status": c.get("status"),
                        **{k: (c.get("grounding") or {}).get(k) for k in
                           ("success_with", "success_without", "stack_tokens", "roi")},
                        "tasks": (c.get("grounding") or {}).get("n")}
                       for c in result.get("candidates", [])]
    say(f"synthesis: {out['written']} written, {out['kept']} kept")
    return out


def dev_check(learner: Settings, goals: Sequence[Goal], concurrency: int = 4) -> Callable[[LLM], float]:
    """A gate check: success on ``goals`` through the agent's loop on the given model, in a throwaway
    data dir (what the gate measures never becomes training data)."""

    def check(llm: LLM) -> float:
        with tempfile.TemporaryDirectory(prefix="stackmind-gate-") as tmp:
            agent = Agent.from_settings(measuring_settings(learner, Path(tmp)), llm=llm, warn=lambda _m: None)
            try:
                runs = evaluate(goals, agent_arm(agent, "gate", concurrency=concurrency))
            finally:
                agent.close()
        return sum(x.success for x in runs) / len(goals)

    return check


def _measure(learner: Settings, directory: Path, r: int, heldout: dict[str, list[Goal]], config: LearnConfig,
             say: ProgressFn) -> dict[str, Any]:
    """Held-out success per family with the adapter the learner would use now, in its own data dir."""
    goals = [g for f in config.families for g in heldout[f]]
    say(f"round {r}: measuring {len(goals)} held-out goals (adapter: {_current(learner) or 'none'})")
    llm = load_llm(learner)
    adapters = sorted(getattr(llm.backend, "adapters", dict)().values())  # what the measured model runs with
    agent = Agent.from_settings(measuring_settings(learner, directory / "eval" / f"round-{r}"), llm=llm,
                                warn=lambda _m: None)
    t0 = time.perf_counter()
    try:
        runs = evaluate(goals, agent_arm(agent, f"round-{r}", concurrency=config.concurrency, progress=say),
                        log=directory / "heldout.jsonl")
    finally:
        agent.close()
        _close(llm)
    out: dict[str, Any] = {"families": {}, "seconds": round(time.perf_counter() - t0, 1),
                           "adapter_files": adapters}
    for f in config.families:
        mine = [x for x in runs if x.family == f]
        out["families"][f] = {"goals": len(mine), "solved": sum(x.success for x in mine),
                              "success": round(sum(x.success for x in mine) / len(mine), 4) if mine else None}
    say(f"round {r}: held-out " + ", ".join(f"{f} {v['solved']}/{v['goals']}" for f, v in out["families"].items()))
    out["value"] = value_calibration(learner, agent.settings, config.families)
    return out


def value_calibration(learner: Settings, measured: Settings, families: Sequence[str]) -> dict[str, Any]:
    """The learner's current value model on the states of the held-out episodes just measured (never
    trained on: they are in their own data dir), labelled in hindsight: AUC and ECE per family."""
    from stackmind.storage import read_stored_episodes
    from stackmind.value import ValueModel, calibration, current_version, label_episode
    from stackmind.value.learn import TRAINABLE

    version = current_version(learner)
    if version is None:
        return {"skipped": "no value model trained yet"}
    model = ValueModel.load(learner, version)
    episodes, _ = read_stored_episodes(measured)
    out: dict[str, Any] = {"version": version, "families": {}}
    for f in families:
        labels = [lab for ep in episodes if ep.meta.get("family") == f for lab in label_episode(ep)
                  if lab.kind in TRAINABLE]
        if not labels:
            continue
        c = calibration([lab.target for lab in labels], [float(v) for v in model.predict(labels)])
        out["families"][f] = {"states": c.n, "positives": c.positives, "auc": _num(c.auc), "ece": _num(c.ece),
                              "brier": _num(c.brier)}
    return out


def _num(x: float) -> float | None:
    return None if x != x else round(float(x), 4)  # NaN (one class only) -> None


def _current(learner: Settings) -> str | None:
    current = AdapterRegistry.of(learner).current()
    return current.name if current else None


def _close(llm: LLM) -> None:
    getattr(llm.backend, "close", lambda: None)()


# ---- the report -----------------------------------------------------------------------------------


def curve(report: dict[str, Any]) -> dict[str, Any]:
    """Held-out success per family per round, and each round's change from round 0 and from the last."""
    rounds = [r for r in report["rounds"] if "heldout" in r]
    families = report["config"]["families"]
    table = {f: [r["heldout"]["families"][f]["success"] for r in rounds] for f in families}
    return {"rounds": [r["round"] for r in rounds], "success": table,
            "gain_points": {f: [None if v is None or s[0] is None else round(100 * (v - s[0]), 1) for v in s]
                            for f, s in table.items()},
            "adapters": [r.get("adapter") for r in rounds]}


def format_curve(report: dict[str, Any]) -> str:
    c = report.get("curve") or curve(report)
    head = "family".ljust(12) + "".join(f"round {r}".rjust(10) for r in c["rounds"]) + "   change"
    lines = [head]
    for f, s in c["success"].items():
        cells = "".join(("-" if v is None else f"{100 * v:.1f}%").rjust(10) for v in s)
        gain = c["gain_points"][f][-1]
        lines.append(f.ljust(12) + cells + ("" if gain is None else f"   {gain:+.1f} points"))
    lines.append("adapter".ljust(12) + "".join(str(a or "none").rjust(10) for a in c["adapters"]))
    last = next((r for r in reversed(report["rounds"]) if (r.get("heldout") or {}).get("value", {}).get("families")),
                None)
    if last is not None:
        v = last["heldout"]["value"]
        lines.append(f"value model {v['version']} on round {last['round']}'s held-out states: " + ", ".join(
            f"{f} AUC {x['auc'] if x['auc'] is not None else '-'} ECE {x['ece']} ({x['states']})"
            for f, x in v["families"].items()))
    return "\n".join(lines)


def draw(report: dict[str, Any], path: Path) -> Path:
    """learn.png: held-out success per family per round; training loss of each round's LoRA; the
    held-out loss the gate measured (current vs candidate) per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = report.get("curve") or curve(report)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for f, s in c["success"].items():
        axes[0].plot(c["rounds"], [None if v is None else 100 * v for v in s], marker="o", label=f)
    axes[0].set(title="held-out success", xlabel="round", ylabel="%", xticks=c["rounds"])
    axes[0].legend(fontsize=8)
    for r in report["rounds"][1:]:
        losses = (r.get("consolidate") or {}).get("train_loss") or []
        if losses:
            axes[1].plot([e["step"] for e in losses], [e["loss"] for e in losses], label=f"round {r['round']}")
    axes[1].set(title="LoRA training loss", xlabel="step")
    if len(report["rounds"]) > 1:
        axes[1].legend(fontsize=8)
    gates = [(r["round"], (r.get("consolidate") or {}).get("gate") or {}) for r in report["rounds"][1:]]
    xs = [n for n, g in gates if g.get("candidate")]
    for side in ("current", "candidate"):
        axes[2].plot(xs, [g[side].get("loss") for _n, g in gates if g.get("candidate")], marker="o", label=side)
    axes[2].set(title="gate: held-out loss", xlabel="round", xticks=xs)
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _load(directory: Path) -> dict[str, Any] | None:
    path = directory / REPORT
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise LearnError(f"{path}: cannot be read ({e}); move it aside to start over") from e


def _save(directory: Path, report: dict[str, Any]) -> None:
    atomic_write(directory / REPORT, json.dumps(report, indent=2, default=str))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
