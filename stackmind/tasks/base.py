"""What a task gives the search engine: prompts for proposing and valuing, and a verifier.

A search node holds a `State`: the thoughts pushed so far above the goal (a stack state) and the
facts the task derived from them (for the Game of 24: the numbers left). Two paths that reach the
same facts are the same state: the engine merges them and scores them once.

A task never trusts the model: `Task.children` parses a completion and keeps only the steps its
verifier accepts, and `Task.outcome` says whether a final state reached the goal.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from stackmind.llm.base import Prompt


@dataclass(frozen=True)
class State:
    """A stack state: the thoughts above the goal, in order, and the task's facts about them."""

    thoughts: tuple[str, ...] = ()
    facts: Hashable = None  # the task's canonical content; the merge key when not None
    data: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)  # task bookkeeping

    @property
    def key(self) -> Hashable:
        """States with equal keys are one state to the search (merged, scored once)."""
        return self.facts if self.facts is not None else tuple(t.strip().lower() for t in self.thoughts)

    @property
    def depth(self) -> int:
        return len(self.thoughts)

    def then(self, thought: str, facts: Hashable = None, **data: Any) -> State:
        return State(self.thoughts + (thought,), facts, data)

    def render(self) -> str:
        return "\n".join(self.thoughts)


@dataclass(frozen=True)
class ValueSpec:
    """How a judge asks about a state and reads its answers."""

    prompt: Prompt
    max_tokens: int = 48
    stop: tuple[str, ...] = ()


@runtime_checkable
class Task(Protocol):
    """A problem the search engine can work on."""

    name: str
    goal: str
    max_depth: int
    propose_max_tokens: int  # completion budget of one proposal
    propose_stop: tuple[str, ...]

    def root(self) -> State:
        """The state before any thought."""
        ...

    def propose_prompt(self, state: State) -> Prompt:
        """The prompt that asks for candidate next thoughts from ``state``."""
        ...

    def children(self, state: State, completions: Sequence[str]) -> list[State]:
        """The verified next states a proposal's samples describe (invalid steps dropped)."""
        ...

    def value_spec(self, state: State) -> ValueSpec:
        """How to ask a judge whether ``state`` can still reach the goal."""
        ...

    def read_value(self, samples: Sequence[str]) -> float:
        """A value in [0, 1] from a judge's sampled answers."""
        ...

    def is_final(self, state: State) -> bool:
        """No further thought can follow (an answer was given, or nothing is left to do)."""
        ...

    def outcome(self, state: State) -> float | None:
        """The verifier's reward for a final state (1 reached, 0 not), None when nothing can check."""
        ...

    def answer(self, state: State) -> str | None:
        """The conclusion a state stands for, if it is one."""
        ...


# The judge's words, shared by tasks that value a state in the sure / likely / impossible manner
# of the Tree-of-Thoughts paper. Each sample names one verdict; the value is their mean.
VERDICTS: dict[str, float] = {"sure": 1.0, "likely": 0.4, "impossible": 0.0}


def read_verdicts(samples: Sequence[str], verdicts: dict[str, float] = VERDICTS) -> float:
    """Mean verdict over samples; a sample that names none counts as half-way ("likely"-ish)."""
    if not samples:
        return 0.0
    total = 0.0
    for s in samples:
        text = s.lower().replace("unlikely", "impossible")
        found = [(text.rfind(word), v) for word, v in verdicts.items() if word in text]
        # The last verdict named is the one the sample settled on.
        total += max(found)[1] if found else 0.2
    return total / len(samples)
