"""`stackmind policy test`: does pushing a policy help the agent?

Each labelled example of the chosen split is run through the agent twice, with the policy pushed
onto the stack and without it, and its answer checked by the example's matcher (exact | regex |
contains | numeric | judge). A tested example is never among the examples pushed (leave-one-out;
with ``--split heldout`` only the train examples are pushed). The report gives both pass rates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from stackmind.agent import Agent
from stackmind.errors import StackmindError
from stackmind.policies.schema import Example, Matcher, Policy
from stackmind.settings import Settings
from stackmind.tasks import answers
from stackmind.trace import Episode

TestSplit = Literal["all", "train", "heldout"]
Judge = Callable[[str], str]  # prompt -> the model's reply
ProgressFn = Callable[[str], None]



class PolicyTestError(StackmindError, RuntimeError):
    """A policy test that cannot run (no agent yet, no testable examples)."""


# ---- matchers ---------------------------------------------------------------------------------

def _norm(text: str, ignore_case: bool) -> str:
    text = " ".join(text.strip().split()).rstrip(".")
    return text.casefold() if ignore_case else text


def last_number(text: str) -> float | None:
    """The last number in text ("Final answer: 32.40 dollars" -> 32.4; "2/3" -> 0.666...)."""
    value = answers.last_number(text)
    if value is None:
        return None
    try:
        return float(value)
    except OverflowError:  # a model's run of digits: a number too large for a float matches nothing
        return math.inf if value > 0 else -math.inf


def matches(matcher: Matcher, answer: str | None, expected: str | None, goal: str = "",
            judge: Judge | None = None) -> bool:
    """Whether an answer passes a matcher; ``expected`` is the example's answer."""
    if answer is None:
        return False
    target = matcher.value if matcher.value is not None else expected
    if target is None and matcher.kind != "judge":
        raise PolicyTestError("the matcher has no value and the example no answer: add `answer:`")
    flags = re.IGNORECASE if matcher.ignore_case else 0
    if matcher.kind == "exact":
        return _norm(answer, matcher.ignore_case) == _norm(str(target), matcher.ignore_case)
    if matcher.kind == "contains":
        return _norm(str(target), matcher.ignore_case) in _norm(answer, matcher.ignore_case)
    if matcher.kind == "regex":
        return re.search(str(target), answer, flags) is not None
    if matcher.kind == "numeric":
        want = float(target) if isinstance(target, int | float) else last_number(str(target))
        got = last_number(answer)
        return want is not None and got is not None and abs(got - want) <= matcher.tolerance
    # judge: ask the model whether the answer meets the criterion.
    if judge is None:
        raise PolicyTestError("a judge matcher needs a model to ask")
    criterion = str(target) if target is not None else "the answer is correct"
    prompt = (f"Goal: {goal}\nExpected: {expected if expected is not None else '(see criterion)'}\n"
              f"Criterion: {criterion}\nAnswer given: {answer}\n"
              "Does the answer given meet the criterion? Reply with one word, yes or no.")
    return judge(prompt).strip().lower().startswith("yes")


# ---- running ----------------------------------------------------------------------------------

@dataclass
class CaseResult:
    index: int
    goal: str
    expected: str | None
    pushed: str | None = None
    pushed_ok: bool = False
    bare: str | None = None
    bare_ok: bool = False


@dataclass
class PolicyTestReport:
    policy: str
    split: str
    cases: list[CaseResult] = field(default_factory=list)
    skipped: int = 0  # examples with nothing to check

    @property
    def pushed_rate(self) -> float:
        return sum(c.pushed_ok for c in self.cases) / len(self.cases) if self.cases else 0.0

    @property
    def bare_rate(self) -> float:
        return sum(c.bare_ok for c in self.cases) / len(self.cases) if self.cases else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy, "split": self.split, "n": len(self.cases), "skipped": self.skipped,
            "pass_rate_pushed": round(self.pushed_rate, 4), "pass_rate_not_pushed": round(self.bare_rate, 4),
            "cases": [c.__dict__ for c in self.cases],
        }


def cases_for(policy: Policy, split: TestSplit) -> list[tuple[int, Example, Policy]]:
    """(index, example, the policy as pushed for it): the example itself is never pushed."""
    out = []
    for i, ex in enumerate(policy.examples):
        if split != "all" and ex.split != split:
            continue
        if policy.matcher_for(ex) is None:
            continue
        out.append((i, ex, policy.without_example(i)))
    return out


class AgentRunner:
    """Runs a goal through the agent (`Agent.from_settings`: the sandbox's @python and the policy
    library, so that composite policies resolve) with exactly the given policies pushed.

    Long-term memory, value learning and demonstrations from the agent's own episodes are off: an
    earlier case's answer must not reach a later one, and a test must not change what the agent has
    learned."""

    def __init__(self, settings: Settings, max_steps: int | None = None) -> None:
        quiet = settings.model_copy(update={"memory": False, "learn": False, "demos_from_episodes": False})
        self.agent = Agent.from_settings(quiet)
        self.max_steps = max_steps

    def model_reply(self, prompt: str) -> str:
        llm = self.agent.model()
        return llm.generate([[{"role": "user", "content": prompt}]], max_tokens=4, temperature=0.0).texts[0][0]

    def run(self, goal: str, policy: Policy | None) -> Episode:
        kwargs: dict[str, Any] = {}
        if self.max_steps is not None:
            kwargs["max_steps"] = self.max_steps
        return self.agent.run(goal, policies=[policy] if policy else [], **kwargs)

    def close(self) -> None:
        self.agent.close()


def run_policy_test(policy: Policy, runner: AgentRunner, split: TestSplit = "all", limit: int | None = None,
                    progress: ProgressFn | None = None) -> PolicyTestReport:
    report = PolicyTestReport(policy.name, split)
    cases = cases_for(policy, split)
    selected = [e for e in policy.examples if split == "all" or e.split == split]
    report.skipped = len(selected) - len(cases)
    if limit is not None:
        cases = cases[:limit]
    if not cases:
        raise PolicyTestError(f"@{policy.name} has no {'' if split == 'all' else split + ' '}examples with an "
                              "answer or a matcher to test: add `answer:` (and `match:`) to its examples")
    for n, (i, ex, pushed_policy) in enumerate(cases, 1):
        matcher = policy.matcher_for(ex)
        assert matcher is not None
        goal = ex.prompt()
        case = CaseResult(i, ex.goal, ex.answer)
        for pushed in (True, False):
            if progress:
                progress(f"@{policy.name} example {n}/{len(cases)} ({'pushed' if pushed else 'not pushed'})")
            episode = runner.run(goal, pushed_policy if pushed else None)
            answer = episode.answer
            ok = matches(matcher, answer, ex.answer, ex.goal, judge=runner.model_reply)
            if pushed:
                case.pushed, case.pushed_ok = answer, ok
            else:
                case.bare, case.bare_ok = answer, ok
        report.cases.append(case)
    return report
