"""The agent's `@python(...)` tool: code goes only through the sandbox; a session per episode."""

from __future__ import annotations

import pytest

from stackmind.sandbox import PythonSession
from stackmind.settings import Settings
from stackmind.tools import ToolContext, ToolError, ToolRegistry, first_invocation
from stackmind.tools.python import PythonTool, code_of


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
