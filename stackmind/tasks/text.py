"""An open goal in plain text: the task `stackmind.search.solve` builds from a goal string.

Each thought is one line of reasoning; a thought that starts with "Final answer:" concludes. With
no verifier, a conclusion's worth is the judge's value; give ``verify`` (answer -> reward in [0, 1])
when the goal has a checkable answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from stackmind.llm.base import Prompt
from stackmind.tasks.base import State, ValueSpec, read_verdicts

_FINAL = re.compile(r"(?i)^\s*final answer\s*:\s*(.+)$")
_LEAD = re.compile(r"^\s*(?:[-*•]\s+|\d+[.)]\s+|thought\s*:\s*)", re.IGNORECASE)

PROPOSE_PROMPT = """\
Goal: {goal}
{steps}
Write {k} different possible next steps, one per line. A step is one short line of reasoning, or
"Final answer: ..." when the answer is known.
Next steps:
"""

VALUE_PROMPT = """\
Goal: {goal}
{steps}
Is this line of reasoning on its way to reaching the goal correctly? Think in one short line, then
give one verdict: sure, likely or impossible.
"""


class TextGoal:
    name = "text"
    propose_max_tokens = 160
    propose_stop: tuple[str, ...] = ("\n\n",)

    def __init__(self, goal: str, *, max_depth: int = 4, branching: int = 3,
                 verify: Callable[[str], float] | None = None) -> None:
        if not goal.strip():
            raise ValueError("the goal is empty: say what should be reached")
        self.goal = goal.strip()
        self.max_depth = max_depth
        self.branching = branching
        self.verify = verify

    def root(self) -> State:
        return State()

    def _steps(self, state: State) -> str:
        if not state.thoughts:
            return "Steps so far: none"
        return "Steps so far:\n" + "\n".join(f"{i + 1}. {t}" for i, t in enumerate(state.thoughts))

    def propose_prompt(self, state: State) -> Prompt:
        return PROPOSE_PROMPT.format(goal=self.goal, steps=self._steps(state), k=self.branching)

    def children(self, state: State, completions: Sequence[str]) -> list[State]:
        out: list[State] = []
        seen: set[object] = set()
        for text in completions:
            for line in text.splitlines():
                thought = _LEAD.sub("", line).strip()
                if not thought:
                    continue
                child = state.then(thought)
                if child.key in seen:
                    continue
                seen.add(child.key)
                out.append(child)
        return out[: max(1, self.branching * 2)]

    def value_spec(self, state: State) -> ValueSpec:
        return ValueSpec(VALUE_PROMPT.format(goal=self.goal, steps=self._steps(state)), 48, ("\n\n",))

    def read_value(self, samples: Sequence[str]) -> float:
        return read_verdicts(samples)

    def is_final(self, state: State) -> bool:
        return bool(state.thoughts) and _FINAL.match(state.thoughts[-1]) is not None

    def outcome(self, state: State) -> float | None:
        answer = self.answer(state)
        if answer is None or self.verify is None:
            return None
        return float(self.verify(answer))

    def answer(self, state: State) -> str | None:
        if not state.thoughts:
            return None
        m = _FINAL.match(state.thoughts[-1])
        return m.group(1).strip() if m else None
