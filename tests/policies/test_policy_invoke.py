"""Composite invocation on a real SQLite-backed stack: push, solve, pop, nest, limit, cycle."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackmind.policies import (
    InvocationError,
    Invoker,
    PolicyCycleError,
    PolicyDepthError,
    PolicyLibrary,
    PolicyNameError,
    check,
    parse_policy,
)
from stackmind.stack import Stack
from stackmind.storage import SQLiteStackStore
from stackmind.tools import ToolRegistry, first_invocation

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def starter() -> list:
    report = check([REPO / "policies"])
    assert report.ok
    return report.policies


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    store = SQLiteStackStore(tmp_path / "s.db")
    st = Stack(store, "main")
    st.push("goal", "What is the sum of the squares of the primes below 20?", value=1.0)
    st.push("thought", "Two parts: list the primes, then a sum.")
    yield st
    store.close()


def test_invocation_pushes_solves_pops_and_returns(starter: list, stack: Stack) -> None:
    invoker = Invoker(PolicyLibrary(starter))
    before = [f.text for f in stack.frames()]
    seen: dict[str, object] = {}

    def solve(goal: str, st: Stack, depth: int) -> str:
        frames = st.frames()
        seen.update(goal=goal, depth=depth, kinds=[f.kind for f in frames[len(before):]],
                    policy_text=frames[len(before)].text)
        st.push("thought", "2 3 5 7 11 13 17 19; squares sum to 1027")  # work the solver does
        return "1027"

    inv = first_invocation('@decompose(goal="sum of the squares of the primes below 20")')
    assert inv is not None
    res = invoker.invoke(inv, stack, solve)
    assert seen["goal"] == "Split into parts, solve each, combine: sum of the squares of the primes below 20"
    assert seen["depth"] == 1
    assert seen["kinds"] == ["policy", "trajectory", "goal"]
    assert "Learning policy @decompose" in str(seen["policy_text"]) and "Example:" in str(seen["policy_text"])
    after = stack.frames()
    assert [f.text for f in after[:-1]] == before  # everything the call pushed is gone
    assert after[-1].kind == "conclusion" and after[-1].text.endswith("-> 1027")
    assert res.result == "1027" and res.popped == 4 and invoker.depth == 0


def test_nested_calls_return_through_each_level(starter: list, stack: Stack) -> None:
    invoker = Invoker(PolicyLibrary(starter))
    depths: list[int] = []

    def solve(goal: str, st: Stack, depth: int) -> str:
        depths.append(depth)
        if goal.startswith("Split into parts"):
            inner = first_invocation('@solve_with_program(problem="sum of squares of 2 3 5 7 11 13 17 19")')
            assert inner is not None
            sub = invoker.invoke(inner, st, solve)
            assert st.frames()[-1].kind == "conclusion"  # the inner result is on the caller's stack
            return f"combined: {sub.result}"
        assert invoker.chain()[0].startswith("@decompose(")
        return "1027"

    inv = first_invocation('@decompose(goal="squares of primes below 20")')
    assert inv is not None
    res = invoker.invoke(inv, stack, solve)
    assert depths == [1, 2]
    assert res.result == "combined: 1027"
    assert stack.frames()[-1].text.endswith("-> combined: 1027")
    assert len(stack) == 3 and invoker.depth == 0


def test_depth_limit(starter: list, stack: Stack) -> None:
    invoker = Invoker(PolicyLibrary(starter), max_depth=3)
    n = 0

    def solve(goal: str, st: Stack, depth: int) -> str:
        nonlocal n
        n += 1
        inv = first_invocation(f'@simplify(problem="level {n}")')  # different arguments: not a cycle
        assert inv is not None
        return invoker.invoke(inv, st, solve).result

    inv = first_invocation('@simplify(problem="level 0")')
    assert inv is not None
    with pytest.raises(PolicyDepthError, match=r"nested 4 deep \(limit 3\)") as err:
        invoker.invoke(inv, stack, solve)
    assert len(err.value.chain) == 4
    assert len(stack) == 2 and invoker.depth == 0  # every level popped its frames on the way out


def test_runtime_cycle_stops_with_a_clear_error(starter: list, stack: Stack) -> None:
    invoker = Invoker(PolicyLibrary(starter))

    def solve(goal: str, st: Stack, depth: int) -> str:
        # depth 1 calls another policy; depth 2 calls the first again with the same arguments
        # (written with other spacing), which could never finish.
        text = '@simplify(problem="x")' if depth == 1 else '@analogy(problem="the  same thing")'
        inv = first_invocation(text)
        assert inv is not None
        return invoker.invoke(inv, st, solve).result

    inv = first_invocation('@analogy(problem="the same thing")')
    assert inv is not None
    with pytest.raises(PolicyCycleError, match=r"cycle: @analogy\(.*\) -> @simplify\(.*\) -> @analogy") as err:
        invoker.invoke(inv, stack, solve)
    assert "answer this step directly" in str(err.value)
    assert len(stack) == 2


def test_unknown_policy_and_bad_arguments(starter: list, stack: Stack) -> None:
    invoker = Invoker(PolicyLibrary(starter))
    never = lambda goal, st, depth: pytest.fail("must not solve")  # noqa: E731
    with pytest.raises(InvocationError, match="unknown learning policy @nope; known: @analogy"):
        invoker.invoke(first_invocation("@nope(x=1)"), stack, never)  # type: ignore[arg-type]
    with pytest.raises(InvocationError, match="no parameter 'gaol'.*needs goal="):
        invoker.invoke(first_invocation('@decompose(gaol="x")'), stack, never)  # type: ignore[arg-type]
    assert len(stack) == 2


def test_positional_argument_binds_to_the_first_parameter(starter: list, stack: Stack) -> None:
    invoker = Invoker(PolicyLibrary(starter))
    goals: list[str] = []
    invoker.invoke(first_invocation("@simplify(998 * 25)"), stack,  # type: ignore[arg-type]
                   lambda goal, st, depth: goals.append(goal) or "24950")
    assert goals == ["Restate as simply as possible, solve, then scale back: 998 * 25"]


def test_solver_failure_still_pops(starter: list, stack: Stack) -> None:
    invoker = Invoker(PolicyLibrary(starter))

    def solve(goal: str, st: Stack, depth: int) -> str:
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        invoker.invoke(first_invocation('@decompose(goal="x")'), stack, solve)  # type: ignore[arg-type]
    assert len(stack) == 2 and invoker.depth == 0


class _Tool:
    description = "test tool"

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, invocation, ctx):  # type: ignore[no-untyped-def]
        raise AssertionError


def test_policies_and_tools_share_one_namespace(starter: list) -> None:
    registry = ToolRegistry([_Tool("python"), _Tool("decompose")])
    with pytest.raises(PolicyNameError, match="@decompose is a tool"):
        PolicyLibrary(starter, tools=registry)
    lib = PolicyLibrary(starter, tools=ToolRegistry([_Tool("python")]))
    with pytest.raises(PolicyNameError, match="already a learning policy"):
        lib.add_tool("simplify")
    with pytest.raises(PolicyNameError, match="two policies are named @simplify"):
        lib.add(next(p for p in starter if p.name == "simplify"))


def test_describe_lists_how_to_invoke(starter: list) -> None:
    text = PolicyLibrary(starter).describe()
    assert "@decompose(goal=...): Break a goal" in text
    assert "@retry_with_variation(attempt=..., error=...)" in text


def test_subgoal_default_and_missing_placeholders() -> None:
    text = "name: p\ndescription: Do a thing.\nexamples: [{goal: g, response: r}]\ntraining: {slow: {weight: 1}}\n"
    p = parse_policy(text)
    assert p.render_subgoal({"x": 1}) == "Do a thing: x=1"
    q = parse_policy(text + "subgoal: 'work on {goal} with {other}'\n")
    assert q.render_subgoal({"goal": "g"}) == "work on g with {other}"
