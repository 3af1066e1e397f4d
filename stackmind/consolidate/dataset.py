"""The consolidation dataset: what the agent lived and was taught, as the step format's training pairs.

Sources, each a plain function so a newcomer can add one:

- successful trajectories: episodes (``settings.episodes_dir``) and human-guided traces (``traces/``)
  with a reward of at least ``min_reward``;
- hindsight labels and conclusions, from the hindsight labeller's hook (`hooks.Hooks.examples`);
- the ``slow`` parts of learning policies (their train examples and rewarded trajectories, repeated
  by weight); a policy's ``heldout`` examples go to the held-out split;
- replay: a sample of examples trained in earlier runs (``replay_ratio`` per new example), so old
  skills are mixed back in.

Every example is ONE step: exactly the messages the agent was shown for it (`StepFormat.messages`,
the rendered stack as the agent saw it, or replayed frame by frame for a hand-written trace) and the
reply it should have given (`StepFormat.completion`): the weights are trained on the prompts the
agent uses. The trainer puts the loss on the completion only. Examples are deduplicated by content;
the held-out split is chosen by a hash of the goal, so it is the same in every run and a goal's steps
are never on both sides.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stackmind.consolidate.config import ConsolidateConfig
from stackmind.llm.base import Message
from stackmind.settings import Settings
from stackmind.stepformat import Action, FormatError, StepFormat
from stackmind.storage import read_stored_episodes
from stackmind.tools import default_tools
from stackmind.tools.invocation import find_invocations
from stackmind.trace import MAX_WEIGHT, Episode, Step, TraceError, load_episodes

_GOAL = "Current goal: "


@dataclass
class Example:
    """One chat example. ``key`` identifies its content; ``prompt_key`` decides its split."""

    messages: list[Message]
    source: str  # episode | guided | hindsight | policy | replay
    origin: str = ""  # where it came from: an episode id, a policy name, a file
    weight: float = 1.0
    heldout: bool = False  # forced into the held-out split (a policy's heldout example)

    @property
    def key(self) -> str:
        return _digest(json.dumps(self.messages, sort_keys=True, ensure_ascii=False))

    @property
    def prompt_key(self) -> str:
        """The goal the step served: the one the prompt restates last (worked examples come before it)."""
        users = [m["content"] for m in self.prompt if m["role"] == "user"]
        stated = [u.rsplit(_GOAL, 1)[-1] for u in users if _GOAL in u]
        goal = stated[-1] if stated else (users[0] if users else "")
        return _digest(" ".join(goal.lower().split()))

    @property
    def prompt(self) -> list[Message]:
        """The messages before the last assistant turn (what the model is asked)."""
        last = max(i for i, m in enumerate(self.messages) if m["role"] == "assistant")
        return self.messages[:last]

    @property
    def target(self) -> str:
        """The last assistant turn (what the model should answer)."""
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "assistant")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Example:
        return cls(messages=d["messages"], source=d.get("source", "replay"), origin=d.get("origin", ""),
                   weight=float(d.get("weight", 1.0)), heldout=bool(d.get("heldout", False)))


@dataclass
class Dataset:
    """The split a run trains and evaluates on, with counts a person reads in the plan."""

    train: list[Example] = field(default_factory=list)
    heldout: list[Example] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def training_rows(self) -> list[dict[str, Any]]:
        """Rows for trl in its prompt-completion form (the loss on the completion only); an example of
        weight w appears about w times."""
        rows: list[dict[str, Any]] = []
        for ex in self.train:
            row = {"prompt": ex.prompt, "completion": [{"role": "assistant", "content": ex.target}]}
            rows.extend(row for _ in range(_copies(ex.weight, ex.key)))
        return rows

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, items in (("train", self.train), ("heldout", self.heldout)):
            write_jsonl(directory / f"{name}.jsonl", (e.to_dict() for e in items))
        atomic_write(directory / "counts.json", json.dumps(self.counts, indent=2))

    @classmethod
    def load(cls, directory: Path) -> Dataset:
        return cls(
            train=[Example.from_dict(d) for d in read_jsonl(directory / "train.jsonl")],
            heldout=[Example.from_dict(d) for d in read_jsonl(directory / "heldout.jsonl")],
            counts=json.loads((directory / "counts.json").read_text()),
        )


# ---- sources ----------------------------------------------------------------------------------


def step_format(settings: Settings, episode: Episode | None = None) -> StepFormat:
    """The format an episode's steps were taken in: the agent's tools (those the episode names, when it
    names them), so the system prompt trained on is the one the agent was shown."""
    registry = default_tools(settings.model_copy(update={"memory": True}))
    names = episode.meta.get("tools") if episode is not None and isinstance(episode.meta, dict) else None
    tools = {n: registry.get(n).description for n in registry.names()  # type: ignore[union-attr]
             if not isinstance(names, list) or n in names}
    return StepFormat.for_names(tools)


def step_examples(episode: Episode, fmt: StepFormat, source: str, weight: float = 1.0,
                  budget_tokens: int = 1536, *, origin: str | None = None, heldout: bool = False) -> list[Example]:
    """An episode's steps as training examples (`StepFormat.examples`); ``origin`` defaults to its id."""
    out = []
    for prompt, completion in fmt.examples(episode, budget_tokens=budget_tokens):
        out.append(Example([*prompt, {"role": "assistant", "content": completion}], source,
                           origin or episode.id, weight, heldout=heldout))
    return out


def response_step(response: str, fmt: StepFormat) -> str | None:
    """A policy example's response as a step reply: as written when it is one, else its call or its
    final answer in the format (None when it is neither)."""
    text = response.strip()
    try:
        return fmt.completion(fmt.parse(text))
    except FormatError:
        pass
    calls = find_invocations(text)
    if calls and calls[0].start == 0 and calls[0].name in fmt.names:
        return f"Action: {calls[0].text}"
    head, sep, answer = text.rpartition("Final answer:")
    if sep and answer.strip():
        thought = " ".join(head.split())[:300]
        return (f"Thought: {thought}\n" if thought else "") + f"Final answer: {answer.strip()}"
    return None


def response_trajectory(response: str, fmt: StepFormat) -> list[Step] | None:
    """A policy example's response written as a worked trajectory (each step's reply, the
    ``Observation:`` line its action got, ..., then the final answer) as the steps it stands for;
    None when it is not one (no observation line, or a part that is not a step of the format)."""
    lines = response.strip().splitlines()
    if not any(line.lstrip().startswith("Observation:") for line in lines):
        return None
    steps: list[Step] = []
    part: list[str] = []
    for line in lines:
        if not line.lstrip().startswith("Observation:"):
            part.append(line)
            continue
        reply = "\n".join(part).strip()
        try:
            step = fmt.parse(reply)
        except FormatError:
            return None
        if not isinstance(step, Action):
            return None
        steps.append(Step(thought=reply, action=step.call.text, observation=line.split(":", 1)[1].strip()))
        part = []
    tail = "\n".join(part).strip()
    if tail:
        try:
            fmt.parse(tail)
        except FormatError:
            return None
        steps.append(Step(thought=tail))
    return steps


def trajectory_examples(episodes: Iterable[Episode], settings: Settings, config: ConsolidateConfig) -> Iterator[Example]:
    """Successful episodes (reward >= min_reward; a guided trace without a reward counts as good), one
    example per step."""
    for ep in episodes:
        good = ep.reward is not None and ep.reward >= config.min_reward
        if ep.kind == "guided" and ep.reward is None:
            good = True
        if not good:
            continue
        weight = float(ep.meta.get("weight", 1.0)) if isinstance(ep.meta.get("weight"), int | float) else 1.0
        yield from step_examples(ep, step_format(settings, ep), "guided" if ep.kind == "guided" else "episode",
                                 weight, settings.render_budget_tokens)


def policy_examples(settings: Settings, config: ConsolidateConfig) -> tuple[list[Example], list[str]]:
    """The ``slow`` parts of learning policies: examples and rewarded trajectories, by weight.

    Returns the examples and any problems (a policy file that does not load is reported, not fatal).
    """
    dirs = [d for d in config.policies_dirs if Path(d).is_dir()]
    if not dirs:
        return [], []
    try:
        from stackmind.policies import FileProblems, PolicyLibrary
    except ImportError as e:  # the policies package is optional for consolidation
        return [], [f"learning policies skipped: {e}"]
    try:
        library = PolicyLibrary.load(dirs)
    except FileProblems as e:
        return [], [f"learning policies skipped: {e}"]
    out: list[Example] = []
    problems: list[str] = []
    fmt = step_format(settings).calling(library.names())
    for policy in library:
        slow = policy.training.slow
        if slow is None or slow.weight <= 0:
            continue
        for i, ex in enumerate(policy.examples):
            steps = None if ex.state.strip() else response_trajectory(ex.response, fmt)
            if steps:  # a worked trajectory: one example per step, each on the stack that step saw
                out += step_examples(Episode(goal=ex.prompt(), steps=steps, kind="guided"), fmt, "policy",
                                     slow.weight, settings.render_budget_tokens, origin=policy.name,
                                     heldout=ex.split == "heldout")
                continue
            reply = response_step(ex.response, fmt)
            if reply is None:
                problems.append(f"{policy.source or policy.name}: examples[{i}].response is not a step of the "
                                "format (Thought / Action / Final answer): not trained on")
                continue
            view = "\n".join(filter(None, [f"[observation] {ex.state.strip()}" if ex.state.strip() else "",
                                            f"[goal] {ex.prompt()}"]))
            msgs = [*fmt.messages(view, ex.prompt()), {"role": "assistant", "content": reply}]
            out.append(Example(msgs, "policy", policy.name, slow.weight, heldout=ex.split == "heldout"))
        for tr in policy.trajectories:
            if tr.reward < config.min_reward:
                continue
            ep = Episode(goal=tr.goal, answer=tr.answer, reward=tr.reward, kind="guided", steps=[
                Step(thought=s.thought, action=s.action, observation=s.observation) for s in tr.steps])
            out += step_examples(ep, fmt, "policy", slow.weight, settings.render_budget_tokens)
    return out, problems


def hook_examples(items: Iterable[Episode | dict[str, Any]], settings: Settings,
                  config: ConsolidateConfig) -> Iterator[Example]:
    """What the hindsight labeller hands over: relabelled episodes, or ``{"prompt": goal, "response":
    reply}`` dicts (a conclusion: the goal and the step that concludes it), in the step format."""
    fmt = step_format(settings)
    for item in items:
        if isinstance(item, Episode):
            for ex in trajectory_examples([item], settings, config):
                ex.source = "hindsight"
                yield ex
            continue
        reply = response_step(str(item.get("response", "")), fmt)
        if reply is None or "prompt" not in item:
            continue
        goal = str(item["prompt"])
        msgs = [*fmt.messages(f"[goal] {goal}", goal), {"role": "assistant", "content": reply}]
        origin = ":".join(str(item[k]) for k in ("source", "id") if item.get(k))  # e.g. relabelled conclusion:<id>
        yield Example(msgs, "hindsight", origin, float(item.get("weight", 1.0)))


def read_episodes(directory: Path) -> tuple[list[Episode], list[str]]:
    """Episodes of a folder; a file that does not parse is reported (file:line) and skipped."""
    if not directory.is_dir():
        return [], []
    try:
        return load_episodes(directory), []
    except TraceError:
        episodes, problems = [], []
        for path in sorted(directory.glob("*.trace.yaml")):
            try:
                episodes.append(Episode.load(path))
            except TraceError as e:
                problems.append(str(e))
        return episodes, problems


# ---- assembling -------------------------------------------------------------------------------


def build_dataset(
    settings: Settings,
    config: ConsolidateConfig,
    *,
    trained_keys: set[str],
    replay_pool: list[Example],
    extra: Iterable[Example] = (),
) -> tuple[Dataset, list[str]]:
    """Collect, deduplicate and split; new examples first, then a replay sample of older ones.

    ``trained_keys`` are the examples earlier runs trained on (not new, but replayable);
    ``replay_pool`` holds them as text, so replay works after their episodes are gone.
    """
    problems: list[str] = []
    found: list[Example] = []
    episodes, p = read_stored_episodes(settings)
    problems += p
    for d in config.traces_dirs:
        eps, p = read_episodes(Path(d))
        episodes += eps
        problems += p
    found += trajectory_examples(episodes, settings, config)
    pol, p = policy_examples(settings, config)
    found += pol
    problems += p
    found += extra

    unique: dict[str, Example] = {}
    for ex in found:
        unique.setdefault(ex.key, ex)
    heldout_prompts = {ex.prompt_key for ex in unique.values() if ex.heldout}
    heldout, new, old = [], [], []
    for ex in unique.values():
        if ex.heldout or ex.prompt_key in heldout_prompts or in_heldout(ex.prompt_key, config.heldout_fraction):
            heldout.append(ex)
        elif ex.key in trained_keys:
            old.append(ex)
        else:
            new.append(ex)
    old_keys = {ex.key for ex in old}
    old += [ex for ex in replay_pool if ex.key not in old_keys and ex.key not in unique
            and not in_heldout(ex.prompt_key, config.heldout_fraction)]
    new = new[: config.max_train_examples]
    want = min(len(old), round(config.replay_ratio * len(new)), config.max_train_examples - len(new))
    rng = random.Random(config.seed + len(trained_keys))
    replay = rng.sample(old, want) if want > 0 else []
    train = new + [Example(ex.messages, "replay", ex.origin or ex.source, ex.weight) for ex in replay]
    counts = {"found": len(found), "unique": len(unique), "new": len(new), "replay": len(replay),
              "replay_pool": len(old), "heldout": len(heldout), "train": len(train)}
    for src in ("episode", "guided", "hindsight", "policy"):
        counts[f"new_{src}"] = sum(1 for ex in new if ex.source == src)
    return Dataset(train, heldout, counts), problems


def in_heldout(prompt_key: str, fraction: float) -> bool:
    """Deterministic: the same prompt is held out in every run, on every machine."""
    return int(prompt_key[:8], 16) / 0x1_0000_0000 < fraction


def _copies(weight: float, key: str) -> int:
    """Integer part of the weight, plus one more with the fractional part's probability (by hash)."""
    weight = min(weight, MAX_WEIGHT) if math.isfinite(weight) and weight > 0 else 0.0  # never unbounded
    whole = int(weight)
    frac = weight - whole
    return whole + (1 if frac > 0 and int(key[8:16], 16) / 0x1_0000_0000 < frac else 0)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---- small file helpers (atomic: a kill leaves the old file or the new one) -------------------


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
