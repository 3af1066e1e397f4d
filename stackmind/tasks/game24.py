"""The Game of 24: use four numbers once each with + - * / to make 24.

A step combines two of the numbers left into one and is written ``a op b = c (left: ...)``. The
model proposes steps; `apply_step` checks each one with exact rational arithmetic (`fractions`)
and discards any whose operands are not left or whose result is wrong. The numbers left after a
step are computed here, never read from the model. A final state (one number left) succeeds when
that number is exactly 24; its answer is the expression the steps built, which `check_expression`
verifies again from scratch (parsed with `ast`, never evaluated as code).

Puzzles come from any CSV shaped like the Tree-of-Thoughts file (a ``Puzzles`` column holding four
numbers separated by spaces; ``Rank`` optional): see `load_puzzles`.
"""

from __future__ import annotations

import ast
import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from stackmind.errors import StackmindError
from stackmind.llm.base import Prompt
from stackmind.tasks.base import State, ValueSpec, read_verdicts

TARGET = Fraction(24)


class PuzzleError(StackmindError, ValueError):
    """A puzzle file or range that cannot be used, with where and what to do."""


# ---- puzzles ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Puzzle:
    numbers: tuple[int, ...]
    rank: int | None = None  # the file's Rank column, when it has one
    index: int = 0  # the row's position among the file's puzzles (0-based), what --range selects

    @property
    def text(self) -> str:
        return " ".join(str(n) for n in self.numbers)


def parse_range(spec: str | None) -> slice:
    """``A:B`` as a Python slice over the file's puzzles (0-based, B excluded); ``A:`` and ``:B`` too."""
    if spec is None or spec.strip() in ("", ":"):
        return slice(None)
    m = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", spec)
    if not m:
        raise PuzzleError(f"range {spec!r} is not A:B (e.g. 0:50, the first fifty puzzles of the file)")
    a, b = (int(x) if x else None for x in m.groups())
    if a is not None and b is not None and b <= a:
        raise PuzzleError(f"range {spec!r} is empty: B must be larger than A")
    return slice(a, b)


def load_puzzles(path: Path | str, select: str | slice | None = None) -> list[Puzzle]:
    """Puzzles from a CSV with a ``Puzzles`` column (e.g. ``1 1 4 6``); ``select`` is a range A:B."""
    path = Path(path)
    if not path.is_file():
        raise PuzzleError(f"{path}: no such file; pass a CSV shaped like game24_dev.csv (a 'Puzzles' column)")
    rows = slice(None) if select is None else select if isinstance(select, slice) else parse_range(select)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in reader.fieldnames or []]
        if "Puzzles" not in fields:
            raise PuzzleError(f"{path}:1: no 'Puzzles' column (found {', '.join(fields) or 'nothing'}): "
                              "the header must name a 'Puzzles' column of four numbers")
        puzzles: list[Puzzle] = []
        for i, row in enumerate(reader):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            line = reader.line_num
            try:
                numbers = tuple(int(x) for x in row["Puzzles"].split())
            except ValueError:
                raise PuzzleError(f"{path}:{line}: puzzle {row['Puzzles']!r} is not whole numbers "
                                  "separated by spaces") from None
            if len(numbers) != 4:
                raise PuzzleError(f"{path}:{line}: puzzle {row['Puzzles']!r} has {len(numbers)} numbers, not 4")
            rank = int(row["Rank"]) if row.get("Rank", "").isdigit() else None
            puzzles.append(Puzzle(numbers, rank, i))
    chosen = puzzles[rows]
    if not chosen:
        raise PuzzleError(f"{path}: range selects no puzzle (the file has {len(puzzles)})")
    return chosen


# ---- exact arithmetic -------------------------------------------------------------------------

_NUM = r"-?\d+(?:\.\d+)?(?:/\d+)?"
_OPS = {"+": "+", "-": "-", "−": "-", "*": "*", "×": "*", "x": "*", "X": "*", "/": "/", "÷": "/"}
_STEP = re.compile(
    rf"^\s*(?:step\s*\d*\s*[:.)]\s*|[-*•]\s+|\d+[.)]\s+)?\(?\s*({_NUM})\s*([-+*/×xX÷−])\s*({_NUM})\s*\)?\s*=\s*({_NUM})",
    re.IGNORECASE,
)


def fmt(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def _num(text: str) -> Fraction:
    return Fraction(text)


def _same(written: str, exact: Fraction) -> bool:
    """The model's result equals the exact one (a decimal may round it to the digits it shows)."""
    value = _num(written)
    if value == exact:
        return True
    if "." in written:
        digits = len(written.split(".")[1].split("/")[0])
        return round(exact, digits) == value
    return False


def combine(a: Fraction, op: str, b: Fraction) -> Fraction | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b if b != 0 else None
    raise ValueError(f"unknown operator {op!r}")


@dataclass(frozen=True)
class Move:
    """One verified step: ``a op b = c``, with what is left (exact) and the expressions behind it."""

    a: Fraction
    op: str
    b: Fraction
    result: Fraction
    left: tuple[tuple[Fraction, str], ...]  # (value, expression) of every number left, sorted

    @property
    def text(self) -> str:
        nums = " ".join(fmt(v) for v, _ in self.left)
        return f"{fmt(self.a)} {self.op} {fmt(self.b)} = {fmt(self.result)} (left: {nums})"


def apply_step(line: str, items: Sequence[tuple[Fraction, str]]) -> Move | None:
    """The step a line states, checked against the numbers left; None when it is not valid."""
    m = _STEP.match(line)
    if not m:
        return None
    a_s, op_s, b_s, c_s = m.groups()
    try:
        a, b = _num(a_s), _num(b_s)
    except (ValueError, ZeroDivisionError):
        return None
    op = _OPS[op_s]
    pool = list(items)
    taken: list[tuple[Fraction, str]] = []
    for x in (a, b):
        idx = next((i for i, (v, _) in enumerate(pool) if v == x), None)
        if idx is None:
            return None  # an operand that is not among the numbers left
        taken.append(pool.pop(idx))
    result = combine(a, op, b)
    try:
        if result is None or not _same(c_s, result):
            return None  # wrong arithmetic (or division by zero) is discarded, never trusted
    except (ValueError, ZeroDivisionError):
        return None
    expr = f"({taken[0][1]} {op} {taken[1][1]})"
    left = tuple(sorted(pool + [(result, expr)], key=lambda t: t[0]))
    return Move(a, op, b, result, left)


def check_expression(expr: str, numbers: Sequence[int], target: Fraction = TARGET) -> bool:
    """Whether ``expr`` uses exactly ``numbers`` (each once) with + - * / and equals ``target``.

    The text is parsed with `ast` and walked with exact fractions: nothing is executed.
    """
    text = expr.strip().replace("×", "*").replace("÷", "/").replace("−", "-")
    text = text.split("=")[0].strip() if "=" in text else text
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return False
    used: list[int] = []

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
            left, right = walk(node.left), walk(node.right)
            op = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}[type(node.op)]
            value = combine(left, op, right)
            if value is None:
                raise ZeroDivisionError
            return value
        if isinstance(node, ast.Constant) and type(node.value) is int:
            used.append(node.value)
            return Fraction(node.value)
        raise ValueError(f"not allowed in a Game of 24 answer: {ast.dump(node)[:40]}")

    try:
        value = walk(tree)
    except (ValueError, ZeroDivisionError, RecursionError):
        return False
    return sorted(used) == sorted(numbers) and value == target


_ANSWER = re.compile(r"(?i)answer\s*:\s*([^\n]+)")


def answer_expression(text: str) -> str:
    """The expression in a free-text answer (after "Answer:" if present, without "= 24")."""
    m = _ANSWER.search(text)
    line = m.group(1) if m else next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    return line.split("=")[0].strip().strip("`$ ")


# ---- the task ---------------------------------------------------------------------------------

PROPOSE_PROMPT = """\
Game of 24. Pick two of the numbers and join them with +, -, * or /. The result takes the place
of the two numbers. List several different next steps, one per line, in the form
a op b = c (left: the numbers that remain)

Numbers: 3 5 6 9
Next steps:
5 + 9 = 14 (left: 3 6 14)
9 - 5 = 4 (left: 3 4 6)
6 / 3 = 2 (left: 2 5 9)
3 * 5 = 15 (left: 6 9 15)
9 - 6 = 3 (left: 3 3 5)
6 * 9 = 54 (left: 3 5 54)

Numbers: 2 7 12
Next steps:
12 / 2 = 6 (left: 6 7)
7 - 2 = 5 (left: 5 12)
2 * 7 = 14 (left: 12 14)
12 + 2 = 14 (left: 7 14)
12 - 7 = 5 (left: 2 5)

Numbers: 4 6
Next steps:
4 * 6 = 24 (left: 24)
6 - 4 = 2 (left: 2)
4 + 6 = 10 (left: 10)

Numbers: {numbers}
Next steps:
"""

VALUE_PROMPT = """\
Can these numbers still make 24, using each of them exactly once with + - * /?
Try one or two combinations on one line, then give one verdict: sure, likely or impossible.

Numbers: 4 6
4 * 6 = 24
Verdict: sure

Numbers: 2 2 7
2 * 7 + 2 = 16, (7 + 2) * 2 = 18: no way to 24
Verdict: impossible

Numbers: 3 8 9
9 - 8 = 1, 3 * 8 * 1 = 24
Verdict: sure

Numbers: 5 7 10
10 + 7 + 5 = 22, (10 - 7) * 5 = 15: not found, but near
Verdict: likely

Numbers: 1 1 2
(1 + 1) * 2 = 4: far too small
Verdict: impossible

Numbers: 11 13
11 + 13 = 24
Verdict: sure

Numbers: {numbers}
"""


class Game24:
    """The Game of 24 as a search task over verified steps."""

    name = "game24"
    max_depth = 3
    propose_max_tokens = 96
    propose_stop: tuple[str, ...] = ("\n\n", "Numbers:")
    value_max_tokens = 40

    def __init__(self, numbers: Sequence[int] | Puzzle) -> None:
        self.puzzle = numbers if isinstance(numbers, Puzzle) else Puzzle(tuple(numbers))
        if len(self.puzzle.numbers) < 1:
            raise PuzzleError("a Game of 24 puzzle needs numbers")
        self.numbers = self.puzzle.numbers
        self.goal = f"Use {self.puzzle.text} once each with + - * / to make 24."

    # -- states
    def root(self) -> State:
        items = tuple(sorted(((Fraction(n), str(n)) for n in self.numbers), key=lambda t: t[0]))
        return State((), _facts(items), {"items": items})

    @staticmethod
    def left(state: State) -> tuple[tuple[Fraction, str], ...]:
        return state.data["items"]

    def left_text(self, state: State) -> str:
        return " ".join(fmt(v) for v, _ in self.left(state))

    # -- proposing
    def propose_prompt(self, state: State) -> Prompt:
        return PROPOSE_PROMPT.format(numbers=self.left_text(state))

    def children(self, state: State, completions: Sequence[str]) -> list[State]:
        out: list[State] = []
        seen: set[object] = set()
        for text in completions:
            for line in text.splitlines():
                move = apply_step(line, self.left(state))
                if move is None:
                    continue
                facts = _facts(move.left)
                if facts in seen:
                    continue
                seen.add(facts)
                out.append(state.then(move.text, facts, items=move.left))
        return out

    # -- valuing
    def value_spec(self, state: State) -> ValueSpec:
        return ValueSpec(VALUE_PROMPT.format(numbers=self.left_text(state)), self.value_max_tokens,
                         ("\n\n", "Numbers:"))

    def read_value(self, samples: Sequence[str]) -> float:
        return read_verdicts(samples)

    # -- verifying
    def is_final(self, state: State) -> bool:
        return len(self.left(state)) <= 1

    def outcome(self, state: State) -> float | None:
        if not self.is_final(state):
            return None
        answer = self.answer(state)
        return 1.0 if answer is not None and check_expression(answer, self.numbers) else 0.0

    def answer(self, state: State) -> str | None:
        items = self.left(state)
        if len(items) != 1:
            return None
        expr = items[0][1]
        if expr.startswith("(") and expr.endswith(")") and _balanced(expr[1:-1]):
            expr = expr[1:-1]
        return f"{expr} = {fmt(items[0][0])}"


def _facts(items: Sequence[tuple[Fraction, str]]) -> tuple[Fraction, ...]:
    return tuple(sorted(v for v, _ in items))


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0
