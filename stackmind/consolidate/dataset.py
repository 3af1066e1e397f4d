"""The consolidation dataset: what the agent lived and was taught, as chat examples.

Sources, each a plain function so a newcomer can add one:

- successful trajectories: episodes (``settings.episodes_dir``) and human-guided traces (``traces/``)
  with a reward of at least ``min_reward``;
- hindsight labels and conclusions, from the hindsight labeller's hook (`hooks.Hooks.examples`);
- the ``slow`` parts of learning policies (their train examples and rewarded trajectories, repeated
  by weight); a policy's ``heldout`` examples go to the held-out split;
- replay: a sample of examples trained in earlier runs (``replay_ratio`` per new example), so old
  skills are mixed back in.

Every example is a chat (system, user, assistant, ...): the trainer puts the loss on assistant turns
only. Examples are deduplicated by content; the held-out split is chosen by a hash of the first user
turn, so it is the same in every run and a prompt is never on both sides.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stackmind.consolidate.config import ConsolidateConfig
from stackmind.llm.base import Message
from stackmind.settings import Settings
from stackmind.storage import read_stored_episodes
from stackmind.trace import Episode, Step, TraceError, load_episodes


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
        first = next((m["content"] for m in self.messages if m["role"] == "user"), "")
        return _digest(" ".join(first.lower().split()))

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
        """Rows for trl (``{"messages": ...}``); an example of weight w appears about w times."""
        rows: list[dict[str, Any]] = []
        for ex in self.train:
            rows.extend({"messages": ex.messages} for _ in range(_copies(ex.weight, ex.key)))
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


def episode_messages(episode: Episode, system: str) -> list[Message]:
    """An episode as the conversation the agent has: the goal, then one assistant turn per step.

    Observations come back as user turns (they are the world's words, never trained on); the
    answer is the last assistant turn, in the agent's ``Final answer:`` form.
    """
    msgs: list[Message] = [{"role": "system", "content": system},
                           {"role": "user", "content": f"[goal] {episode.goal.strip()}\n\nYour next step:"}]
    for step in _flat(episode.steps):
        reply = _reply(step)
        msgs.append({"role": "assistant", "content": reply})
        if reply.lower().startswith("final answer") and not step.observation:
            break  # the episode ended here
        observed = f"[observation] {step.observation.strip()}\n\n" if step.observation else ""
        msgs.append({"role": "user", "content": f"{observed}Your next step:"})
    if episode.answer is not None and episode.answer.strip():
        final = f"Final answer: {episode.answer.strip()}"
        if msgs[-1]["role"] == "assistant" and msgs[-1]["content"].lower().startswith("final answer"):
            msgs[-1]["content"] = final
        else:
            msgs.append({"role": "assistant", "content": final})
    while msgs[-1]["role"] != "assistant":  # an episode never ends on the world's turn
        msgs.pop()
    return msgs


def _flat(steps: list[Step]) -> Iterator[Step]:
    for s in steps:
        yield s
        yield from _flat(s.substeps)


def _reply(step: Step) -> str:
    text = step.thought.strip()
    lower = text.lower()
    if text and not lower.startswith(("thought:", "action:", "final answer:")):
        text = f"Thought: {text}"
    if step.action and step.action.strip() not in text:
        text = f"{text}\nAction: {step.action.strip()}" if text else f"Action: {step.action.strip()}"
    return text


def trajectory_examples(episodes: Iterable[Episode], config: ConsolidateConfig) -> Iterator[Example]:
    """Successful episodes (reward >= min_reward; a guided trace without a reward counts as good)."""
    for ep in episodes:
        good = ep.reward is not None and ep.reward >= config.min_reward
        if ep.kind == "guided" and ep.reward is None:
            good = True
        if not good:
            continue
        msgs = episode_messages(ep, config.system_prompt)
        if any(m["role"] == "assistant" for m in msgs):
            weight = float(ep.meta.get("weight", 1.0)) if isinstance(ep.meta.get("weight"), int | float) else 1.0
            yield Example(msgs, "guided" if ep.kind == "guided" else "episode", ep.id, weight)


def policy_examples(config: ConsolidateConfig) -> tuple[list[Example], list[str]]:
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
    for policy in library:
        slow = policy.training.slow
        if slow is None or slow.weight <= 0:
            continue
        for ex in policy.examples:
            msgs: list[Message] = [{"role": "system", "content": config.system_prompt},
                                   {"role": "user", "content": ex.prompt()},
                                   {"role": "assistant", "content": ex.response.strip()}]
            out.append(Example(msgs, "policy", policy.name, slow.weight, heldout=ex.split == "heldout"))
        for tr in policy.trajectories:
            if tr.reward < config.min_reward:
                continue
            ep = Episode(goal=tr.goal, answer=tr.answer, reward=tr.reward, steps=[
                Step(thought=s.thought, action=s.action, observation=s.observation) for s in tr.steps])
            out.append(Example(episode_messages(ep, config.system_prompt), "policy", policy.name, slow.weight))
    return out, []


def hook_examples(items: Iterable[Episode | dict[str, Any]], config: ConsolidateConfig) -> Iterator[Example]:
    """What the hindsight labeller hands over: relabelled episodes, or ``{"messages": ...}`` /
    ``{"prompt": ..., "response": ...}`` dicts (a conclusion is a prompt and its response)."""
    for item in items:
        if isinstance(item, Episode):
            for ex in trajectory_examples([item], config):
                ex.source = "hindsight"
                yield ex
            continue
        if "messages" in item:
            msgs = list(item["messages"])
        else:
            msgs = [{"role": "system", "content": config.system_prompt},
                    {"role": "user", "content": str(item["prompt"])},
                    {"role": "assistant", "content": str(item["response"])}]
        yield Example(msgs, str(item.get("source", "hindsight")), str(item.get("id", "")),
                      float(item.get("weight", 1.0)))


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
    found += trajectory_examples(episodes, config)
    pol, p = policy_examples(config)
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
