"""Self-modification in text: the agent writes, grounds, and keeps or discards its own learning policies.

One round (`synthesize_round`), top to bottom:

1. **Surprises.** Steps whose reward-prediction error was high: from the RPE log
   (``home/value/rpe.jsonl``) joined with their episodes, and, for episodes the log has not seen
   (``--from-episodes``), from the hindsight labeller run on them in memory.
2. **Clusters.** Similar surprises (MiniLM cosine of goal + step, the embedder fast learning uses)
   grouped; a cluster needs a few episodes and successful (hindsight-labelled) trajectories.
3. **A candidate per cluster.** The model reads the failed steps and the steps that fixed them and
   proposes the pieces only it can give: a name, a one-line description, the strategy (the sub-goal
   an invocation pushes) and what it improves. The policy file is assembled in code from those
   pieces and the cluster's evidence (motivating error spans, labelled examples from the successful
   trajectories, grounding trajectories that use the new name, a training policy), then read by the
   real parser and checked against the library. A rejected candidate gets one repair: the located
   problems go back to the model. Still rejected: dropped, and logged. Nothing is half-saved.
4. **Grounding** (`stackmind.learning.grounding`): held-out tasks of the cluster's kind (its
   episodes that were not written from, plus any a task source adds), with and without the
   policy pushed; ROI = reward gained per stack token.
5. **Keep or discard** (`stackmind.policies.review`): kept policies go to the learned dir with
   provenance; discarded ones are logged with their results. `remeasure` re-grounds kept policies
   and retires those whose ROI fell below the threshold.

`nightly(settings)` does a re-measure and a round; consolidation calls it when
``STACKMIND_CONSOLIDATE_SYNTHESIS=1``. docs/synthesis.md describes the loop.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from stackmind.embedder import embed as minilm
from stackmind.learning.grounding import AgentTrial, Grounding, HeldoutTask, Trial, goal_task, ground
from stackmind.policies.fast import Embed
from stackmind.policies.library import BUILTIN_TOOLS, PolicyLibrary, check, default_policy_dirs, load_lenient
from stackmind.policies.parser import FileProblems, Problem, parse_policy
from stackmind.policies.review import PolicyStore, learned_dir
from stackmind.policies.schema import Policy
from stackmind.settings import Settings
from stackmind.tasks.goals import Goal, GoalError, load_goals
from stackmind.trace import Episode
from stackmind.value.hindsight import label_episode
from stackmind.value.labels import Label
from stackmind.value.model import ValueModel, ValueModelError, current_version
from stackmind.value.rpe import load_rpe, rpe_records

ProgressFn = Callable[[str], None]
# A source of extra held-out tasks for a cluster (e.g. fresh Game of 24 puzzles); it must not
# return the goals in ``exclude`` (those the candidate was written from).
TaskSource = Callable[["Cluster", set[str]], list[HeldoutTask]]


class SynthesisConfig(BaseSettings):
    """What a synthesis round may do. ``STACKMIND_SYNTHESIS_*`` environment variables or keywords."""

    model_config = SettingsConfigDict(env_prefix="STACKMIND_SYNTHESIS_", env_file=".env", extra="ignore")

    learned_dir: Path | None = Field(None, description="Where kept policies go (default home/policies/learned).")
    min_abs_rpe: float = Field(0.4, ge=0, description="A step is a surprise when |RPE| is at least this.")
    cluster_similarity: float = Field(0.6, ge=-1, le=1, description="Least cosine to join a cluster.")
    min_episodes: int = Field(3, ge=1, description="Episodes a cluster needs before a policy is written.")
    min_successes: int = Field(2, ge=1, description="Successful trajectories a cluster needs (examples).")
    examples: int = Field(3, ge=1, le=8, description="Labelled examples written into a candidate (pushed).")
    max_candidates: int = Field(4, ge=1, description="Candidates written per round (largest clusters first).")
    max_heldout: int = Field(8, ge=1, description="Held-out tasks a candidate is tried on.")
    roi_threshold: float = Field(2e-4, ge=0, description="Least reward gain per stack token to keep (2e-4 = 0.2 per 1k).")
    trigger: Literal["similarity", "prediction_error", "reward_prediction_error", "always"] = "similarity"
    slow_weight: float = Field(1.0, ge=0, description="training.slow.weight of written policies (0: fast only).")
    require_review: bool = Field(False, description="Passing candidates wait for `policy review --accept`.")
    trial_steps: int = Field(4, ge=1, description="Step budget of one trial run (both arms).")
    write_max_tokens: int = Field(96, ge=16, description="Completion budget of the model's policy pieces.")
    seed: int = 0


# ---- 1. surprises -----------------------------------------------------------------------------

@dataclass
class Surprise:
    """A step whose outcome the value prediction got wrong by at least ``min_abs_rpe``."""

    episode: Episode
    index: int | None  # the step in ``episode.steps`` (None: off the chosen path)
    thought: str
    predicted: float
    achieved: float
    source: str  # rpe-log | hindsight

    @property
    def rpe(self) -> float:
        return self.achieved - self.predicted

    @property
    def text(self) -> str:
        return f"{self.episode.goal}\n{self.thought}"


def load_episodes(dirs: Iterable[Path], notes: list[str] | None = None) -> list[Episode]:
    """Every readable episode under dirs (a file that does not parse is noted and skipped)."""
    from stackmind.policies.parser import load_trace

    out: dict[str, Episode] = {}
    for d in dirs:
        d = Path(d)
        files = [d] if d.is_file() else sorted(d.rglob("*.trace.yaml")) if d.is_dir() else []
        for f in files:
            try:
                ep = load_trace(f)
            except FileProblems as e:
                if notes is not None:
                    notes.append(f"skipped {f}: {e.problems[0]}")
                continue
            out.setdefault(ep.id, ep)
    return list(out.values())


def surprises(settings: Settings, episodes: Sequence[Episode], min_abs_rpe: float,
              skip: set[str] = frozenset()) -> list[Surprise]:  # type: ignore[assignment]
    """High-|RPE| steps of ``episodes``: from the RPE log where it has them, else from hindsight (the
    value each step was given when it ran; for a step recorded without one, the current value
    model's prediction, when there is a value model)."""
    by_id = {ep.id: ep for ep in episodes if ep.id not in skip}
    logged: dict[str, list[tuple[str, float, float, str]]] = {}
    for r in load_rpe(settings):
        if r.episode in by_id:
            logged.setdefault(r.episode, []).append((r.thought, r.predicted, r.achieved, "rpe-log"))
    unlogged = {eid: label_episode(ep) for eid, ep in by_id.items() if eid not in logged}
    _predict_missing(settings, [lab for labels in unlogged.values() for lab in labels])
    out: list[Surprise] = []
    for eid, ep in by_id.items():
        rows = logged.get(eid)
        if rows is None:
            rows = [(r.thought, r.predicted, r.achieved, "hindsight") for r in rpe_records(unlogged[eid])]
        seen: set[str] = set()
        for thought, predicted, achieved, source in rows:
            if abs(achieved - predicted) < min_abs_rpe or thought in seen:
                continue
            seen.add(thought)
            index = next((i for i, s in enumerate(ep.steps) if s.thought.strip() == thought.strip()), None)
            out.append(Surprise(ep, index, thought, predicted, achieved, source))
    return out


def _predict_missing(settings: Settings, labels: Sequence[Label]) -> None:
    """Give return-to-go labels whose step carried no predicted value the current value model's."""
    missing = [lab for lab in labels if lab.predicted is None and lab.kind == "return_to_go"]
    if not missing:
        return
    version = current_version(settings)
    if version is None:
        return
    try:
        model = ValueModel.load(settings, version)
    except ValueModelError:
        return
    for lab, v in zip(missing, model.predict(missing), strict=True):
        lab.predicted = float(v)


# ---- 2. clusters ------------------------------------------------------------------------------

@dataclass
class Cluster:
    """Similar surprises, and the episodes they came from."""

    members: list[Surprise]
    centroid: np.ndarray = field(repr=False)

    @property
    def episodes(self) -> list[Episode]:
        seen: dict[str, Episode] = {}
        for s in self.members:
            seen.setdefault(s.episode.id, s.episode)
        return sorted(seen.values(), key=lambda e: e.id)

    def successes(self) -> list[Episode]:
        return [e for e in self.episodes if (e.reward or 0.0) >= 1.0 and e.answer is not None]


def cluster(items: Sequence[Surprise], threshold: float, embed: Embed | None = None) -> list[Cluster]:
    """Greedy clustering by cosine to each cluster's centroid (largest |RPE| first); deterministic."""
    if not items:
        return []
    embed = embed or minilm
    order = sorted(range(len(items)), key=lambda i: (-abs(items[i].rpe), items[i].episode.id, items[i].thought))
    vecs = embed([items[i].text for i in order])
    clusters: list[Cluster] = []
    sums: list[np.ndarray] = []
    for i, v in zip(order, vecs, strict=True):
        best, best_sim = None, threshold
        for k, c in enumerate(clusters):
            sim = float(c.centroid @ v)
            if sim >= best_sim:
                best, best_sim = k, sim
        if best is None:
            clusters.append(Cluster([items[i]], v.copy()))
            sums.append(v.copy())
        else:
            clusters[best].members.append(items[i])
            sums[best] += v
            clusters[best].centroid = sums[best] / (np.linalg.norm(sums[best]) or 1.0)
    return sorted(clusters, key=lambda c: (-len(c.episodes), -sum(abs(s.rpe) for s in c.members)))


# ---- 3. the evidence of a cluster, and the candidate written from it ---------------------------

@dataclass
class Evidence:
    """What a candidate is written from, and what it is tried on."""

    cluster: Cluster
    written_from: list[Episode]  # successful trajectories that become its examples
    errors: list[dict[str, str]]  # motivating error spans
    fixes: list[tuple[Episode, list[str]]]  # each written-from episode and the steps that fixed it
    heldout: list[HeldoutTask]
    heldout_fixes: list[tuple[Episode, list[str]]]  # successful held-out episodes (held-out examples)


def _fix_steps(ep: Episode, surprises_of: list[Surprise], min_abs_rpe: float) -> tuple[list[str], list[int]]:
    """The steps from the first positive surprise to the end (the fix), and the indices before it."""
    positive = [s.index for s in surprises_of if s.index is not None and s.rpe >= min_abs_rpe]
    start = min(positive) if positive else 0
    # A step that is just the final answer restated adds nothing to the response.
    fix: list[str] = []
    for s in ep.steps[start:]:
        if s.thought.strip():
            fix.append(s.thought.strip())
        if s.action and s.observation is not None:  # what the action showed: the example's next step reads it
            fix.append(f"Observation: {s.observation.strip()}")
    return fix, list(range(start))


def _error_span(ep: Episode, idx: int) -> dict[str, str]:
    step = ep.steps[idx]
    lines = [f"[goal] {ep.goal}", f"[thought] {step.thought.strip()}"]
    if step.action:
        lines.append(f"[action] {step.action.strip()}")
    if step.observation:
        lines.append(f"[observation] {step.observation.strip()}")
    what = (step.observation or "").strip() or "the step did not lead to the goal"
    pred = f" (predicted value {step.value:.2f})" if step.value is not None else ""
    return {"state": "\n".join(lines) + "\n", "error": f"{what}{pred}"}


_G24_GOAL = re.compile(r"^Use [\d ]+ once each with \+ - \* / to make 24\.$")


def task_of(ep: Episode) -> HeldoutTask | None:
    """A held-out task from an episode: the exact verifier where the kind has one (Game of 24, a goal
    of the suite, whatever the episode's outcome), else the answer of a successful episode with a
    numeric or text matcher."""
    if _G24_GOAL.match(ep.goal.strip()):
        return HeldoutTask(ep.goal.strip(), ep.answer, "game24", ep.id)
    goal = suite_goal(ep)
    if goal is not None:
        return goal_task(goal)
    if (ep.reward or 0.0) >= 1.0 and ep.answer is not None:
        answer = str(ep.answer).strip()
        numeric = re.fullmatch(r"-?\d+(?:\.\d+)?(?:/\d+)?", answer.replace(",", "")) is not None
        return HeldoutTask(ep.goal.strip(), answer, "numeric" if numeric else "contains", ep.id)
    return None


def suite_goal(ep: Episode) -> Goal | None:
    """The goal of the suite an episode ran (its ``meta.goal_id``, as `bench goals` and `learn` record)."""
    goal_id, family = ep.meta.get("goal_id"), ep.meta.get("family")
    if not isinstance(goal_id, str) or not isinstance(family, str):
        return None
    try:
        return _suite(family).get(goal_id)
    except GoalError:
        return None


@functools.cache
def _suite(family: str) -> dict[str, Goal]:
    return {g.id: g for g in load_goals(family)}


def evidence(c: Cluster, config: SynthesisConfig, extra_tasks: TaskSource | None = None) -> Evidence | str:
    """The cluster split into what is written from and what is held out; or why it cannot be used."""
    if len(c.episodes) < config.min_episodes:
        return f"{len(c.episodes)} episode(s), fewer than {config.min_episodes}"
    succ = c.successes()
    if len(succ) < config.min_successes:
        return f"{len(succ)} successful trajectory(ies), fewer than {config.min_successes}"
    by_ep: dict[str, list[Surprise]] = {}
    for s in c.members:
        by_ep.setdefault(s.episode.id, []).append(s)
    written = succ[: config.examples]
    written_ids = {ep.id for ep in written}
    fixes, errors = [], []
    for ep in written:
        fix, before = _fix_steps(ep, by_ep[ep.id], config.min_abs_rpe)
        fixes.append((ep, fix))
        errors += [_error_span(ep, i) for i in before]
    for s in c.members:  # steps the prediction over-rated, in any episode of the cluster
        if s.rpe <= -config.min_abs_rpe and s.index is not None and s.episode.id not in written_ids:
            errors.append(_error_span(s.episode, s.index))
    written_goals = {ep.goal.strip() for ep in written}
    heldout, heldout_fixes = [], []
    for ep in c.episodes:
        if ep.id in written_ids or ep.goal.strip() in written_goals:
            continue
        task = task_of(ep)
        if task is not None and all(t.goal != task.goal for t in heldout):
            heldout.append(task)
            if (ep.reward or 0.0) >= 1.0 and ep.answer is not None:
                heldout_fixes.append((ep, _fix_steps(ep, by_ep[ep.id], config.min_abs_rpe)[0]))
    if extra_tasks is not None:
        exclude = written_goals | {t.goal for t in heldout}
        heldout += [t for t in extra_tasks(c, exclude) if t.goal not in exclude]
    heldout = heldout[: config.max_heldout]
    if not heldout:
        return "no held-out task of its kind to ground it on (every episode was written from)"
    seen_err: set[str] = set()
    errors = [e for e in errors if not (e["state"] in seen_err or seen_err.add(e["state"]))][:3]  # type: ignore[func-returns-value]
    return Evidence(c, written, errors, fixes, heldout, heldout_fixes)


# ---- the model's pieces -------------------------------------------------------------------------

PIECES = ("name", "description", "target", "strategy")

# The model is asked short, natural questions (a 0.5B model answers those well and writes poor YAML):
# what the fixing steps did (the strategy; also the description), what kind of problem it was (the
# target), and then a name for that strategy. The file is assembled in code around the answers.
ADVICE_PROMPT = ("{cases}\n\nWhat trick do the steps that fixed them use? Answer with one sentence of advice that "
                 "starts with a verb and works for any problem like these.")
TARGET_PROMPT = "{cases}\n\nWhat kind of problem are these? Answer with a short noun phrase only."
NAME_PROMPT = ("Advice: {advice}\nName this advice as a Python function name (lowercase words joined by _). "
               "Reply with the name only.")
REPAIR_PROMPT = "{question}\n\nYour answer {answer!r} was rejected:\n{problems}\nAnswer again, fixing every problem."


def cases_text(ev: Evidence) -> str:
    """The failures and the fixes the model reads, three lines per written-from episode."""
    lines = []
    for ep, fix in ev.fixes:
        lines.append(f"Problem: {_one_line(ep.goal)}")
        failed = next((e["state"].split("\n")[1].removeprefix("[thought] ") for e in ev.errors
                       if e["state"].startswith(f"[goal] {ep.goal}\n")), None)
        if failed:
            lines.append(f"Wrong attempt: {_one_line(failed)}")
        lines.append(f"Step that fixed it: {_one_line(' '.join(fix))}")
    return "\n".join(lines)


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def clean_sentence(text: str) -> str:
    """The first line of a reply, without quotes, list marks or a leading "Answer:"."""
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^\s*(?:[-*]\s+|\d+[.)]\s+|(?:answer|advice|name)\s*:\s*)", "", line, flags=re.IGNORECASE)
    return line.strip().strip("`\"'").strip()


def read_name(text: str) -> str:
    """The model's name as it wrote it (only code fences, quotes, @ and a trailing () removed): the
    parser, not this function, decides whether it is a valid name."""
    name = clean_sentence(text).lstrip("@")
    return re.sub(r"\(\)?$", "", name).strip()


# ---- assembling the file ----------------------------------------------------------------------

class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, s: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)


_Dumper.add_representer(str, _str)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _match_for(task: HeldoutTask | None) -> dict[str, Any] | None:
    """How a policy example's answer is matched: the task's matcher (a suite goal's numeric check stays
    numeric; its other checks match the exact answer)."""
    if task is None or task.check == "game24":
        return None
    if task.check == "goal":
        return {"kind": "numeric" if (task.spec or {}).get("kind") == "numeric" else "exact"}
    return {"kind": task.check}


def assemble(pieces: dict[str, str], ev: Evidence, config: SynthesisConfig, header: Sequence[str] = ()) -> str:
    """The policy file: the model's pieces, the cluster's evidence, a training policy."""
    name = pieces["name"]
    strategy = _one_line(pieces["strategy"]).replace("{", "{{").replace("}", "}}")
    examples: list[dict[str, Any]] = []
    for split, fixes in (("train", ev.fixes), ("heldout", ev.heldout_fixes)):
        for ep, fix in fixes:
            response = "\n".join(fix)
            if "final answer" not in response.lower():
                response += f"\nFinal answer: {ep.answer}"
            ex: dict[str, Any] = {"goal": ep.goal.strip(), "response": response + "\n", "answer": str(ep.answer)}
            match = _match_for(task_of(ep))
            if match:
                ex["match"] = match
            if split == "heldout":
                ex["split"] = "heldout"
            examples.append(ex)
    trajectories = []
    for ep, fix in ev.fixes[:2]:
        steps: list[dict[str, Any]] = []
        fixed_at = ep.steps.index(next(s for s in ep.steps if s.thought.strip() == fix[0])) if fix else 0
        for s in ep.steps[:fixed_at]:
            step: dict[str, Any] = {"thought": _one_line(s.thought), "reward": 0.0}
            if s.observation:
                step["observation"] = _one_line(s.observation)
            steps.append(step)
        steps.append({"thought": "Use the strategy that fixed this kind of failure before.",
                      "action": f'@{name}(goal="{_one_line(ep.goal).replace(chr(34), chr(39))}")',
                      "observation": _one_line(" ".join(fix)), "reward": float(ep.reward or 0.0)})
        trajectories.append({"goal": ep.goal.strip(), "steps": steps, "answer": str(ep.answer),
                             "reward": float(ep.reward or 0.0)})
    fast: dict[str, Any] = {"trigger": config.trigger, "examples": min(config.examples, len(ev.fixes)),
                            "trajectories": 0}
    training: dict[str, Any] = {"fast": fast}
    if config.slow_weight > 0:
        training["slow"] = {"weight": config.slow_weight}
    doc = {
        "name": name,
        "description": _one_line(pieces["description"]),
        "parameters": [{"name": "goal", "description": "the problem to solve"}],
        "subgoal": f"{strategy} Goal: {{goal}}" if strategy else "{goal}",
        "motivation": [{"state": e["state"], "error": e["error"], "aim": "improve",
                        "target": _one_line(pieces["target"])} for e in ev.errors],
        "examples": examples,
        "trajectories": trajectories,
        "training": training,
    }
    lines = ["# stackmind policy v1: see docs/policies.md",
             "# Written by the agent (stackmind policy synthesize, docs/synthesis.md).", *[f"# {h}" for h in header]]
    return "\n".join(lines) + "\n" + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def validate(text: str, known: PolicyLibrary, taken: set[str] = frozenset()) -> tuple[Policy | None, list[Problem]]:  # type: ignore[assignment]
    """Read a candidate with the real parser and checker, against the library; every problem located.

    ``taken``: names other candidates of this round already hold."""
    with tempfile.TemporaryDirectory(prefix="stackmind-candidate-") as tmp:
        path = Path(tmp) / "candidate.policy.yaml"
        path.write_text(text, encoding="utf-8")
        report = check([path], tools=known.tools, known=list(known))
        problems = [Problem("candidate.policy.yaml", p.line, p.column, p.message, p.severity)
                    for p in report.errors]
        policy = report.policies[0] if report.policies else None
    if policy is not None and policy.name in taken:
        line, col = policy.where("name")[1:]
        problems.append(Problem("candidate.policy.yaml", line, col,
                                f"another new policy of this round is already named @{policy.name}: choose another name"))
    if policy is not None and not problems:
        policy = parse_policy(text, "candidate.policy.yaml")  # detached from the temp file
    return (policy if not problems else None), problems


# ---- 4-5. a round -------------------------------------------------------------------------------

@dataclass
class Candidate:
    name: str
    version: int
    status: str  # kept | pending | discarded | dropped
    file: str | None
    grounding: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)
    repaired: bool = False
    pieces: dict[str, str] = field(default_factory=dict)
    episodes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RoundReport:
    round: str
    dry_run: bool
    episodes: int = 0
    surprises: int = 0
    clusters: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    remeasured: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.candidates)

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "dry_run": self.dry_run, "episodes": self.episodes,
                "surprises": self.surprises, "clusters": self.clusters,
                "written": sum(c.status != "dropped" for c in self.candidates),
                "kept": self.count("kept"), "pending": self.count("pending"), "discarded": self.count("discarded"),
                "dropped": self.count("dropped"), "candidates": [c.to_dict() for c in self.candidates],
                "remeasured": self.remeasured, "notes": self.notes}


def model_versions(settings: Settings, llm: Any) -> dict[str, Any]:
    """The model and value-model versions a decision was made with (provenance)."""
    from stackmind.consolidate.registry import AdapterRegistry
    from stackmind.value.model import current_version

    try:
        adapter = AdapterRegistry.of(settings).current()
    except Exception:  # an unreadable registry must not stop a round
        adapter = None
    return {"model": getattr(llm, "name", str(llm)), "adapter": adapter.name if adapter else None,
            "value_model": current_version(settings)}


def make_trial(settings: Settings, llm: Any, config: SynthesisConfig) -> Trial:
    """Candidates are tried by the agent's own loop, with and without them pushed."""
    return AgentTrial(settings, llm, max_steps=config.trial_steps)


def synthesize_round(
    settings: Settings,
    llm: Any,
    *,
    config: SynthesisConfig | None = None,
    episode_dirs: Sequence[Path] | None = None,
    library: PolicyLibrary | None = None,
    extra_tasks: TaskSource | None = None,
    trial: Trial | None = None,
    embed: Embed | None = None,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
) -> RoundReport:
    """One synthesis round (module docstring). ``dry_run`` writes candidates to no file and keeps
    nothing: it reports the clusters and the candidates the model wrote, validated, not grounded."""
    config = config or SynthesisConfig()
    say = progress or (lambda _m: None)
    store = PolicyStore(settings, config.learned_dir)
    report = RoundReport(dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S"), dry_run)
    if library is None:
        library, problems = load_lenient(default_policy_dirs(settings.home))
        report.notes += [f"library: {p}" for p in problems if p.severity == "error"]
    learned_names = set(store.active())
    known = PolicyLibrary([p for p in library if p.name not in learned_names], tools=library.tools or BUILTIN_TOOLS)

    # 1. surprises
    dirs = list(episode_dirs) if episode_dirs else [settings.episodes_dir]
    episodes = load_episodes(dirs, report.notes)
    report.episodes = len(episodes)
    items = surprises(settings, episodes, config.min_abs_rpe, skip=store.used_episodes())
    report.surprises = len(items)
    say(f"{len(episodes)} episodes, {len(items)} surprising steps (|RPE| >= {config.min_abs_rpe})")

    # 2. clusters, and what each can be written from
    usable: list[Evidence] = []
    for c in cluster(items, config.cluster_similarity, embed):
        ev = evidence(c, config, extra_tasks)
        info = {"size": len(c.members), "episodes": len(c.episodes), "example_goal": c.members[0].episode.goal}
        if isinstance(ev, str):
            info["skipped"] = ev
        else:
            info.update(written_from=len(ev.written_from), heldout=len(ev.heldout))
            if len(usable) < config.max_candidates:
                usable.append(ev)
            else:
                info["skipped"] = f"more than {config.max_candidates} candidates this round"
        report.clusters.append(info)
    if not usable:
        report.notes.append("no cluster of surprises with enough episodes and successes: nothing to write")
        return report

    # 3. the model writes the pieces (batched calls), the code assembles, the parser judges
    say(f"writing {len(usable)} candidate(s)")
    drafts = write_candidates(llm, usable, known, config)
    settle(settings, drafts, report, llm=llm, config=config, trial=trial, store=store, progress=say)
    return report


def settle(settings: Settings, drafts: Sequence[dict[str, Any]], report: RoundReport, *, llm: Any,
           config: SynthesisConfig, trial: Trial | None = None, store: PolicyStore | None = None,
           progress: ProgressFn | None = None) -> RoundReport:
    """Steps 4-5 of a round: a dropped draft is logged, a valid one grounded on its held-out tasks
    and kept or discarded (a dry run only reports). Files are written atomically, provenance first."""
    say = progress or (lambda _m: None)
    store = store or PolicyStore(settings, config.learned_dir)
    dry_run = report.dry_run
    versions: dict[str, Any] | None = None
    for d in drafts:
        ev: Evidence = d["ev"]
        eps = [e.id for e in ev.cluster.episodes]
        name = d["policy"].name if d["policy"] is not None else (d["pieces"]["name"] or "unnamed")
        if d["policy"] is None:
            cand = Candidate(name, 0, "dropped", None, None, [str(p) for p in d["problems"]], True, d["pieces"], eps)
            report.candidates.append(cand)
            if not dry_run:
                store.log("dropped", name, 0, problems=cand.problems, pieces=d["pieces"], episodes=eps,
                          round=report.round)
            continue
        policy: Policy = d["policy"]
        if dry_run:
            report.candidates.append(Candidate(name, 0, "written", None, None, [], d["repaired"], d["pieces"], eps))
            continue
        if versions is None:  # the model is only asked once something is to be grounded
            versions = model_versions(settings, llm)
            trial = trial or make_trial(settings, llm, config)
        version = store.next_version(name)
        provenance = {
            "name": name, "version": version, "round": report.round,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "written_from": [e.id for e in ev.written_from], "episodes": eps,
            "heldout_tasks": [t.to_dict() for t in ev.heldout], **versions,
            "pieces": d["pieces"], "repaired": d["repaired"],
            "config": {"roi_threshold": config.roi_threshold, "min_abs_rpe": config.min_abs_rpe,
                       "trial": "agent", "trial_steps": config.trial_steps, "seed": config.seed},
        }
        header = [f"version {version}, round {report.round}; written from episodes "
                  f"{', '.join(provenance['written_from'])}",
                  f"model {versions['model']}, adapter {versions['adapter'] or 'none'}, "
                  f"value model {versions['value_model'] or 'none'}; provenance: {name}.v{version}.provenance.json"]
        text = assemble(d["pieces"], ev, config, header)
        say(f"grounding @{name} on {len(ev.heldout)} held-out task(s)")
        assert trial is not None
        result = ground(policy, ev.heldout, trial, roi_threshold=config.roi_threshold)
        provenance["grounding"] = result.to_dict()
        status = ("pending" if config.require_review else "kept") if result.keep else "discarded"
        cand_path = store.save_candidate(name, version, text, {"provenance": provenance,
                                                                "grounding": result.to_dict(), "status": status})
        summary = {"grounding": result.to_dict(), "episodes": eps, "description": policy.description,
                   "round": report.round, "candidate": str(cand_path), "reason": result.verdict()}
        if status == "kept":
            path = store.keep(name, version, provenance, **summary)
        else:
            store.log(status, name, version, **summary)
            path = cand_path
        say(f"@{name} v{version}: {status} ({result.verdict()})")
        report.candidates.append(Candidate(name, version, status, str(path), result.to_dict(), [], d["repaired"],
                                           d["pieces"], eps))
    return report


def _generate(llm: Any, prompts: Sequence[list[dict[str, str]]], config: SynthesisConfig,
              max_tokens: int | None = None) -> list[str]:
    if not prompts:
        return []
    gen = llm.generate(list(prompts), max_tokens=max_tokens or config.write_max_tokens, temperature=0.0,
                       seed=config.seed, stop=["\n"])
    return [t[0] for t in gen.texts]


def write_candidates(llm: Any, usable: Sequence[Evidence], known: PolicyLibrary,
                     config: SynthesisConfig) -> list[dict[str, Any]]:
    """The model's pieces for each cluster (three batched calls, one more for repairs), each
    assembled into a policy file and read by the parser; a draft whose ``policy`` is None was
    rejected twice and is dropped."""
    cases = [cases_text(ev) for ev in usable]
    first = _generate(llm, [_user(ADVICE_PROMPT.format(cases=c)) for c in cases]
                      + [_user(TARGET_PROMPT.format(cases=c)) for c in cases], config)
    advice, targets = first[: len(cases)], first[len(cases):]
    names = _generate(llm, [_user(name_question(a)) for a in advice], config, max_tokens=24)
    drafts = draft_candidates(usable, advice, targets, names, known, config)
    asks = repair_requests(drafts)
    return apply_repairs(drafts, asks, _generate(llm, [m for _, _, m in asks], config), known, config)


def name_question(advice: str) -> str:
    return NAME_PROMPT.format(advice=clean_sentence(advice))


def draft_candidates(usable: Sequence[Evidence], advice: Sequence[str], targets: Sequence[str],
                     names: Sequence[str], known: PolicyLibrary, config: SynthesisConfig) -> list[dict[str, Any]]:
    """Each cluster's policy, assembled from the model's raw replies (advice, target, name) and
    judged by the parser: ``policy`` is None, with located ``problems``, when it was rejected."""
    drafts: list[dict[str, Any]] = []
    taken: set[str] = set()
    for ev, a, t, n in zip(usable, advice, targets, names, strict=True):
        pieces = {"name": read_name(n), "description": clean_sentence(a), "target": clean_sentence(t),
                  "strategy": clean_sentence(a)}
        policy, problems = validate(assemble(pieces, ev, config), known, taken)
        if policy is not None:
            taken.add(policy.name)
        drafts.append({"ev": ev, "pieces": pieces, "policy": policy, "problems": problems, "repaired": False,
                       "questions": {"name": name_question(a), "description": ADVICE_PROMPT.format(cases=cases_text(ev))}})
    return drafts


def repair_requests(drafts: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], str, list[dict[str, str]]]]:
    """One repair per rejected piece: the located problems go back with the question whose answer
    they are about, as (draft, piece, messages)."""
    asks: list[tuple[dict[str, Any], str, list[dict[str, str]]]] = []
    for d in drafts:
        if d["policy"] is not None:
            continue
        for piece in ("name", "description"):
            mine = [str(p) for p in d["problems"] if re.search(rf"\b{piece}\b", p.message)]
            if piece == "name" and not any(re.search(r"\bdescription\b", p.message) for p in d["problems"]):
                mine = mine or [str(p) for p in d["problems"]]  # problems elsewhere: a new name is the lever
            if mine:
                asks.append((d, piece, _user(REPAIR_PROMPT.format(question=d["questions"][piece],
                                                                   answer=d["pieces"][piece], problems="\n".join(mine)))))
    return asks


def apply_repairs(drafts: list[dict[str, Any]], asks: Sequence[tuple[dict[str, Any], str, Any]],
                  replies: Sequence[str], known: PolicyLibrary, config: SynthesisConfig) -> list[dict[str, Any]]:
    """The model's repaired pieces, judged again; a name still invalid is rewritten mechanically
    (`snake_name`) as the last repair. What is still rejected keeps ``policy`` None: dropped."""
    for (d, piece, _), text in zip(asks, replies, strict=True):
        d["pieces"] = {**d["pieces"], piece: read_name(text) if piece == "name" else clean_sentence(text)}
        if piece == "description":
            d["pieces"]["strategy"] = d["pieces"]["description"]
        d["repaired"] = True
    taken = {d["policy"].name for d in drafts if d["policy"] is not None}
    for d in drafts:
        if d["repaired"]:
            policy, problems = validate(assemble(d["pieces"], d["ev"], config), known, taken)
            fixed = snake_name(d["pieces"]["name"])
            if policy is None and fixed != d["pieces"]["name"] and any(re.search(r"\bname\b", p.message)
                                                                        for p in problems):
                d["pieces"] = {**d["pieces"], "name": fixed}
                policy, problems = validate(assemble(d["pieces"], d["ev"], config), known, taken)
            if policy is not None:
                taken.add(policy.name)
            d.update(policy=policy, problems=problems if policy is None else d["problems"])
    return drafts


def snake_name(name: str) -> str:
    """A name made valid by rewriting: "fix February_2400" -> "fix_february_2400"."""
    out = re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")
    return f"p_{out}" if out[:1].isdigit() else out


# ---- re-measuring what was kept ------------------------------------------------------------------

def remeasure(settings: Settings, llm: Any, *, config: SynthesisConfig | None = None, trial: Trial | None = None,
              progress: ProgressFn | None = None) -> list[dict[str, Any]]:
    """Ground every kept policy again on its held-out tasks (with today's model); retire those whose
    ROI fell below the threshold or that no longer gain."""
    config = config or SynthesisConfig()
    store = PolicyStore(settings, config.learned_dir)
    trial = trial or make_trial(settings, llm, config)
    out = []
    for name, path in store.active().items():
        prov = store.provenance(name)
        tasks = [HeldoutTask.from_dict(t) for t in prov.get("heldout_tasks", [])]
        version = int(prov.get("version", 0))
        try:
            policy = parse_policy(path.read_text(encoding="utf-8"), str(path))
        except FileProblems as e:
            store.retire(name, f"no longer parses: {e.problems[0]}")
            out.append({"name": name, "version": version, "retired": True, "reason": "no longer parses"})
            continue
        if progress:
            progress(f"re-measuring @{name} on {len(tasks)} held-out task(s)")
        result: Grounding = ground(policy, tasks, trial, roi_threshold=config.roi_threshold)
        row = {"name": name, "version": version, "grounding": result.to_dict(), **model_versions(settings, llm)}
        if result.keep:
            store.log("remeasured", name, version, **row)
            row["retired"] = False
        else:
            store.retire(name, f"re-measured: {result.verdict()}", **row)
            row["retired"] = True
        out.append(row)
    return out


def nightly(settings: Settings, *, config: SynthesisConfig | None = None, llm: Any = None,
            progress: ProgressFn | None = None) -> dict[str, Any]:
    """What consolidation runs at night: re-measure kept policies, then a synthesis round."""
    config = config or SynthesisConfig()
    if llm is None:
        from stackmind.llm import load_llm

        llm = load_llm(settings)
    remeasured = remeasure(settings, llm, config=config, progress=progress)
    report = synthesize_round(settings, llm, config=config, progress=progress)
    report.remeasured = remeasured
    return report.to_dict()


def learned_policy_dir(settings: Settings, config: SynthesisConfig | None = None) -> Path:
    return learned_dir(settings.home, (config or SynthesisConfig()).learned_dir)
