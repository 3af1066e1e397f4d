"""The scorer hook: how search values a state.

Any object with ``score(goal, states) -> list[float]`` (values in [0, 1], one per state, all in one
batch) is a `Scorer`. The default is `LLMJudge`, a judgement by the model in the manner of the
Tree-of-Thoughts paper: is this state sure, likely or impossible to reach the goal, sampled three
times. The value model (stackmind.value) plugs in here with the same method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from stackmind.llm.base import LLM
from stackmind.tasks.base import State, Task, ValueSpec, read_verdicts

GENERIC_VALUE_PROMPT = """\
Goal: {goal}
Steps so far:
{steps}
Will these steps lead to the goal? Check briefly, then give one verdict: sure, likely or impossible.
"""


@runtime_checkable
class Scorer(Protocol):
    def score(self, goal: str, states: Sequence[State]) -> list[float]: ...


class LLMJudge:
    """Values states by asking the model for a verdict, ``samples`` times each, in ONE batched call.

    With a task, its own value prompt and reading are used; without one, a generic prompt.
    """

    def __init__(self, llm: LLM, task: Task | None = None, *, samples: int = 3, temperature: float = 0.7,
                 seed: int | None = None) -> None:
        self.llm = llm
        self.task = task
        self.samples = samples
        self.temperature = temperature
        self.seed = seed

    def _spec(self, goal: str, state: State) -> ValueSpec:
        if self.task is not None:
            return self.task.value_spec(state)
        steps = state.render() or "(none yet)"
        return ValueSpec(GENERIC_VALUE_PROMPT.format(goal=goal, steps=steps), 48, ("\n\n",))

    def _read(self, samples: Sequence[str]) -> float:
        return self.task.read_value(samples) if self.task is not None else read_verdicts(samples)

    def score(self, goal: str, states: Sequence[State]) -> list[float]:
        if not states:
            return []
        specs = [self._spec(goal, s) for s in states]
        values: list[float] = [0.0] * len(states)
        # One generate per distinct (max_tokens, stop): for one task that is one call.
        groups: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        for i, spec in enumerate(specs):
            groups.setdefault((spec.max_tokens, spec.stop), []).append(i)
        for (max_tokens, stop), idx in groups.items():
            gen = self.llm.generate(
                [specs[i].prompt for i in idx], n=self.samples, max_tokens=max_tokens,
                temperature=self.temperature, stop=stop, seed=self.seed,
            )
            for i, samples in zip(idx, gen.texts, strict=True):
                values[i] = self._read(samples)
        return values
