"""A goal with a verifier: the text a user would type, the expected answer, and how to check one.

`Check` says how an answer is compared with the expected one; `Goal.verify` gives 1.0 or 0.0. Every
reader goes through `stackmind.tasks.answers` first (the answer's span, markdown and quotes
stripped), so ``Final answer: **391**`` and ``391`` are the same answer.

Check kinds:

- ``numeric``: the one number the answer states (`normalize_number`) is within ``tolerance`` of the
  expected number (exact fractions: a tolerance of 0 means equal);
- ``exact``: the answer's text equals the expected text (spaces collapsed, a trailing period
  dropped, case folded unless ``case_sensitive``); a span that ends with a quoted string may give
  just that string (``Reversed, it is "olleh".``);
- ``choice``: the answer names exactly one of ``options`` (words; a prefix of three letters or more
  counts: ``Wed`` is Wednesday), and it is the expected one;
- ``date``: the answer names exactly one date (ISO or with a month's name) and it is the expected one;
- ``list``: the answer's items (`split_list`) equal the expected items in order (numbers by value);
- ``expression``: a Game of 24 answer: one side of the answer's ``=`` uses ``numbers`` once each
  with + - * / and makes 24 (`stackmind.tasks.game24.check_expression`, exact).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from typing import Any, Literal, get_args

from stackmind.errors import StackmindError
from stackmind.tasks import answers
from stackmind.tasks.game24 import check_expression

Split = Literal["train", "dev", "heldout"]
SPLITS: tuple[Split, ...] = get_args(Split)
CheckKind = Literal["numeric", "exact", "choice", "date", "list", "expression"]
CHECK_KINDS: tuple[CheckKind, ...] = get_args(CheckKind)


class GoalError(StackmindError, ValueError):
    """A goal file, family or split that cannot be used: what, where (file:line) and what to do."""


@dataclass(frozen=True)
class Check:
    """How to verify an answer against a goal's expected answer (see the module's docstring)."""

    kind: CheckKind
    tolerance: float = 0.0  # numeric: the largest |given - expected| that passes
    case_sensitive: bool = False  # exact, list
    options: tuple[str, ...] = ()  # choice: the words an answer chooses among
    numbers: tuple[int, ...] = ()  # expression: the numbers to use once each

    def __post_init__(self) -> None:
        if self.kind not in CHECK_KINDS:
            raise GoalError(f"unknown check kind {self.kind!r}: use one of {', '.join(CHECK_KINDS)}")
        if self.tolerance < 0:
            raise GoalError(f"a numeric tolerance cannot be negative ({self.tolerance})")
        if self.kind == "choice" and not self.options:
            raise GoalError("a choice check needs its options")
        if self.kind == "expression" and not self.numbers:
            raise GoalError("an expression check needs the numbers to use")

    def passes(self, answer: str | None, expected: str) -> bool:
        """Whether ``answer`` (a model's reply, as written) matches ``expected`` under this check."""
        if answer is None or not answer.strip():
            return False
        return _READERS[self.kind](self, answer, expected)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.tolerance:
            out["tolerance"] = self.tolerance
        if self.case_sensitive:
            out["case_sensitive"] = True
        if self.options:
            out["options"] = list(self.options)
        if self.numbers:
            out["numbers"] = list(self.numbers)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Check:
        unknown = set(d) - {"kind", "tolerance", "case_sensitive", "options", "numbers"}
        if unknown:
            raise GoalError(f"unknown check field(s) {', '.join(sorted(unknown))}")
        return cls(kind=d.get("kind", ""), tolerance=float(d.get("tolerance", 0.0)),
                   case_sensitive=bool(d.get("case_sensitive", False)),
                   options=tuple(str(o) for o in d.get("options", ())),
                   numbers=tuple(int(n) for n in d.get("numbers", ())))


@dataclass(frozen=True)
class Goal:
    """One goal of the suite: ``verify`` reads a model's answer and gives 1.0 (right) or 0.0."""

    id: str  # stable: <family>-<split>-<number>, e.g. arithmetic-dev-007
    family: str
    split: Split
    text: str  # as a user would type it, ending with the form the answer takes
    answer: str  # the expected answer, as text
    check: Check
    data: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)  # e.g. a program

    def verify(self, answer: str | None) -> float:
        return 1.0 if self.check.passes(answer, self.answer) else 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "family": self.family, "split": self.split, "text": self.text,
                               "answer": self.answer, "check": self.check.to_dict()}
        if self.data:
            out["data"] = dict(self.data)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Goal:
        missing = [k for k in ("id", "family", "split", "text", "answer", "check") if k not in d]
        if missing:
            raise GoalError(f"missing field(s) {', '.join(missing)}")
        if d["split"] not in SPLITS:
            raise GoalError(f"split {d['split']!r} is not one of {', '.join(SPLITS)}")
        if not isinstance(d["check"], Mapping):
            raise GoalError("check must be an object such as {\"kind\": \"numeric\"}")
        return cls(id=str(d["id"]), family=str(d["family"]), split=d["split"], text=str(d["text"]),
                   answer=str(d["answer"]), check=Check.from_dict(d["check"]), data=dict(d.get("data", {})))


# ---- readers, one per check kind ---------------------------------------------------------------

def _numeric(check: Check, answer: str, expected: str) -> bool:
    want = answers.normalize_number(expected)
    got = answers.normalize_number(answer)
    if want is None or got is None:
        return False
    if got != want and _FLOAT_NOISE.search(answers.answer_span(answer)):
        got = round(got, 9)  # a float printed with its rounding error (80 * 0.6 * 40 -> 1920.0000000000001)
    return abs(got - want) <= Fraction(str(check.tolerance))


_FLOAT_NOISE = re.compile(r"\d\.\d{10,}")  # more decimals than any answer states: a float's rounding error


def _exact(check: Check, answer: str, expected: str) -> bool:
    want = answers.normalize_text(expected, check.case_sensitive)
    span = answers.answer_span(answer)
    candidates = [span, answers.trailing_quoted(span)]
    return any(c is not None and answers.normalize_text(c, check.case_sensitive) == want for c in candidates)


def _choice(check: Check, answer: str, expected: str) -> bool:
    options = [o.casefold() for o in check.options]
    said = answers.words(answers.answer_span(answer))
    named = {o for o in options for w in said if w == o or (len(w) >= 3 and o.startswith(w))}
    return named == {expected.casefold()}


def _date(check: Check, answer: str, expected: str) -> bool:
    want = date.fromisoformat(expected)
    return set(answers.parse_dates(answers.answer_span(answer))) == {want}


def _same_item(a: str, b: str, case_sensitive: bool) -> bool:
    x, y = answers.parse_number(a), answers.parse_number(b)
    if x is not None and y is not None:
        return x == y
    return answers.normalize_text(a, case_sensitive) == answers.normalize_text(b, case_sensitive)


def _list(check: Check, answer: str, expected: str) -> bool:
    want = answers.split_list(expected)
    got = answers.split_list(answers.answer_span(answer))
    return len(got) == len(want) and all(_same_item(g, w, check.case_sensitive) for g, w in zip(got, want, strict=True))


_TIMES = re.compile(r"(?<=[\d)\s])[xX](?=[\s\d(])|\\times|\\cdot|·")


def _expression(check: Check, answer: str, expected: str) -> bool:
    span = answers.answer_span(answer).replace("\\div", "/")
    span = _TIMES.sub("*", span).strip("$` ")
    return any(check_expression(side, check.numbers) for side in span.split("="))


_READERS = {"numeric": _numeric, "exact": _exact, "choice": _choice, "date": _date, "list": _list,
            "expression": _expression}
