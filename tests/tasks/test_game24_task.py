from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from stackmind.tasks import Game24, PuzzleError, TextGoal, check_expression, load_puzzles, read_verdicts
from stackmind.tasks.game24 import answer_expression, apply_step, parse_range

F = Fraction


def items(*nums: int | str) -> tuple[tuple[Fraction, str], ...]:
    return tuple((F(n), str(n)) for n in nums)


# ---- the verifier ------------------------------------------------------------------------------

def test_valid_step_computes_what_is_left_itself() -> None:
    move = apply_step("10 - 4 = 6 (left: 1 2 3)", items(4, 9, 10, 13))  # the model's "left" is wrong
    assert move is not None
    assert [v for v, _ in move.left] == [6, 9, 13]
    assert move.text == "10 - 4 = 6 (left: 6 9 13)"
    assert dict((v, e) for v, e in move.left)[F(6)] == "(10 - 4)"


@pytest.mark.parametrize("line", [
    "10 - 4 = 7 (left: 7 9 13)",   # wrong arithmetic
    "10 - 5 = 5 (left: 5 9 13)",   # 5 is not among the numbers
    "4 + 4 = 8 (left: 8 9 10 13)",  # 4 used twice, only one 4
    "13 / 0 = 0",                 # no zero to divide by, and no division by zero
    "the answer is 24",
    "",
])
def test_invalid_steps_are_discarded(line: str) -> None:
    assert apply_step(line, items(4, 9, 10, 13)) is None


def test_division_by_zero_is_discarded() -> None:
    assert apply_step("5 / 0 = 0", items(0, 5)) is None


def test_exact_fractions_and_rounded_decimals() -> None:
    move = apply_step("8 / 3 = 8/3 (left: 8/3 3)", items(3, 3, 8))
    assert move is not None and F(8, 3) in [v for v, _ in move.left]
    rounded = apply_step("8 / 3 = 2.67 (left: 2.67 3)", items(3, 3, 8))
    assert rounded is not None and F(8, 3) in [v for v, _ in rounded.left]  # the exact value is kept
    assert apply_step("8 / 3 = 2.7 (left: 2.7 3)", items(3, 3, 8)) is not None  # 1 digit, rounded right
    assert apply_step("8 / 3 = 2.6 (left: 2.6 3)", items(3, 3, 8)) is None
    # a fraction left over can be used again, written as a/b
    nxt = apply_step("3 * 8/3 = 8", move.left)
    assert nxt is not None and [v for v, _ in nxt.left] == [8]


def test_step_formats_models_write() -> None:
    for line in ("Step 1: 4 × 6 = 24 (left: 24)", "1. 4 * 6 = 24", "- 6 * 4 = 24 (left: 24)", "(4 * 6) = 24"):
        assert apply_step(line, items(4, 6)) is not None, line
    neg = apply_step("4 - 6 = -2 (left: -2)", items(4, 6))
    assert neg is not None and neg.left[0][0] == -2


def test_check_expression() -> None:
    assert check_expression("(10 - 4) * (13 - 9)", [4, 9, 10, 13])
    assert check_expression("(10 - 4) * (13 - 9) = 24", [13, 10, 9, 4])
    assert check_expression("8 / (3 - 8 / 3)", [3, 3, 8, 8])  # needs exact fractions
    assert not check_expression("(10 - 4) * (13 - 9)", [4, 9, 10, 12])  # other numbers
    assert not check_expression("4 * 6", [4, 6, 1, 1])  # numbers unused
    assert not check_expression("(1 + 1) * 12", [1, 12, 1, 1])
    assert not check_expression("2 ** 3 * 3", [2, 3, 3])  # no powers
    assert not check_expression("__import__('os').getcwd()", [1])  # parsed, never run
    assert not check_expression("24 / 0", [24, 0])
    assert not check_expression("(4 * 6", [4, 6])
    assert answer_expression("Thought...\nAnswer: (10 - 4) * (13 - 9) = 24") == "(10 - 4) * (13 - 9)"


# ---- the task ----------------------------------------------------------------------------------

def test_task_children_merge_and_drop_bad_lines() -> None:
    task = Game24([4, 9, 10, 13])
    root = task.root()
    text = ("10 - 4 = 6 (left: 6 9 13)\n4 + 9 = 14 (left: 10 13 14)\n13 - 9 = 5 (left: 4 5 10)\n"
            "9 - 3 = 6 (left: 4 6 10 13)\n4 - 10 = -6 (left: -6 9 13)\n")
    kids = task.children(root, [text, "10 - 4 = 6 (left: 6 9 13)\n"])
    assert [k.thoughts[-1] for k in kids] == ["10 - 4 = 6 (left: 6 9 13)", "4 - 10 = -6 (left: -6 9 13)"]
    assert kids[0].key == (6, 9, 13)
    assert "Numbers: 6 9 13\nNext steps:" in task.propose_prompt(kids[0])


def test_final_state_is_verified() -> None:
    task = Game24([4, 9, 10, 13])
    s = task.root()
    for line in ("10 - 4 = 6", "13 - 9 = 4", "6 * 4 = 24"):
        (s,) = task.children(s, [line])
    assert task.is_final(s) and task.outcome(s) == 1.0
    assert task.answer(s) == "(10 - 4) * (13 - 9) = 24"
    s2 = task.root()
    for line in ("10 - 4 = 6", "13 - 9 = 4", "6 + 4 = 10"):
        (s2,) = task.children(s2, [line])
    assert task.outcome(s2) == 0.0 and task.outcome(task.root()) is None


def test_read_verdicts() -> None:
    assert read_verdicts(["Verdict: sure"] * 3) == 1.0
    assert read_verdicts(["impossible", "impossible", "sure"]) == pytest.approx(1 / 3)
    assert read_verdicts(["at first impossible... no: sure"]) == 1.0  # the last verdict named counts
    assert read_verdicts(["unlikely"]) == 0.0
    assert 0 < read_verdicts(["no idea"]) < read_verdicts(["likely"])


def test_text_goal_parses_thoughts_and_answers() -> None:
    task = TextGoal("What is 2 + 3?", verify=lambda a: float(a.strip() == "5"))
    kids = task.children(task.root(), ["1. Add the numbers\n2. Final answer: 5\n- Final answer: 6\n"])
    assert [k.thoughts[-1] for k in kids] == ["Add the numbers", "Final answer: 5", "Final answer: 6"]
    assert [task.is_final(k) for k in kids] == [False, True, True]
    assert [task.outcome(k) for k in kids] == [None, 1.0, 0.0]


# ---- puzzle files ------------------------------------------------------------------------------

CSV = """Rank,Puzzles,AMT (s),Solved rate,1-sigma Mean (s),1-sigma STD (s)
1,1 1 4 6,4.4,99.20%,4.67,1.48
2,1 1 11 11,4.41,99.60%,4.68,1.45
3,1 1 3 8,4.45,99.20%,4.69,1.48
4,4 9 10 13,5.1,97.00%,5.0,1.2
"""


def test_load_puzzles_and_ranges(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(CSV)
    all_ = load_puzzles(path)
    assert [p.numbers for p in all_] == [(1, 1, 4, 6), (1, 1, 11, 11), (1, 1, 3, 8), (4, 9, 10, 13)]
    assert [p.rank for p in all_] == [1, 2, 3, 4]
    assert [p.text for p in load_puzzles(path, "1:3")] == ["1 1 11 11", "1 1 3 8"]
    assert [p.index for p in load_puzzles(path, "2:")] == [2, 3]
    assert parse_range(":2") == slice(None, 2)
    with pytest.raises(PuzzleError, match="A:B"):
        load_puzzles(path, "3-4")
    with pytest.raises(PuzzleError, match="selects no puzzle"):
        load_puzzles(path, "10:20")
    with pytest.raises(PuzzleError, match="empty"):
        parse_range("3:1")


def test_puzzle_file_errors_say_where(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("Rank,Puzzles\n1,1 2 3 4\n2,1 2 x 4\n")
    with pytest.raises(PuzzleError, match=r"bad.csv:3: .*whole numbers"):
        load_puzzles(bad)
    bad.write_text("Rank,Puzzles\n1,1 2 3\n")
    with pytest.raises(PuzzleError, match=r"bad.csv:2: .*3 numbers"):
        load_puzzles(bad)
    bad.write_text("Rank,Numbers\n1,1 2 3 4\n")
    with pytest.raises(PuzzleError, match="no 'Puzzles' column"):
        load_puzzles(bad)
    with pytest.raises(PuzzleError, match="no such file"):
        load_puzzles(tmp_path / "missing.csv")


DEV = Path(__file__).resolve().parents[3] / "shared" / "data" / "game24" / "game24_dev.csv"


@pytest.mark.skipif(not DEV.is_file(), reason="the shared dev CSV is not on this machine")
def test_dev_file_loads() -> None:
    puzzles = load_puzzles(DEV)
    assert len(puzzles) > 1000 and all(len(p.numbers) == 4 for p in puzzles)
