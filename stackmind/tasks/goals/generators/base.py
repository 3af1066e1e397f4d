"""What a family's generator is made of: templates that draw one goal each, and a builder.

A template is a function of a `random.Random` that returns a `Draft`: the goal's text, its expected
answer and its check. The answer is known by construction (computed in Python from the numbers the
template drew, never by running the text of a goal). `build_family` draws from the templates in
turn with a fixed seed, drops any text drawn before, and deals the goals into the splits in a
shuffled order, so that every split holds every template.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from random import Random
from typing import Any, TypeVar

from stackmind.tasks.answers import format_number
from stackmind.tasks.goals.goal import SPLITS, Check, Goal, GoalError, Split

# Goals per split for every built-in family: the practice split is the largest.
COUNTS: dict[Split, int] = {"train": 50, "dev": 15, "heldout": 15}


@dataclass(frozen=True)
class Draft:
    text: str
    answer: str
    check: Check
    data: Mapping[str, Any] = field(default_factory=dict)


Template = Callable[[Random], Draft]

NUMBER = " Answer with the number."


def numeric(text: str, value: Fraction | int, *, places: int | None = None, tolerance: float = 0.0) -> Draft:
    """A numeric goal; ``places`` rounds the expected value (half up) and is usually said in the text."""
    return Draft(text, format_number(Fraction(value), places), Check("numeric", tolerance=tolerance))


def exact(text: str, answer: str, *, case_sensitive: bool = False) -> Draft:
    return Draft(text, answer, Check("exact", case_sensitive=case_sensitive))


def plural(n: int, word: str) -> str:
    """``1 minute``, ``2 minutes``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


T = TypeVar("T")


def pick(rng: Random, options: Sequence[T]) -> T:
    return options[rng.randrange(len(options))]


def build_family(family: str, templates: Sequence[Template], counts: Mapping[Split, int] = COUNTS,
                 seed: str | None = None) -> list[Goal]:
    """The family's goals: ``counts[split]`` distinct goals per split, the same on every run."""
    rng = Random(seed or f"stackmind-goals/{family}")
    total = sum(counts.values())
    drafts: list[Draft] = []
    seen: set[str] = set()
    attempts = 0
    while len(drafts) < total:
        attempts += 1
        if attempts > total * 50:
            raise GoalError(f"family {family}: its templates gave only {len(drafts)} distinct goals of "
                            f"{total}; add templates or widen their ranges")
        draft = templates[len(drafts) % len(templates)](rng)
        key = " ".join(draft.text.split()).casefold()
        if key in seen:
            continue
        seen.add(key)
        drafts.append(draft)
    labels: list[Split] = [s for s in SPLITS for _ in range(counts.get(s, 0))]
    rng.shuffle(labels)
    numbers = dict.fromkeys(SPLITS, 0)
    goals = []
    for draft, split in zip(drafts, labels, strict=True):
        goals.append(Goal(f"{family}-{split}-{numbers[split]:03d}", family, split, draft.text, draft.answer,
                          draft.check, dict(draft.data)))
        numbers[split] += 1
    return goals
