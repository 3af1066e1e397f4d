from __future__ import annotations

import pytest

from stackmind.memory import Memory
from stackmind.settings import Settings
from stackmind.tools import ToolContext, ToolError, ToolRegistry, find_invocations
from stackmind.tools.recall import RecallTool


def test_recall_through_the_registry(memory: Memory, settings: Settings) -> None:
    memory.store("Game of 24 with 4 7 8 8: (7 - 8/8) * 4 = 24", owner="local", kind="conclusion", value=0.9)
    memory.store("The user likes answers in French", owner="local")
    registry = ToolRegistry([RecallTool()])
    ctx = ToolContext(settings=settings, state={"memory": memory})
    [inv] = find_invocations("Let me check: @recall(game of 24 with two eights)")
    result = registry.run(inv, ctx)
    assert result.ok
    first = result.text.splitlines()[1]
    assert first.startswith("1. [conclusion, value 0.90") and "(7 - 8/8) * 4" in first
    assert memory.recall("24", owner="local", k=1, touch=False)[0].uses == 1  # a tool recall is a use


def test_recall_tool_opens_a_memory_when_the_agent_gave_none(settings: Settings) -> None:
    ctx = ToolContext(settings=settings, owner="telegram:1")
    [inv] = find_invocations('@recall(query="anything")')
    result = RecallTool()(inv, ctx)
    assert result.text == "no memories match 'anything'"
    assert isinstance(ctx.state["memory"], Memory)
    ctx.state["memory"].close()


@pytest.mark.parametrize("text, message", [
    ("@recall()", "needs something to look for"),
    ('@recall(query="x", k=0)', "k must be"),
    ('@recall(query="x", k="many")', "k must be"),
    ('@recall(query="x", kinds="conclusion")', "kinds must be a list"),
])
def test_bad_invocations_say_what_to_fix(memory: Memory, settings: Settings, text: str, message: str) -> None:
    [inv] = find_invocations(text)
    with pytest.raises(ToolError, match=message):
        RecallTool(memory)(inv, ToolContext(settings=settings))
    # Through the registry the agent gets a failed observation, not an exception.
    result = ToolRegistry([RecallTool(memory)]).run(inv, ToolContext(settings=settings))
    assert not result.ok and message in result.text
