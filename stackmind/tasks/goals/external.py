"""Families read from data files outside the repository: GSM8K word problems and Game of 24 puzzles.

Nothing of either file is copied into the repository; each is read where it lies. The path comes
from the caller, else an environment variable, else the shared data folder next to the checkout:

=========  ====================  ============================================
family     environment variable  default
=========  ====================  ============================================
gsm8k      ``STACKMIND_GSM8K``   ``../shared/data/gsm8k/train.jsonl``
game24     ``STACKMIND_GAME24``  ``../shared/data/game24/game24_dev.csv``
=========  ====================  ============================================

(the defaults are relative to the repository root, the folder that holds ``stackmind/``).

Splits are fixed by a row's position in its file (`gsm8k_split`, `game24_split`), so they are the
same on every machine and never overlap.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from stackmind.tasks.answers import format_number, parse_number
from stackmind.tasks.game24 import PuzzleError, load_puzzles
from stackmind.tasks.goals.goal import SPLITS, Check, Goal, GoalError, Split

REPO_ROOT = Path(__file__).resolve().parents[3]
GSM8K_ENV, GSM8K_DEFAULT = "STACKMIND_GSM8K", REPO_ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
GAME24_ENV, GAME24_DEFAULT = "STACKMIND_GAME24", REPO_ROOT.parent / "shared" / "data" / "game24" / "game24_dev.csv"

GSM8K_DEV = 500  # the dev split: the 500 rows before the last 500
GSM8K_HELDOUT = 500  # the held-out split: the last 500 rows


def resolve(path: Path | str | None, env: str, default: Path, what: str) -> Path:
    """The file to read: ``path``, else ``$env``, else ``default``; a clear error when it is missing."""
    chosen = Path(path) if path is not None else Path(os.environ[env]) if os.environ.get(env) else default
    if not chosen.is_file():
        raise GoalError(f"{chosen}: no {what} file there. Put the file at {default}, set {env}=/path/to/it, "
                        "or pass path= (the shared data folder's README says where it comes from)")
    return chosen


def _check_split(split: Split | None) -> None:
    if split is not None and split not in SPLITS:
        raise GoalError(f"split {split!r} is not one of {', '.join(SPLITS)}")


# ---- GSM8K -------------------------------------------------------------------------------------

def gsm8k_split(row: int, n_rows: int) -> Split:
    """Which split a row of the GSM8K train file is in (rows are 0-based lines of the file).

    The last 1000 rows are set aside: the first 500 of them are dev, the last 500 held-out, and every
    earlier row is train. In the 7,473-row file: train 0..6472, dev 6473..6972, held-out 6973..7472.
    """
    if not 0 <= row < n_rows:
        raise GoalError(f"row {row} is outside a file of {n_rows} rows")
    if n_rows <= GSM8K_DEV + GSM8K_HELDOUT:
        raise GoalError(f"a GSM8K file of {n_rows} rows is too small to split: dev and held-out take the last "
                        f"{GSM8K_DEV + GSM8K_HELDOUT}")
    if row >= n_rows - GSM8K_HELDOUT:
        return "heldout"
    if row >= n_rows - GSM8K_HELDOUT - GSM8K_DEV:
        return "dev"
    return "train"


def load_gsm8k(path: Path | str | None = None, split: Split | None = None) -> list[Goal]:
    """GSM8K word problems as goals; the answer is the number after ``####`` in the solution."""
    _check_split(split)
    file = resolve(path, GSM8K_ENV, GSM8K_DEFAULT, "GSM8K train.jsonl")
    lines = file.read_text(encoding="utf-8").splitlines()
    goals = []
    for row, line in enumerate(lines):
        where = f"{file}:{row + 1}"
        which = gsm8k_split(row, len(lines))
        if split is not None and which != split:
            continue
        try:
            record = json.loads(line)
            question, solution = str(record["question"]), str(record["answer"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise GoalError(f"{where}: not a GSM8K record (a JSON object with question and answer): {e}") from None
        final = solution.rsplit("####", 1)[1].strip() if "####" in solution else ""
        value = parse_number(final)
        if value is None:
            raise GoalError(f"{where}: the solution does not end with '#### <number>' (found {final!r})")
        goals.append(Goal(f"gsm8k-{which}-{row:04d}", "gsm8k", which, question.strip() + " Answer with the number.",
                          format_number(value), Check("numeric"), {"row": row, "solution": solution}))
    return goals


# ---- Game of 24 --------------------------------------------------------------------------------

def game24_split(index: int, n_rows: int) -> Split:
    """Which split a puzzle is in, by its position in the file (0-based; the file runs easy to hard).

    The easier half (index < n_rows // 2) is train. In the harder half, counting from its first row,
    every third row starting with the second is dev, every third starting with the third is held-out,
    and the rest are train. In the 1,262-row file: dev and held-out 210 each, train 842.
    """
    if not 0 <= index < n_rows:
        raise GoalError(f"puzzle {index} is outside a file of {n_rows} puzzles")
    half = n_rows // 2
    if index < half:
        return "train"
    return ("train", "dev", "heldout")[(index - half) % 3]


def solve24(numbers: Sequence[int], target: Fraction = Fraction(24)) -> str | None:
    """One expression that makes ``target`` from ``numbers`` (each once, + - * /), exactly; None if none."""

    def search(items: list[tuple[Fraction, str]]) -> str | None:
        if len(items) == 1:
            return items[0][1] if items[0][0] == target else None
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                (a, ea), (b, eb) = items[i], items[j]
                rest = items[:i] + items[i + 1:j] + items[j + 1:]
                results = [(a + b, f"({ea} + {eb})"), (a * b, f"({ea} * {eb})"), (a - b, f"({ea} - {eb})"),
                           (b - a, f"({eb} - {ea})")]
                if b != 0:
                    results.append((a / b, f"({ea} / {eb})"))
                if a != 0:
                    results.append((b / a, f"({eb} / {ea})"))
                for value, expr in results:
                    found = search(rest + [(value, expr)])
                    if found is not None:
                        return found
        return None

    found = search([(Fraction(n), str(n)) for n in numbers])
    return found[1:-1] if found and found.startswith("(") else found


def game24_goal(numbers: str) -> str:
    """A puzzle's goal, as the agent is asked it (``numbers``: "4 6 8 8")."""
    return f"Use {numbers} once each with + - * / and parentheses to make 24. Answer with the expression."


def load_game24(path: Path | str | None = None, split: Split | None = None) -> list[Goal]:
    """Game of 24 puzzles as goals; the answer is an expression, checked by `check_expression`."""
    _check_split(split)
    file = resolve(path, GAME24_ENV, GAME24_DEFAULT, "Game of 24 CSV")
    try:
        puzzles = load_puzzles(file)
    except PuzzleError as e:
        raise GoalError(str(e)) from None
    goals = []
    for p in puzzles:
        which = game24_split(p.index, len(puzzles))
        if split is not None and which != split:
            continue
        solution = solve24(p.numbers)
        if solution is None:
            raise GoalError(f"{file}: puzzle {p.index} ({p.text}) cannot make 24; remove it from the file")
        text = game24_goal(p.text)
        goals.append(Goal(f"game24-{which}-{p.index:04d}", "game24", which, text, solution,
                          Check("expression", numbers=p.numbers), {"index": p.index, "rank": p.rank}))
    return goals
