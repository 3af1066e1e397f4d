"""The goal suite: goals with verifiers, in families, split into train, dev and held-out.

::

    from stackmind.tasks.goals import families, load_goals

    goals = load_goals("arithmetic", "dev")        # list[Goal]
    goals[0].text    # 'What is the product of 9207 and 34967? Answer with the number.'
    goals[0].verify("Final answer: **321,941,169**")   # 1.0

- Built-in families (`BUILTIN`): arithmetic, word, strings, dates, lists, units, code. Generated
  from templates with fixed seeds (`stackmind.tasks.goals.generators`, written by
  ``bench/make_goals.py``) and shipped as ``data/<family>.jsonl`` in the package.
- External families (`EXTERNAL`): gsm8k and game24, read from the shared data files where they lie
  (`stackmind.tasks.goals.external`); asked for by name, never part of ``load_goals()`` with no family.

Splits: ``train`` is for practice (the learning cycle trains on it), ``dev`` for measuring while
developing, ``heldout`` for the figures a change is judged by. No goal text is in two splits.
docs/goals.md has the families, the file format and the verifiers' rules.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from stackmind.tasks.goals.external import (
    game24_split,
    gsm8k_split,
    load_game24,
    load_gsm8k,
    solve24,
)
from stackmind.tasks.goals.goal import CHECK_KINDS, SPLITS, Check, CheckKind, Goal, GoalError, Split

BUILTIN: tuple[str, ...] = ("arithmetic", "word", "strings", "dates", "lists", "units", "code")
EXTERNAL: tuple[str, ...] = ("gsm8k", "game24")

__all__ = [
    "BUILTIN", "CHECK_KINDS", "EXTERNAL", "SPLITS", "Check", "CheckKind", "Goal", "GoalError", "Split",
    "data_file", "families", "game24_split", "gsm8k_split", "load_game24", "load_goals", "load_gsm8k",
    "read_goals", "solve24",
]


def families() -> list[str]:
    """Every family `load_goals` knows: the built-in ones, then the external ones."""
    return [*BUILTIN, *EXTERNAL]


def data_file(family: str) -> Path:
    """Where a built-in family's goals are shipped (inside the package)."""
    return Path(str(resources.files("stackmind.tasks.goals") / "data" / f"{family}.jsonl"))


def read_goals(path: Path | str, family: str | None = None) -> list[Goal]:
    """Goals from a JSON-lines file in the suite's format (one goal a line; see docs/goals.md)."""
    path = Path(path)
    if not path.is_file():
        raise GoalError(f"{path}: no such goal file; run `python bench/make_goals.py` to write the suite's files")
    goals: list[Goal] = []
    ids: set[str] = set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            goal = Goal.from_dict(json.loads(line))
        except json.JSONDecodeError as e:
            raise GoalError(f"{path}:{n}: not JSON ({e.msg})") from None
        except GoalError as e:
            raise GoalError(f"{path}:{n}: {e}") from None
        if family is not None and goal.family != family:
            raise GoalError(f"{path}:{n}: goal {goal.id} is of family {goal.family!r}, not {family!r}")
        if goal.id in ids:
            raise GoalError(f"{path}:{n}: goal id {goal.id} appears twice")
        ids.add(goal.id)
        goals.append(goal)
    return goals


def load_goals(family: str | None = None, split: Split | None = None, *, path: Path | str | None = None) -> list[Goal]:
    """Goals of one family (all built-in families when ``family`` is None), of one split or all.

    ``path``: for gsm8k and game24, the data file to read (else ``$STACKMIND_GSM8K`` /
    ``$STACKMIND_GAME24``, else the shared data folder); for a built-in family, a JSON-lines file to
    read instead of the shipped one.
    """
    if split is not None and split not in SPLITS:
        raise GoalError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    if family is None:
        if path is not None:
            raise GoalError("path= reads one family's file: name the family too")
        return [g for f in BUILTIN for g in load_goals(f, split)]
    if family == "gsm8k":
        return load_gsm8k(path, split)
    if family == "game24":
        return load_game24(path, split)
    if family not in BUILTIN:
        raise GoalError(f"no goal family {family!r}: the families are {', '.join(families())}")
    goals = read_goals(path if path is not None else data_file(family), family)
    return [g for g in goals if split is None or g.split == split]
