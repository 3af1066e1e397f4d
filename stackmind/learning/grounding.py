"""Grounding by experiment: does pushing a policy onto the stack pay for the stack space it takes?

Each candidate is tried on held-out tasks of the kind that motivated it, once with the policy's
frames pushed and once without, with the same prompts otherwise, the same seed and the same token
budget. What it gains in reward, divided by the stack tokens its frames cost, is its return on
investment (ROI; the notes: "high reward, minimal space"). A candidate is kept when it gained at all
and its ROI reaches the threshold.

    tasks = [HeldoutTask("What is 41 * 99?", "4059")]
    result = ground(policy, tasks, AgentTrial(settings, llm), roi_threshold=2e-4)
    result.gain, result.stack_tokens, result.roi, result.keep

`AgentTrial` runs the agent's own loop on every task, once with ``policies=[policy]`` and once with
none (the same step format, tools, budget and seed otherwise); the runs go side by side, so the LLM
layer batches their steps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from stackmind.agent import Agent
from stackmind.learning.trials import matches
from stackmind.policies.fast import policy_frames
from stackmind.policies.schema import Matcher, Policy
from stackmind.stack import Frame
from stackmind.tasks.answers import answer_span
from stackmind.tasks.goals import Check, Goal

CHECKS = ("exact", "contains", "numeric", "regex", "game24", "goal")
_G24 = re.compile(r"^Use ([\d ]+) once each with \+ - \* / (?:and parentheses )?to make 24\.")

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class HeldoutTask:
    """A goal with a way to check the answer: a known answer and a matcher, or an exact verifier."""

    goal: str
    answer: str | None = None
    # exact | contains | numeric | regex | game24 (the exact Game of 24 verifier) | goal (the goal
    # suite's verifier, its check in ``spec``: `goal_task`)
    check: str = "numeric"
    origin: str = ""  # the episode it came from, the puzzle file row, or the suite goal's id
    spec: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.check not in CHECKS:
            raise ValueError(f"unknown check {self.check!r}; known: {', '.join(CHECKS)}")
        if self.check != "game24" and self.answer is None:
            raise ValueError(f"a {self.check} check needs the expected answer: {self.goal!r}")
        if self.check == "goal":
            Check.from_dict(self.spec or {})  # a bad spec fails here, not in the middle of a trial

    def reward(self, reply: str | None) -> float:
        """1.0 when the reply's final answer is right, else 0.0."""
        if not reply:
            return 0.0
        answer = final_answer(reply)
        if self.check == "game24":
            from stackmind.tasks.game24 import answer_expression, check_expression

            m = _G24.match(self.goal.strip())
            if m is None:
                return 0.0
            numbers = [int(x) for x in m.group(1).split()]
            return 1.0 if check_expression(answer_expression(answer), numbers) else 0.0
        if self.check == "goal":
            return 1.0 if Check.from_dict(self.spec or {}).passes(answer, self.answer or "") else 0.0
        return 1.0 if matches(Matcher(kind=self.check), answer, self.answer, self.goal) else 0.0  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeldoutTask:
        return cls(d["goal"], d.get("answer"), d.get("check", "numeric"), d.get("origin", ""), d.get("spec"))


def goal_task(goal: Goal) -> HeldoutTask:
    """A goal of the suite as a task, checked by the suite's own verifier."""
    return HeldoutTask(goal.text, goal.answer, "goal", goal.id, goal.check.to_dict())


def game24_task(numbers: Sequence[int], origin: str = "") -> HeldoutTask:
    return HeldoutTask(f"Use {' '.join(map(str, numbers))} once each with + - * / to make 24.", None, "game24", origin)


def final_answer(reply: str) -> str:
    """The answer a reply states (after "Final answer:", else its last line)."""
    return answer_span(reply).strip()


# ---- trials -----------------------------------------------------------------------------------

class Trial(Protocol):
    """Runs goals with and without a policy pushed; returns the replies and the frames' stack tokens."""

    name: str

    def run(self, tasks: Sequence[HeldoutTask], policy: Policy, *,
            bare: bool = True) -> tuple[list[str], list[str], int]:
        """Replies with the policy pushed and (``bare``) without it, per task; the policy's stack tokens."""
        """(replies with the policy pushed, replies without, stack tokens of the pushed frames)."""
        ...


def trial_frames(policy: Policy) -> list[Frame]:
    """The frames fast learning pushes for a policy (its first examples, its best trajectories)."""
    fast = policy.training.fast
    k = fast.examples if fast else 3
    return policy_frames(policy, policy.train_examples()[:k], fast.trajectories if fast else 1)


@dataclass
class AgentTrial:
    """The agent's own loop per task and arm (``Agent.run(goal, policies=[policy] or [])``), with
    memory and online learning off so that trials leave no trace in what the agent learns from.
    ``concurrency`` runs go at once (their steps share the LLM's batches)."""

    settings: Any  # stackmind.settings.Settings
    llm: Any = None
    max_steps: int = 4
    concurrency: int = 4
    name: str = "agent"

    def run(self, tasks: Sequence[HeldoutTask], policy: Policy, *,
            bare: bool = True) -> tuple[list[str], list[str], int]:
        """Replies with the policy pushed and (``bare``) without it, per task; the policy's stack tokens."""
        s = self.settings.model_copy(update={"memory": False, "learn": False, "search": "none",
                                             "demos_from_episodes": False,
                                             "home": self.settings.home / "synthesis" / "trials"})
        agent = Agent.from_settings(s, llm=self.llm, warn=lambda m: None)
        agent.library = None  # exactly the policy under trial, or none: no fast learning of its own

        def one(job: tuple[HeldoutTask, bool]) -> str:
            task, arm = job
            ep = agent.run(task.goal, max_steps=self.max_steps, policies=[policy] if arm else [])
            return f"Final answer: {ep.answer}" if ep.answer is not None else ""

        jobs = [(t, arm) for t in tasks for arm in ((True, False) if bare else (True,))]
        try:
            with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
                replies = list(pool.map(one, jobs))
            counter = agent.model().count_tokens
            tokens = sum(counter(f"[{f.kind}] {f.text}") for f in trial_frames(policy))
        finally:
            agent.close()
        return (replies[0::2], replies[1::2], tokens) if bare else (replies, [], tokens)


# ---- the experiment ---------------------------------------------------------------------------

@dataclass
class Grounding:
    """The results of one grounding experiment."""

    policy: str
    trial: str
    tasks: list[dict[str, Any]] = field(default_factory=list)  # per task: goal, replies and rewards
    reward_with: float = 0.0  # mean reward with the policy pushed
    reward_without: float = 0.0
    success_with: int = 0  # tasks solved (reward 1)
    success_without: int = 0
    stack_tokens: int = 0  # tokens the policy's frames take on the stack
    roi_threshold: float = 0.0

    @property
    def n(self) -> int:
        return len(self.tasks)

    @property
    def gain(self) -> float:
        return self.reward_with - self.reward_without

    @property
    def roi(self) -> float:
        """Reward gained per token of stack space."""
        return self.gain / self.stack_tokens if self.stack_tokens else 0.0

    @property
    def keep(self) -> bool:
        return self.n > 0 and self.gain > 0 and self.roi >= self.roi_threshold

    def verdict(self) -> str:
        if not self.n:
            return "no held-out tasks to try it on"
        if self.gain <= 0:
            return f"no gain on {self.n} held-out tasks ({self.success_with} vs {self.success_without} solved)"
        if self.roi < self.roi_threshold:
            return (f"ROI {self.roi * 1000:.3f} reward per 1k stack tokens is below the threshold "
                    f"{self.roi_threshold * 1000:.3f}")
        return (f"gained {self.gain:+.3f} reward ({self.success_with} vs {self.success_without} of {self.n} solved) "
                f"for {self.stack_tokens} stack tokens: ROI {self.roi * 1000:.3f} per 1k tokens")

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy, "trial": self.trial, "n": self.n,
            "reward_with": round(self.reward_with, 4), "reward_without": round(self.reward_without, 4),
            "success_with": self.success_with, "success_without": self.success_without,
            "gain": round(self.gain, 4), "stack_tokens": self.stack_tokens, "roi": round(self.roi, 8),
            "roi_per_1k_tokens": round(self.roi * 1000, 4), "roi_threshold": self.roi_threshold,
            "keep": self.keep, "verdict": self.verdict(), "tasks": self.tasks,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Grounding:
        return cls(d["policy"], d["trial"], d.get("tasks", []), d["reward_with"], d["reward_without"],
                   d["success_with"], d["success_without"], d["stack_tokens"], d.get("roi_threshold", 0.0))


def ground(policy: Policy, tasks: Sequence[HeldoutTask], trial: Trial, *, roi_threshold: float) -> Grounding:
    """Try ``policy`` on ``tasks`` with and without it pushed; see the module docstring."""
    result = Grounding(policy.name, trial.name, roi_threshold=roi_threshold)
    if not tasks:
        return result
    with_replies, without_replies, tokens = trial.run(tasks, policy)
    result.stack_tokens = tokens
    for task, a, b in zip(tasks, with_replies, without_replies, strict=True):
        ra, rb = task.reward(a), task.reward(b)
        result.tasks.append({"goal": task.goal, "expected": task.answer, "check": task.check, "origin": task.origin,
                             "with": a, "reward_with": ra, "without": b, "reward_without": rb})
    n = len(result.tasks)
    result.reward_with = sum(t["reward_with"] for t in result.tasks) / n
    result.reward_without = sum(t["reward_without"] for t in result.tasks) / n
    result.success_with = sum(t["reward_with"] >= 1.0 for t in result.tasks)
    result.success_without = sum(t["reward_without"] >= 1.0 for t in result.tasks)
    return result
