"""What a family's generator is made of: templates that draw one goal each, and a builder.

A template is a function of a `random.Random` that returns a `Draft`: the goal's text, its expected
answer and its check. The answer is known by construction (computed in Python from the numbers the
template drew, never by running the text of a goal). `build_family` draws from the templates in
turn with a fixed seed, drops a draw whose content (`content_key`: the template and the numbers,
quoted strings, months and weekdays its text names) was drawn before, so that no split holds another
split's goal in other words. The draws go to dev first, then held-out, then train: as the templates
take turns, every split holds every template (a family has at most as many templates as a split has
goals). Each goal's ``data["template"]`` names its template.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from random import Random
from typing import Any, TypeVar

from stackmind.tasks.answers import MONTHS, WEEKDAYS, format_number
from stackmind.tasks.goals.goal import SPLITS, Check, Goal, GoalError, Split

# Goals per split for every built-in family: the practice split is the largest.
COUNTS: dict[Split, int] = {"train": 50, "dev": 15, "heldout": 15}
DEALT: tuple[Split, ...] = ("dev", "heldout", "train")  # the order the draws go to the splits


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


_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|\d+(?:[.,]\d+)*|[A-Za-z]+")


def content_key(template: str, text: str) -> tuple[str, ...]:
    """What a goal asks, whatever its phrasing: its template and the literals its text names.

    ``Reverse the word 'banana'.`` and ``Write 'banana' backwards.`` are one content, as are
    ``March 7, 2028`` and ``2028-03-07``.
    """
    text = _ISO_DATE.sub(lambda m: f"{MONTHS[int(m[2]) - 1]} {int(m[3])} {m[1]}", text)
    tokens = [t.casefold() for t in _TOKEN.findall(text)]
    return (template, *sorted(t for t in tokens if not t.isalpha() or t in MONTHS or t in WEEKDAYS))


def build_family(family: str, templates: Sequence[Template], counts: Mapping[Split, int] = COUNTS,
                 seed: str | None = None) -> list[Goal]:
    """The family's goals: ``counts[split]`` distinct goals per split, the same on every run."""
    rng = Random(seed or f"stackmind-goals/{family}")
    measured = [counts[s] for s in ("dev", "heldout") if counts.get(s)]
    if measured and len(templates) > min(measured):
        raise GoalError(f"family {family}: {len(templates)} templates do not all fit in dev and held-out")
    total = sum(counts.values())
    drafts: list[tuple[str, Draft]] = []
    seen: set[tuple[str, ...]] = set()
    attempts = 0
    while len(drafts) < total:
        attempts += 1
        if attempts > total * 50:
            raise GoalError(f"family {family}: its templates gave only {len(drafts)} distinct goals of "
                            f"{total}; add templates or widen their ranges")
        template = templates[len(drafts) % len(templates)]
        draft = template(rng)
        key = content_key(template.__name__, draft.text)
        if key in seen:
            continue
        seen.add(key)
        drafts.append((template.__name__, draft))
    labels: list[Split] = [s for s in DEALT for _ in range(counts.get(s, 0))]
    numbers = dict.fromkeys(SPLITS, 0)
    goals = []
    for (template, draft), split in zip(drafts, labels, strict=True):
        goals.append(Goal(f"{family}-{split}-{numbers[split]:03d}", family, split, draft.text, draft.answer,
                          draft.check, {"template": template, **draft.data}))
        numbers[split] += 1
    return goals
