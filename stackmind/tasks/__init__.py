"""Task families with verifiers: what tree-of-thought search works on.

- `Task` (protocol) and `State` (a stack state: thoughts plus the task's facts), in ``base``;
- `Game24`: the Game of 24 with exact rational arithmetic, and its CSV loader, in ``game24``;
- `TextGoal`: an open goal in plain text, in ``text``.
"""

from __future__ import annotations

from stackmind.tasks.base import State, Task, ValueSpec, read_verdicts
from stackmind.tasks.game24 import Game24, Puzzle, PuzzleError, check_expression, load_puzzles
from stackmind.tasks.text import TextGoal

__all__ = [
    "Game24", "Puzzle", "PuzzleError", "State", "Task", "TextGoal", "ValueSpec", "check_expression",
    "load_puzzles", "read_verdicts",
]
