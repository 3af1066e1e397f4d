"""Game of 24 states labelled exactly: for training and measuring the value model without a model.

From a puzzle, every state the search can reach is a sequence of verified steps written as the task
writes them (``a op b = c (left: ...)``). Its label is whether 24 can still be made from the numbers
left, decided by exhaustive search with exact fractions (`solvable`). These are the verifier's labels
(provenance ``game24-solver``), not a model's opinion; they mirror what a search tree's Monte-Carlo
labels converge to with every descendant explored.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterable, Sequence
from fractions import Fraction

from stackmind.tasks.base import State
from stackmind.tasks.game24 import TARGET, Game24, Move, Puzzle, combine, fmt
from stackmind.value.labels import Label


@functools.lru_cache(maxsize=65536)
def _solvable(nums: tuple[Fraction, ...]) -> bool:
    if len(nums) == 1:
        return nums[0] == TARGET
    for i, j in itertools.combinations(range(len(nums)), 2):
        rest = tuple(n for k, n in enumerate(nums) if k not in (i, j))
        a, b = nums[i], nums[j]
        for r in {combine(a, "+", b), combine(a, "*", b), combine(a, "-", b), combine(b, "-", a),
                  combine(a, "/", b), combine(b, "/", a)}:
            if r is not None and _solvable(tuple(sorted(rest + (r,)))):
                return True
    return False


def solvable(numbers: Iterable[Fraction | int]) -> bool:
    """Whether 24 can be made from ``numbers`` (each once, + - * /), decided exactly."""
    return _solvable(tuple(sorted(Fraction(n) for n in numbers)))


def moves(state: State) -> list[Move]:
    """Every distinct step from a Game of 24 state, written as the model is asked to write them."""
    items = Game24.left(state)
    out: list[Move] = []
    seen: set[tuple[Fraction, ...]] = set()
    for i, j in itertools.combinations(range(len(items)), 2):
        (a, ea), (b, eb) = sorted((items[i], items[j]), key=lambda t: t[0], reverse=True)
        rest = [it for k, it in enumerate(items) if k not in (i, j)]
        for op in "+-*/":
            r = combine(a, op, b)
            if r is None:
                continue
            left = tuple(sorted(rest + [(r, f"({ea} {op} {eb})")], key=lambda t: t[0]))
            key = tuple(v for v, _ in left)
            if key in seen:
                continue
            seen.add(key)
            out.append(Move(a, op, b, r, left))
    return out


def child(task: Game24, state: State, move: Move) -> State:
    return state.then(move.text, tuple(v for v, _ in move.left), items=move.left)


def puzzle_states(puzzle: Puzzle | Sequence[int], *, depths: Sequence[int] = (1, 2),
                  per_depth: int | None = None, rng: random.Random | None = None) -> list[Label]:
    """Labelled states of one puzzle at the given depths (1: three numbers left, 2: two left).

    ``per_depth`` caps how many states of each depth are kept (a random sample; all when None).
    """
    task = Game24(puzzle)
    rng = rng or random.Random(0)
    frontier = [task.root()]
    by_depth: dict[int, list[State]] = {}
    for depth in range(1, max(depths) + 1):
        frontier = [child(task, s, m) for s in frontier for m in moves(s)]
        by_depth[depth] = frontier
    out: list[Label] = []
    for depth in depths:
        states = by_depth[depth]
        if per_depth is not None and len(states) > per_depth:
            states = rng.sample(states, per_depth)
        for s in states:
            target = 1.0 if solvable(v for v, _ in Game24.left(s)) else 0.0
            out.append(Label(
                goal=task.goal, stack=list(s.thoughts[:-1]), thought=s.thoughts[-1], target=target,
                kind="verifier", source="game24-solver",
                meta={"puzzle": task.puzzle.text, "depth": depth,
                      "left": " ".join(fmt(v) for v, _ in Game24.left(s))},
            ))
    return out


def dataset(puzzles: Sequence[Puzzle | Sequence[int]], *, per_depth: int | None = 12, seed: int = 0,
            depths: Sequence[int] = (1, 2)) -> list[Label]:
    """Labelled states of many puzzles (``per_depth`` per depth per puzzle)."""
    rng = random.Random(seed)
    return [lab for p in puzzles for lab in puzzle_states(p, depths=depths, per_depth=per_depth, rng=rng)]


def random_puzzles(n: int, seed: int = 0, low: int = 1, high: int = 13) -> list[Puzzle]:
    """``n`` distinct random puzzles (four numbers in [low, high]), for when no puzzle file is at hand."""
    rng = random.Random(seed)
    pool = sorted(set(itertools.combinations_with_replacement(range(low, high + 1), 4)))
    return [Puzzle(p, None, i) for i, p in enumerate(rng.sample(pool, min(n, len(pool))))]
