"""Tools the agent invokes with the same ``@name(...)`` syntax as learning policies.

A tool is anything with a ``name``, a one-line ``description`` and ``__call__(invocation, ctx)``
returning a `ToolResult`. `ToolRegistry` holds them by name; the agent looks up every invocation in
its thought there (and in the policy registry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from stackmind.errors import StackmindError
from stackmind.tools.invocation import Invocation, find_invocations, first_invocation

if TYPE_CHECKING:
    from stackmind.settings import Settings
    from stackmind.stack import Stack

__all__ = [
    "Invocation", "Tool", "ToolContext", "ToolError", "ToolRegistry", "ToolResult",
    "default_tools", "find_invocations", "first_invocation",
]


class ToolError(StackmindError):
    """A tool that could not run (bad arguments, unknown tool)."""


@dataclass
class ToolResult:
    text: str  # what becomes the observation frame
    ok: bool = True
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ToolContext:
    settings: Settings
    owner: str = "local"  # whose memories and stacks these are (a Telegram user, a CLI user)
    stack: Stack | None = None
    episode_id: str | None = None
    # Per-episode state a tool may keep (a persistent sandbox session, say); closed by the agent.
    state: dict[str, Any] = field(default_factory=dict)


class Tool(Protocol):
    name: str
    description: str

    def __call__(self, invocation: Invocation, ctx: ToolContext) -> ToolResult: ...


class ToolRegistry:
    def __init__(self, tools: list[Tool] | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools or []:
            self.register(t)

    def register(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ToolError(f"a tool named @{tool.name} is already registered")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> set[str]:
        return set(self._tools)

    def describe(self) -> str:
        return "\n".join(f"@{t.name}(...): {t.description}" for t in self._tools.values())

    def run(self, invocation: Invocation, ctx: ToolContext) -> ToolResult:
        tool = self._tools.get(invocation.name)
        if tool is None:
            known = ", ".join(f"@{n}" for n in sorted(self._tools)) or "none"
            return ToolResult(f"unknown tool @{invocation.name}; available: {known}", ok=False)
        try:
            return tool(invocation, ctx)
        except ToolError as e:
            return ToolResult(f"@{invocation.name} failed: {e}", ok=False)


def default_tools(settings: Settings) -> ToolRegistry:
    """The tools an agent gets: the sandbox's @python, @wolfram, and @recall of long-term memory when
    memory is on."""
    from stackmind.tools.python import PythonTool
    from stackmind.tools.recall import RecallTool
    from stackmind.tools.wolfram import WolframTool

    registry = ToolRegistry([PythonTool(), WolframTool()])
    if settings.memory:
        registry.register(RecallTool())
    return registry
