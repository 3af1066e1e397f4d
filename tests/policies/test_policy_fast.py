"""Fast learning: which policies fire, by trigger, with the real offline MiniLM embedder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stackmind.embedder import embed as minilm
from stackmind.policies import (
    PolicyLibrary,
    check,
    estimate_prediction_error,
    parse_policy,
    policy_frames,
)
from stackmind.stack import Stack
from stackmind.storage import SQLiteStackStore

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def library() -> PolicyLibrary:
    report = check([REPO / "policies"])
    assert report.ok
    lib = PolicyLibrary(report.policies)
    # The real MiniLM, memoised per text so that the libraries the tests build share its work.
    model = minilm
    memo: dict[str, np.ndarray] = {}

    def embed(texts):  # type: ignore[no-untyped-def]
        missing = [t for t in dict.fromkeys(texts) if t not in memo]
        if missing:
            memo.update(zip(missing, model(missing), strict=True))
        return np.stack([memo[t] for t in texts])

    lib.selector(embed=embed)
    return lib


def names(lib: PolicyLibrary, goal: str, state: str = "", **kw: float) -> list[str]:
    return [p.name for p in lib.select(goal, state, **kw)]


def test_similarity_picks_the_policies_that_fit(library: PolicyLibrary) -> None:
    assert "solve_with_program" in names(library, "Use 2 3 4 6 and + - * / to make 24.")
    assert "retrieve_similar" in names(library, "Convert 7 miles to kilometres.")
    assert "analogy" in names(library, "If 4 machines make 4 gears in 4 minutes, how long do 40 machines take to make 40 gears?")
    assert "ask_questions" in names(library, "Is 2028 a leap year?")


def test_a_policy_only_loosely_about_the_goal_is_not_pushed(library: PolicyLibrary) -> None:
    """Relevance is judged on the goal, with a high bar: a small model copies a pushed example."""
    assert "analogy" not in names(library, "If 4 cats catch 4 mice in 4 minutes, how long do 8 cats take to catch 8 mice?")
    assert "ask_questions" not in names(library, "How many weekdays are there in March 2025?")


def test_nothing_fires_for_an_unrelated_goal(library: PolicyLibrary) -> None:
    assert names(library, "Tell me a joke about cats.") == []


def test_prediction_error_fires_after_a_failed_step(library: PolicyLibrary) -> None:
    state = "[action] @python(print(sum(range(1, 50))))\n[observation] Traceback (most recent call last): NameError"
    chosen = library.selector().explain("What is the sum of 1 to 50?", state)
    fired = [s for s in chosen if s.trigger == "prediction_error"]
    assert fired and fired[0].policy.name == "retry_with_variation"  # its motivation is the closest
    # Without the failure the same goal does not fire them; a measured error passed in does.
    calm = names(library, "What is the sum of 1 to 50?", "[observation] 1225")
    assert "retry_with_variation" not in calm
    assert "retry_with_variation" in names(library, "What is the sum of 1 to 50?", "", prediction_error=0.9)


def test_reward_prediction_error_is_inactive_until_given(library: PolicyLibrary) -> None:
    goal = "Make 24 from 1 5 5 5."
    assert "hindsight_compress" not in names(library, goal)
    assert "hindsight_compress" not in names(library, goal, rpe=0.1)
    assert "hindsight_compress" in names(library, goal, rpe=-0.8)


def test_always_trigger_and_limit(library: PolicyLibrary) -> None:
    text = ("name: be_brief\ndescription: Keep every step short.\nexamples: [{goal: g, response: r}]\n"
            "training: {fast: {trigger: always}}\n")
    lib = PolicyLibrary([*library, parse_policy(text)])
    lib.selector(embed=library.selector().embed)  # the same loaded model
    assert names(lib, "Tell me a joke about cats.") == ["be_brief"]
    chosen = names(lib, "Use 2 3 4 6 and + - * / to make 24.")
    assert chosen[0] == "be_brief" and len(chosen) == 3  # always + the 2 best similar ones


def test_frames_put_the_most_similar_examples_first(library: PolicyLibrary, tmp_path: Path) -> None:
    p = library["decompose"]
    frames = library.frames(p, "How many seconds are there in 5 days?")
    assert [f.kind for f in frames] == ["policy", "trajectory"]
    body = frames[0].text
    assert body.index("seconds are there in 3 days") < body.index("Example:", body.index("Example:") + 1)
    assert body.count("Example:") == 3 and "Alice has twice" not in body  # held-out examples are never pushed
    store = SQLiteStackStore(tmp_path / "s.db")
    st = Stack(store, "x")
    for f in frames:
        st.push_frame(f)
    assert [f.provenance["policy"] for f in st.frames()] == ["decompose", "decompose"]
    assert all(f.tokens > 0 for f in st.frames())
    store.close()


def test_policy_embeddings_are_computed_once(library: PolicyLibrary) -> None:
    calls: list[int] = []
    base = library.selector().embed
    assert base is not None

    def counting(texts):  # type: ignore[no-untyped-def]
        calls.append(len(texts))
        return base(texts)

    lib = PolicyLibrary(list(library))
    lib.selector(embed=counting)
    lib.select("What is 37 * 41 * 53?")
    first = sum(calls)
    lib.select("What is 12 * 13?")
    assert sum(calls) - first == 1  # only the query is embedded the second time


def test_estimate_prediction_error() -> None:
    assert estimate_prediction_error("[observation] 24") == 0.0
    assert estimate_prediction_error("[observation] Error: division by zero\n[thought] hmm") == 1.0
    assert estimate_prediction_error("[thought] the error was mine") == 0.0  # only observations count


def test_policy_frames_without_embedder(library: PolicyLibrary) -> None:
    frames = policy_frames(library["solve_with_program"], trajectories=0)
    assert len(frames) == 1 and "@python(print(17 * 23 * 31))" in frames[0].text
    vec = library.selector().embed(["a", "b"])  # type: ignore[misc]
    assert vec.shape == (2, 384) and np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-4)


def test_push_adds_each_policy_once(library: PolicyLibrary, tmp_path: Path) -> None:
    store = SQLiteStackStore(tmp_path / "s.db")
    st = Stack(store, "run")
    goal = "Use 2 3 4 6 and + - * / to make 24."
    st.push("goal", goal, value=1.0)
    first = library.push(st, goal)
    assert first and len(st) == 1 + sum(len(library.frames(p, goal)) for p in first)
    n = len(st)
    assert library.push(st, goal) == [] and len(st) == n  # already on the stack: not pushed again
    store.close()


def test_a_policy_that_calls_a_missing_tool_is_not_pushed(library: PolicyLibrary, tmp_path: Path) -> None:
    """@retrieve_similar teaches @recall: with memory off (no recall tool) it would teach a call that
    cannot be made, so it is not pushed, while a policy whose tools are there still is."""
    store = SQLiteStackStore(tmp_path / "s.db")
    goal = "Convert 7 miles to kilometres."
    assert library.needs(library["retrieve_similar"]) == {"recall"}
    assert library.needs(library["solve_with_program"]) == {"python"}
    with_memory = [p.name for p in library.push(Stack(store, "a"), goal, tools={"python", "recall"})]
    without = [p.name for p in library.push(Stack(store, "b"), goal, tools={"python"})]
    assert "retrieve_similar" in with_memory and "retrieve_similar" not in without
    program = "Use 2 3 4 6 and + - * / to make 24."
    assert "solve_with_program" in [p.name for p in library.push(Stack(store, "c"), program, tools={"python"})]
    store.close()


def test_example_responses_are_shown_as_steps() -> None:
    """Plain reasoning in an example's response is shown as its Thought: the agent can then reply
    the way the example worked (the 0.5B model copied the answer when it could not)."""
    from stackmind.policies.fast import _as_steps
    from stackmind.stepformat import StepFormat

    shown = _as_steps("99 = 100 - 1, so the zork of 64 is 6400 - 64 = 6336.\nFinal answer: 6336")
    assert shown == "Thought: 99 = 100 - 1, so the zork of 64 is 6400 - 64 = 6336.\nFinal answer: 6336"
    assert StepFormat.for_names({}).parse(shown).answer == "6336"  # one step of the format
    code = "Action: @python(x = 3\nprint(x * 99))"
    assert _as_steps(code) == code  # already steps: an action's code lines are left as they are
    assert _as_steps("Final answer: 7") == "Final answer: 7"
