"""The goal suite: counts, splits, determinism, and verifiers that accept right answers however a model
writes them and reject wrong ones. GSM8K and Game of 24 use the shared data files (skipped, saying
why, where they are absent); the code family's programs are run in the real sandbox (slow)."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date, timedelta
from fractions import Fraction
from pathlib import Path

import pytest

from stackmind.errors import StackmindError
from stackmind.tasks import answers
from stackmind.tasks.goals import (
    BUILTIN,
    SPLITS,
    Check,
    Goal,
    GoalError,
    families,
    game24_split,
    gsm8k_split,
    load_goals,
    read_goals,
    solve24,
)
from stackmind.tasks.goals.external import GAME24_DEFAULT, GSM8K_DEFAULT
from stackmind.tasks.goals.generators import COUNTS, dumps, generate, generate_suite
from stackmind.tasks.goals.generators.base import content_key

SUITE = {family: load_goals(family) for family in BUILTIN}
ALL = [g for goals in SUITE.values() for g in goals]
NEEDS_GSM8K = pytest.mark.skipif(not GSM8K_DEFAULT.is_file(),
                                 reason=f"the GSM8K train file is not at {GSM8K_DEFAULT} (see its README)")
NEEDS_GAME24 = pytest.mark.skipif(not GAME24_DEFAULT.is_file(),
                                  reason=f"the Game of 24 CSV is not at {GAME24_DEFAULT}")


def norm(text: str) -> str:
    return " ".join(text.split()).casefold()


# ---- the suite's shape -------------------------------------------------------------------------

def test_families_are_the_seven_built_in_then_the_external_ones() -> None:
    assert families() == ["arithmetic", "word", "strings", "dates", "lists", "units", "code", "gsm8k", "game24"]


@pytest.mark.parametrize("family", BUILTIN)
def test_counts_per_split(family: str) -> None:
    counts = Counter(g.split for g in SUITE[family])
    assert counts == Counter(COUNTS)
    assert counts["train"] >= 40 and counts["dev"] + counts["heldout"] >= 30
    assert all(g.family == family for g in SUITE[family])


def test_load_goals_filters_by_split_and_loads_every_built_in_family_by_default() -> None:
    dev = load_goals(split="dev")
    assert len(dev) == len(BUILTIN) * COUNTS["dev"] and {g.split for g in dev} == {"dev"}
    assert len(load_goals()) == len(ALL)
    assert [g.id for g in load_goals("units", "heldout")] == [g.id for g in SUITE["units"] if g.split == "heldout"]


def test_ids_are_unique_and_name_family_and_split() -> None:
    assert len({g.id for g in ALL}) == len(ALL)
    for g in ALL:
        assert re.fullmatch(rf"{g.family}-{g.split}-\d{{3}}", g.id), g.id


def test_no_goal_text_is_in_two_splits() -> None:
    where: dict[str, set[str]] = {}
    for g in ALL:
        where.setdefault(norm(g.text), set()).add(g.split)
    assert all(len(splits) == 1 for splits in where.values())
    assert len(where) == len(ALL)  # not even twice within one split


@pytest.mark.parametrize("family", BUILTIN)
def test_every_split_holds_every_template(family: str) -> None:
    templates = {split: {g.data["template"] for g in SUITE[family] if g.split == split} for split in SPLITS}
    assert templates["dev"] == templates["heldout"] == templates["train"]
    assert len(templates["dev"]) >= 4


def test_no_goal_is_another_in_other_words() -> None:
    """Same template, same literals ('Reverse the word banana' / 'Write banana backwards'): one goal."""
    for family, goals in SUITE.items():
        keys = Counter(content_key(g.data["template"], g.text) for g in goals)
        assert max(keys.values()) == 1, (family, keys.most_common(1))
    assert content_key("t", "Reverse the word 'banana'.") == content_key("t", "Write 'banana' backwards.")
    assert content_key("t", "What day is March 7, 2028?") == content_key("t", "Which day is 2028-03-07?")
    assert content_key("t", "How many days are in May 1993?") != content_key("t", "How many days are in June 1993?")


def test_every_goal_says_what_form_the_answer_takes() -> None:
    for g in ALL:
        assert re.search(r"Answer (with|yes or no)[^.]*\.$", g.text), g.text


def skeleton(text: str) -> str:
    """A goal's text with its numbers, quoted strings and lists blanked out: what a template says."""
    text = re.sub(r"\[[^\]]*\]|'[^']*'|\"[^\"]*\"", "S", text)
    return re.sub(r"-?\d[\d,.]*", "#", text)


@pytest.mark.parametrize("family", BUILTIN)
def test_each_family_varies_its_phrasing(family: str) -> None:
    """Dev and held-out are not one template with the numbers changed: many different skeletons."""
    for split in ("dev", "heldout"):
        shapes = {skeleton(g.text) for g in SUITE[family] if g.split == split}
        assert len(shapes) >= 10, (family, split, shapes)


def test_shipped_files_are_what_the_generators_write() -> None:
    fresh = generate_suite()
    assert list(fresh) == list(BUILTIN)
    for family, goals in fresh.items():
        assert [g.to_dict() for g in goals] == [g.to_dict() for g in SUITE[family]], \
            f"{family}.jsonl is stale: run python bench/make_goals.py and commit"


def test_generation_is_deterministic() -> None:
    assert dumps(generate("dates")) == dumps(generate("dates"))


def test_every_expected_answer_verifies() -> None:
    failed = [g.id for g in ALL if g.verify(g.answer) != 1.0]
    assert not failed


def test_goal_round_trips_through_its_dict() -> None:
    for g in ALL[::37]:
        again = Goal.from_dict(json.loads(json.dumps(g.to_dict())))
        assert again == g and again.data == g.data


# ---- right answers, written as models write them -----------------------------------------------

def phrasings(g: Goal) -> list[str]:
    a = g.answer
    out = [a, f"Final answer: {a}", f"{a}.", f"The answer is {a}", f"**{a}**", f"The answer is **{a}**.",
           f"Final answer:\n\n{a}", f"Answer: `{a}`", f"Let me think.\nStep 1: work it out.\nFinal answer: {a}"]
    kind = g.check.kind
    if kind != "list":
        out += [f'"{a}"', f"\\boxed{{{a}}}"]
    if kind == "numeric":
        x = answers.normalize_number(a)
        assert x is not None
        if x.denominator == 1 and abs(x) >= 1000:
            out += [f"Final answer: {x.numerator:,}"]
        if g.family == "word" and "dollars" in g.text:
            out += [f"Final answer: ${a}", f"The answer is ${a}."]
        out += [f"So the result is {a}.", f"Final answer: {a} (after checking)"]
    if kind == "date":
        d = date.fromisoformat(a)
        out += [f"Final answer: {d:%B} {d.day}, {d.year}", f"It is {d.day} {d:%B} {d.year}.",
                f"Final answer: {d:%A}, {d:%B} {d.day}, {d.year}"]
    if kind == "choice":
        out += [f"It is a {a}.", f"Final answer: {a.lower()}", f"{a.upper()}"]
        if len(a) > 3:
            out += [f"Final answer: {a[:3]}"]
    if kind == "list":
        items = answers.split_list(a)
        out += ["[" + ", ".join(items) + "]", "Final answer: " + " ".join(items), ", ".join(items[:-1]) + " and " + items[-1]]
    if kind == "exact":
        out += [f'The result is "{a}".', f"Final answer: '{a}'"]
    if g.family == "code":
        out += [f"The code prints {a}", f"Output: {a}"]
    return out


def test_model_phrasings_of_right_answers_verify() -> None:
    failed = [(g.id, p) for g in ALL for p in phrasings(g) if g.verify(p) != 1.0]
    assert not failed, failed[:10]


# ---- wrong answers -----------------------------------------------------------------------------

def wrong(g: Goal) -> list[str]:
    a, kind = g.answer, g.check.kind
    out = ["", "I don't know.", "Final answer: ", "None"]
    if kind == "numeric":
        x = answers.normalize_number(a)
        assert x is not None
        step = Fraction(1) if g.check.tolerance < 1 else Fraction(10)
        off = x + step + Fraction(str(g.check.tolerance))
        out += [answers.format_number(off), answers.format_number(x * 10 if x else 7), answers.format_number(-x - 1),
                f"{answers.format_number(x - 1)}, {a}, {answers.format_number(off)}",  # a list that holds it,
                f"Candidates: {answers.format_number(off)}, {answers.format_number(x - 1)}, {a}",  # last, too
                f"Final answer: {a} or {answers.format_number(off)}", f"{a} {answers.format_number(off)}"]
    if kind == "exact":
        out += [a + "x", a[::-1] + "q" if len(a) > 1 else "zz", f"{a} {a}"]
        if g.check.case_sensitive and a.lower() != a:
            out.append(a.lower())
    if kind == "choice":
        others = [o for o in g.check.options if o.casefold() != a.casefold()]
        out += [others[0], f"Final answer: {others[-1]}", f"{a} or {others[0]}"]
    if kind == "date":
        d = date.fromisoformat(a)
        out += [(d + timedelta(days=1)).isoformat(), f"{a} or {(d - timedelta(days=1)).isoformat()}",
                f"{a[:4]}"]
    if kind == "list":
        items = answers.split_list(a)
        out += [", ".join(items[:-1]), ", ".join(reversed(items)) if len(set(items)) > 1 else a + ", 0",
                ", ".join(items + items[-1:])]
    return out


def test_wrong_answers_do_not_verify() -> None:
    passed = [(g.id, w) for g in ALL for w in wrong(g) if g.verify(w) != 0.0]
    assert not passed, passed[:10]
    assert all(g.verify(None) == 0.0 for g in ALL)


# ---- the readers, one case at a time -----------------------------------------------------------

@pytest.mark.parametrize(("text", "value"), [
    ("Final answer: 391", 391), ("391.", 391), ("The answer is 391", 391), ("$1,234.50", Fraction(2469, 2)),
    ("**391**", 391), ("17 * 23 = 391", 391), ("The answer is $18.", 18), ("−40 °F", -40), ("2/3", Fraction(2, 3)),
    ("\\boxed{42}", 42), ("Final answer:\n42 apples", 42), ("about 3.50 hours", Fraction(7, 2)), ("1.5e3", 1500),
    ("Reasoning: 4 + 5 = 9, then 9 * 2 = 18.\nFinal answer: 18", 18), ("25%", 25),
    ("Final answer: 18\nI hope this answer is helpful.", 18), ("The printer prints 30 pages, so the answer is 60.", 60),
    ("#### 1,080", 1080),
    ("12, 15, 391", None), ("5 hours 30 minutes", None), ("1,2,3", None), ("no idea", None), ("", None),
    ("Final answer: 7 or 8", None),
])
def test_normalize_number(text: str, value: int | Fraction | None) -> None:
    assert answers.normalize_number(text) == value


def test_large_numbers_compare_exactly() -> None:
    g = Goal("t", "arithmetic", "dev", "What is 123456789 * 987654321?", "121932631112635269", Check("numeric"))
    assert g.verify("121,932,631,112,635,269") == 1.0
    assert g.verify("121932631112635268") == 0.0  # equal as floats; not equal


def test_tolerance_is_the_largest_difference_that_passes() -> None:
    g = Goal("t", "units", "dev", "Convert.", "93.21", Check("numeric", tolerance=0.01))
    assert [g.verify(x) for x in ("93.21", "93.2", "93.22", "93.205", "93.23", "93.19")] == [1, 1, 1, 1, 0, 0]


def test_a_float_printed_with_its_rounding_error_passes_and_nothing_else_does() -> None:
    g = Goal("t", "gsm8k", "dev", "How much?", "1920", Check("numeric"))
    assert g.verify("1920.0000000000001") == 1.0 and g.verify("0.30000000000000004 + 1919.7") == 0.0
    assert g.verify("1920.000000001") == 0.0  # nine decimals: written, not float noise
    assert g.verify("1920.00001") == 0.0 and g.verify("1919.9999999999998") == 1.0
    big = Goal("t", "arithmetic", "dev", "What?", "121932631112635269", Check("numeric"))
    assert big.verify("121932631112635268.0000000000") == 0.0  # rounding noise is below a unit, never a unit


def test_last_number_is_the_last() -> None:
    assert answers.last_number("Final answer: 32.40 dollars") == Fraction("32.4")
    assert answers.last_number("1, 2 and 3,000") == 3000
    assert answers.last_number("none") is None


def test_choice_reads_one_option_and_prefixes() -> None:
    g = Goal("t", "dates", "dev", "Which day?", "Wednesday", Check("choice", options=("Monday", "Wednesday")))
    assert g.verify("Wed") == 1.0 and g.verify("It was a Wednesday, March 3.") == 1.0
    assert g.verify("Monday or Wednesday") == 0.0 and g.verify("We") == 0.0
    leap = Goal("t", "dates", "dev", "Leap?", "no", Check("choice", options=("yes", "no")))
    assert leap.verify("No, 1900 is not a leap year.") == 1.0
    assert leap.verify("Yes") == 0.0 and leap.verify("yes and no") == 0.0 and leap.verify("yesterday") == 0.0


def test_exact_keeps_case_when_asked_and_takes_a_trailing_quote() -> None:
    title = Goal("t", "strings", "dev", "Title case.", "The Quick Brown Fox", Check("exact", case_sensitive=True))
    assert title.verify("Final answer: The Quick Brown Fox.") == 1.0
    assert title.verify("the quick brown fox") == 0.0
    rev = Goal("t", "strings", "dev", "Reverse.", "olleh", Check("exact"))
    assert rev.verify('Reversed, "hello" is "olleh".') == 1.0 and rev.verify("OLLEH") == 1.0
    assert rev.verify('"olleh" is not it, it is "hello"') == 0.0


def test_dates_in_many_forms() -> None:
    assert answers.parse_dates("Friday, March 15th, 2024") == [date(2024, 3, 15)]
    assert answers.parse_dates("15 of March 2024; 2024/3/15; 1 Feb. 2020") == [date(2024, 3, 15), date(2024, 3, 15),
                                                                               date(2020, 2, 1)]
    assert answers.parse_dates("03/04/2024 or 2023-02-30") == []  # ambiguous, and no such day


def test_split_list_and_format_number() -> None:
    assert answers.split_list("[3, 5 and 8]") == ["3", "5", "8"]
    assert answers.split_list("3; 5; 8") == answers.split_list("3 5 8") == ["3", "5", "8"]
    assert answers.split_list("['a', 'b']") == ["a", "b"]
    assert answers.format_number(Fraction(25, 2)) == "12.5"
    assert answers.format_number(Fraction(1, 3), 2) == "0.33"
    assert answers.format_number(Fraction(2675, 1000), 2) == "2.68"  # half up
    assert answers.format_number(Fraction(-1, 2)) == "-0.5"


def test_check_validates_itself() -> None:
    with pytest.raises(GoalError, match="unknown check kind"):
        Check("fuzzy")  # type: ignore[arg-type]
    with pytest.raises(GoalError, match="options"):
        Check("choice")
    assert issubclass(GoalError, StackmindError)


# ---- files and errors --------------------------------------------------------------------------

def test_read_goals_says_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "mine.jsonl"
    good = json.dumps(SUITE["word"][0].to_dict())
    f.write_text(good + "\n{not json\n", encoding="utf-8")
    with pytest.raises(GoalError, match=r"mine\.jsonl:2: not JSON"):
        read_goals(f)
    f.write_text(good + "\n" + good + "\n", encoding="utf-8")
    with pytest.raises(GoalError, match=r"mine\.jsonl:2: goal id .* twice"):
        read_goals(f)
    f.write_text(json.dumps({**SUITE["word"][0].to_dict(), "split": "test"}) + "\n", encoding="utf-8")
    with pytest.raises(GoalError, match=r"mine\.jsonl:1: split 'test'"):
        read_goals(f)
    f.write_text(good + "\n", encoding="utf-8")
    assert load_goals("word", path=f) == [SUITE["word"][0]]


def test_unknown_family_and_split() -> None:
    with pytest.raises(GoalError, match="no goal family 'poetry'.*gsm8k"):
        load_goals("poetry")
    with pytest.raises(GoalError, match="split 'test'"):
        load_goals("word", "test")  # type: ignore[arg-type]


# ---- GSM8K -------------------------------------------------------------------------------------

def test_gsm8k_split_is_the_last_thousand_rows() -> None:
    n = 7473
    splits = [gsm8k_split(i, n) for i in range(n)]
    assert Counter(splits) == {"train": 6473, "dev": 500, "heldout": 500}
    assert splits[6472] == "train" and splits[6473] == "dev" and splits[6972] == "dev" and splits[6973] == "heldout"
    with pytest.raises(GoalError, match="too small"):
        gsm8k_split(0, 900)


def test_gsm8k_missing_file_says_where_to_put_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKMIND_GSM8K", str(tmp_path / "nowhere.jsonl"))
    with pytest.raises(GoalError, match=r"nowhere\.jsonl: no GSM8K .*STACKMIND_GSM8K"):
        load_goals("gsm8k", "dev")


def test_gsm8k_reads_the_file_the_environment_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "made_up.jsonl"
    rows = [{"question": f"Ann has {i} pens and buys 2 more. How many pens?", "answer": f"{i}+2={i + 2}\n#### {i + 2:,}"}
            for i in range(1003)]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    monkeypatch.setenv("STACKMIND_GSM8K", str(f))
    goals = load_goals("gsm8k")
    assert Counter(g.split for g in goals) == {"train": 3, "dev": 500, "heldout": 500}
    g = load_goals("gsm8k", "heldout")[-1]
    assert g.id == "gsm8k-heldout-1002" and g.answer == "1004" and g.data["row"] == 1002
    assert g.text == "Ann has 1002 pens and buys 2 more. How many pens? Answer with the number."
    assert g.verify("She has 1,004 pens.") == 1.0 and g.verify("1002") == 0.0
    f.write_text(json.dumps({"question": "q", "answer": "no final line"}) + "\n" + f.read_text(), encoding="utf-8")
    with pytest.raises(GoalError, match=r"made_up\.jsonl:1: .*####"):
        load_goals("gsm8k", path=f)


@NEEDS_GSM8K
def test_gsm8k_real_file_split_and_answers() -> None:
    goals = load_goals("gsm8k")
    by = {s: [g for g in goals if g.split == s] for s in SPLITS}
    assert {s: len(v) for s, v in by.items()} == {"train": 6473, "dev": 500, "heldout": 500}
    assert (by["dev"][0].id, by["dev"][-1].id) == ("gsm8k-dev-6473", "gsm8k-dev-6972")
    assert (by["heldout"][0].id, by["heldout"][-1].id) == ("gsm8k-heldout-6973", "gsm8k-heldout-7472")
    assert goals[0].answer == "72" and goals[0].text.endswith("in April and May? Answer with the number.")
    texts = [{norm(g.text) for g in v} for v in by.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    for g in goals:
        assert g.answer == answers.format_number(answers.parse_number(g.data["solution"].rsplit("####", 1)[1]))
        assert g.verify(f"Final answer: {g.answer}") == 1.0
    assert load_goals("gsm8k", "dev") == by["dev"]


# ---- Game of 24 --------------------------------------------------------------------------------

def test_game24_split_by_position() -> None:
    splits = [game24_split(i, 1262) for i in range(1262)]
    assert Counter(splits) == {"train": 842, "dev": 210, "heldout": 210}
    assert set(splits[:631]) == {"train"}
    assert splits[631:637] == ["train", "dev", "heldout", "train", "dev", "heldout"]


def test_game24_verifier_uses_the_exact_check() -> None:
    g = Goal("t", "game24", "dev", "Use 4 6 8 8 ...", "(4 * 6) + (8 - 8)", Check("expression", numbers=(4, 6, 8, 8)))
    for right in ("(6 - 4) * 8 + 8", "Final answer: (6 − 4) × 8 + 8 = 24", "**4 * 6 * (8 / 8)**",
                  "24 = 4 * 6 * (8 / 8)", "Answer: 4 x 6 + 8 - 8"):
        assert g.verify(right) == 1.0, right
    for bad in ("(8 - 6) * 8 + 8", "(6 - 4) * 8 + 6", "4 * 6", "4 * 6 + 8 - 8 - 0", "(8 + 8) + 6 + 4 = 24", "24", "4 * 6 * 8 * 8 = 24"):
        assert g.verify(bad) == 0.0, bad
    assert solve24((1, 1, 1, 1)) is None
    assert solve24((3, 3, 8, 8)) == "8 / (3 - (8 / 3))"


@NEEDS_GAME24
def test_game24_goals_from_the_csv() -> None:
    dev = load_goals("game24", "dev")
    heldout = load_goals("game24", "heldout")
    assert len(dev) == len(heldout) == 210
    assert not {g.text for g in dev} & {g.text for g in heldout}
    assert dev[0].id == "game24-dev-0632" and all(g.data["index"] >= 631 for g in dev + heldout)
    assert all(g.verify(g.answer) == 1.0 for g in dev)
    g = dev[0]
    assert g.text == f"Use {' '.join(map(str, g.check.numbers))} once each with + - * / and parentheses to make 24. " \
                     "Answer with the expression."


def test_game24_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(GoalError, match="STACKMIND_GAME24"):
        load_goals("game24", path=tmp_path / "none.csv")


# ---- the code family's programs, run in the sandbox --------------------------------------------

@pytest.mark.slow
def test_code_goals_print_what_they_expect() -> None:
    """Every program, run in the WebAssembly sandbox, prints exactly the goal's expected answer."""
    import os

    from stackmind.sandbox import Limits, Sandbox

    cache = Path(os.environ.get("STACKMIND_TEST_CACHE", Path.home() / ".cache" / "stackmind-test")) / "sandbox"
    goals = SUITE["code"]
    runner = ("import contextlib, io, json\nout = []\n"
              f"for src in json.loads({json.dumps(json.dumps([g.data['program'] for g in goals]))}):\n"
              "    buf = io.StringIO()\n    with contextlib.redirect_stdout(buf):\n        exec(src, {})\n"
              "    out.append(buf.getvalue())\nprint(json.dumps(out))\n")
    result = Sandbox(cache_dir=cache).run_python(runner, Limits(deadline_s=120))
    assert result.outcome == "ok", result.stderr
    printed = json.loads(result.stdout)
    mismatched = [(g.id, out, g.answer) for g, out in zip(goals, printed, strict=True) if out != g.answer + "\n"]
    assert not mismatched
    assert all(g.verify(out) == 1.0 for g, out in zip(goals, printed, strict=True))
