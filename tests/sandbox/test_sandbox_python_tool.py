"""The agent's `@python(...)` tool: code goes only through the sandbox; a session per episode."""

from __future__ import annotations

import pytest

from stackmind.sandbox import PythonSession
from stackmind.settings import Settings
from stackmind.tools import ToolContext, ToolError, ToolRegistry, first_invocation
from stackmind.tools.python import PythonTool, code_of, show_last_value


def inv(text: str):  # noqa: ANN201
    found = first_invocation(text)
    assert found is not None
    return found


@pytest.mark.parametrize(("text", "code"), [
    ("@python(print(17 * 23))", "print(17 * 23)"),
    ('@python(code="x = 2\\nprint(x)")', "x = 2\nprint(x)"),
    ("@python(x = 2)", "x = 2"),
    ("@python(print(1), print(2))", "print(1), print(2)"),
    ("@python(```python\nprint(3)\n```)", "print(3)"),
    ("@python(\n    for i in range(2):\n        print(i)\n)", "for i in range(2):\n    print(i)"),
])
def test_code_of(text: str, code: str) -> None:
    assert code_of(inv(text)) == code


@pytest.mark.parametrize(("code", "shows"), [
    ("x = 6 * 7", "x = 6 * 7\nprint(x)"),
    ("total = 2\ntotal += 3", "total = 2\ntotal += 3\nprint(total)"),
    ("x = 2\nx * 3  # the answer", "x = 2\n__value__ = (x * 3)  # the answer\nif __value__ is not None:\n    print(__value__)"),
    ("a = 1; a + 1", "a = 1; __value__ = (a + 1)\nif __value__ is not None:\n    print(__value__)"),
    ("(1 +\n 2)", "__value__ = ((1 +\n 2))\nif __value__ is not None:\n    print(__value__)"),
])
def test_a_program_that_prints_nothing_shows_its_last_value(code: str, shows: str) -> None:
    assert show_last_value(code) == shows


@pytest.mark.parametrize("code", [
    "x = 1\nprint(x)",  # it prints: left as it is
    "def f():\n    print(1)\nf()",
    "a, b = 1, 2",  # no one name to show
    "for i in range(3):\n    y = i",
    "x = (1 +",  # a syntax error: the guest reports it
    "import math",
])
def test_a_program_is_left_alone_when_there_is_no_last_value_to_show(code: str) -> None:
    assert show_last_value(code) == code


@pytest.mark.slow
def test_the_last_value_shows_in_the_sandbox(settings: Settings) -> None:
    ctx = ToolContext(settings=settings)
    tool = PythonTool(session=False)
    assert tool(inv("@python(houses = 660 / 4)"), ctx).text == "165.0"
    assert tool(inv("@python(words = ['a', 'b']\nlen(words))"), ctx).text == "2"
    assert tool(inv("@python(x = [3, 1]\nx.sort())"), ctx).text.startswith("[ok")  # None is not shown


@pytest.mark.slow
def test_tool_runs_in_a_session_kept_in_episode_state(settings: Settings) -> None:
    ctx = ToolContext(settings=settings)
    tools = ToolRegistry([PythonTool()])
    r = tools.run(inv("@python(x = 6 * 7)"), ctx)
    assert r.ok and r.meta["outcome"] == "ok"
    r = tools.run(inv("@python(print(x))"), ctx)
    assert r.text == "42" and r.meta["engine"] == "python-session"
    assert isinstance(ctx.state["python_session"], PythonSession)
    r = tools.run(inv("@python(1 / 0)"), ctx)
    assert not r.ok and "ZeroDivisionError" in r.text and "[error" in r.text
    ctx.state["python_session"].close()


@pytest.mark.slow
def test_tool_without_session_and_hostile_code(settings: Settings) -> None:
    from stackmind.sandbox import Limits

    ctx = ToolContext(settings=settings)
    tool = PythonTool(limits=Limits(deadline_s=0.5), session=False)
    r = tool(inv("@python(import os; print(os.system('id')))"), ctx)
    assert not r.ok and "has no attribute 'system'" in r.text
    r = tool(inv("@python(while True: pass)"), ctx)
    assert not r.ok and "timeout" in r.text


def test_empty_code_is_a_tool_error(settings: Settings) -> None:
    with pytest.raises(ToolError):
        PythonTool()(inv("@python()"), ToolContext(settings=settings))
