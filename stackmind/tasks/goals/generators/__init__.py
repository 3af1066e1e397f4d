"""The built-in families' generators and the writer of the suite's data files.

Each family is a module here with a ``TEMPLATES`` list (see `base`). `write_suite` draws every
family with its fixed seed and writes ``stackmind/tasks/goals/data/<family>.jsonl``; the files are
committed, and `bench/make_goals.py --check` says whether they still match the generators.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from stackmind.tasks.goals import data_file
from stackmind.tasks.goals.generators import arithmetic, code, dates, lists, strings, units, word
from stackmind.tasks.goals.generators.base import COUNTS, Draft, Template, build_family
from stackmind.tasks.goals.goal import Goal, GoalError

GENERATORS: dict[str, Sequence[Template]] = {
    "arithmetic": arithmetic.TEMPLATES,
    "word": word.TEMPLATES,
    "strings": strings.TEMPLATES,
    "dates": dates.TEMPLATES,
    "lists": lists.TEMPLATES,
    "units": units.TEMPLATES,
    "code": code.TEMPLATES,
}

__all__ = ["COUNTS", "GENERATORS", "Draft", "Template", "build_family", "dumps", "generate", "generate_suite",
           "write_suite"]


def generate(family: str) -> list[Goal]:
    """A built-in family's goals, drawn afresh (the same on every run)."""
    if family not in GENERATORS:
        raise GoalError(f"no generator for family {family!r}: the built-in families are {', '.join(GENERATORS)}")
    return build_family(family, GENERATORS[family])


def generate_suite() -> dict[str, list[Goal]]:
    return {family: generate(family) for family in GENERATORS}


def dumps(goals: Sequence[Goal]) -> str:
    """The data file's text: one goal a line, as JSON."""
    return "".join(json.dumps(g.to_dict(), ensure_ascii=False) + "\n" for g in goals)


def write_suite(folder: Path | None = None) -> dict[str, Path]:
    """Write ``<family>.jsonl`` for every built-in family (default: the package's data folder)."""
    written = {}
    for family, goals in generate_suite().items():
        path = folder / f"{family}.jsonl" if folder is not None else data_file(family)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps(goals), encoding="utf-8")
        written[family] = path
    return written
