"""Slow-learning data from policies; the documented examples parse; matchers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stackmind.learning.trials import PolicyTestError, cases_for, last_number, matches
from stackmind.policies import Matcher, check, parse_policy, sft_examples
from stackmind.trace import Episode

REPO = Path(__file__).resolve().parents[2]


def _yaml_blocks(doc: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", (REPO / "docs" / doc).read_text(encoding="utf-8"), re.S)


def test_documented_policy_and_trace_parse() -> None:
    p = parse_policy(_yaml_blocks("policies.md")[0], "docs/policies.md")
    assert p.name == "simplify" and p.examples[1].split == "heldout"
    ep = Episode.from_text(_yaml_blocks("trace-format.md")[0])
    assert ep.steps[2].substeps[0].substeps[0].action == "@python(print(6 / (1 - 3 / 4)))"


def test_sft_examples_respect_weight_split_and_reward() -> None:
    policies = check([REPO / "policies"]).policies
    data = sft_examples(policies)
    by_policy = {p.name: p for p in policies}
    assert data and all(d.completion for d in data)
    assert not any("Alice has twice" in d.prompt for d in data)  # held-out examples stay out
    hc = [d for d in data if d.source.startswith("hindsight_compress:")]
    assert hc and all(d.weight == 2.0 for d in hc)
    n_train = sum(len(p.train_examples()) for p in by_policy.values() if p.training.slow)
    n_traj = sum(1 for p in by_policy.values() if p.training.slow for t in p.trajectories if t.reward > 0)
    assert len(data) == n_train + n_traj


@pytest.mark.parametrize("kind, value, answer, expected, ok", [
    ("exact", None, "Final answer.", "final answer", True),
    ("exact", None, "24950", "24951", False),
    ("contains", None, "the time is 12:15 then", "12:15", True),
    ("contains", "8 / (3 - 8 / 3)", "8/(3-8/3)", None, False),
    ("regex", r"=\s*24\b", "4 * 6 = 24", None, True),
    ("regex", r"=\s*24\b", "4 * 6 = 240", None, False),
    ("numeric", None, "so 32.40 dollars", "32.4", True),
    ("numeric", None, "259,200 seconds", "259200", True),
    ("numeric", None, "about 2/3", "0.6666666", True),
    ("numeric", None, "5 * 4.8 = 25", "24", False),
    ("numeric", None, "no number here", "3", False),
])
def test_matchers(kind: str, value: str | None, answer: str, expected: str | None, ok: bool) -> None:
    m = Matcher(kind=kind, value=value, tolerance=1e-3)  # type: ignore[arg-type]
    assert matches(m, answer, expected) is ok


def test_judge_matcher_asks_the_model() -> None:
    prompts: list[str] = []

    def judge(prompt: str) -> str:
        prompts.append(prompt)
        return "Yes." if "lower" in prompt.split("Answer given:")[1] else "no"

    m = Matcher(kind="judge", value="says the boiling point is lower")
    assert matches(m, "It is lower up there.", None, "boiling on a mountain", judge=judge)
    assert not matches(m, "higher", None, "boiling on a mountain", judge=judge)
    assert "Criterion: says the boiling point is lower" in prompts[0]
    with pytest.raises(PolicyTestError):
        matches(m, "x", None)


def test_no_answer_never_passes_and_numbers_parse() -> None:
    assert not matches(Matcher(kind="contains"), None, "x")
    assert last_number("1,234,567 and then 8") == 8 and last_number("1,234,567") == 1234567
    huge = "Final answer: " + "1234567890" * 40  # a model that looped on digits
    assert last_number(huge) == float("inf") and not matches(Matcher(kind="numeric"), huge, "3663")


def test_test_cases_never_push_the_tested_example() -> None:
    p = next(q for q in check([REPO / "policies"]).policies if q.name == "decompose")
    cases = cases_for(p, "all")
    assert len(cases) == len(p.examples)
    for _i, ex, pushed in cases:
        assert ex not in pushed.examples and len(pushed.examples) == len(p.examples) - 1
        assert pushed.source == p.source
    held = cases_for(p, "heldout")
    assert [ex.split for _, ex, _ in held] == ["heldout"]


@pytest.mark.slow
def test_search_expressions_examples_show_what_their_programs_print(settings) -> None:  # type: ignore[no-untyped-def]
    """Each worked example of @search_expressions is true: its program, run in the sandbox, prints the
    observation shown, and that expression uses the example's numbers once each to reach its target."""
    from fractions import Fraction

    from stackmind.tasks.game24 import check_expression
    from stackmind.tools import ToolContext
    from stackmind.tools.invocation import find_invocations
    from stackmind.tools.python import PythonTool

    policy = parse_policy((Path(__file__).resolve().parents[2] / "examples" / "policies" / "search_expressions.policy.yaml").read_text())
    assert len(policy.examples) >= 3
    tool = PythonTool(session=False)
    for e in policy.examples:
        numbers, target = re.match(r"Use ([\d ]+) once each .* to make (\d+)\.", e.goal).groups()
        call = find_invocations(e.response.split("Observation:")[0])[0]
        shown = re.search(r"Observation: (.+)", e.response).group(1).strip()
        printed = tool(call, ToolContext(settings=settings)).text.strip()
        assert printed == shown == e.answer
        assert check_expression(printed, [int(n) for n in numbers.split()], Fraction(int(target)))
        # taught on other puzzles than the Game of 24: another target, or another count of numbers
        assert int(target) != 24 and len(numbers.split()) != 4
