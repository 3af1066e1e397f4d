"""``@recall(query)``: search the conversation owner's long-term memory.

    @recall(game of 24 with two eights)
    @recall(query="the user's cat", k=3, kinds=["conclusion"])

The owner is always the tool context's (`ToolContext.owner`): an invocation cannot name another
one. The memory is the one the agent opened (``ctx.state["memory"]`` or the constructor's); failing
both, the tool opens one from ``ctx.settings`` and leaves it in ``ctx.state["memory"]`` for the agent
to close with the episode.
"""

from __future__ import annotations

from stackmind.memory import Memory, MemoryStoreError, Recalled
from stackmind.tools import Invocation, ToolContext, ToolError, ToolResult

MAX_K = 20


class RecallTool:
    name = "recall"
    description = 'search your long-term memory by meaning: @recall(query="...", k=5)'

    def __init__(self, memory: Memory | None = None, k: int = 5, touch: bool = True) -> None:
        self.memory = memory
        self.k = k
        self.touch = touch

    def _memory(self, ctx: ToolContext) -> Memory:
        if self.memory is not None:
            return self.memory
        memory = ctx.state.get("memory")
        if isinstance(memory, Memory):
            return memory
        memory = Memory(ctx.settings)
        ctx.state["memory"] = memory
        return memory

    def __call__(self, invocation: Invocation, ctx: ToolContext) -> ToolResult:
        if "owner" in invocation.kwargs:
            raise ToolError("@recall searches only this conversation's memories: drop the owner= argument")
        query = invocation.arg("query")
        if not isinstance(query, str) or not query.strip():
            raise ToolError('@recall needs something to look for: @recall(query="...")')
        k = invocation.kwargs.get("k", self.k)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise ToolError(f"@recall's k must be a whole number from 1 to {MAX_K}, not {k!r}")
        kinds = invocation.kwargs.get("kinds")
        if kinds is not None and not (isinstance(kinds, list | tuple) and all(isinstance(x, str) for x in kinds)):
            raise ToolError('@recall\'s kinds must be a list of frame kinds such as ["conclusion"]')
        try:
            found = self._memory(ctx).recall(query, owner=ctx.owner, k=k, kinds=kinds, touch=self.touch)
        except MemoryStoreError as e:
            raise ToolError(str(e)) from e
        return ToolResult(format_recalled(query, found), meta={
            "ids": [r.id for r in found], "scores": [round(r.score, 4) for r in found],
        })


def format_recalled(query: str, found: list[Recalled]) -> str:
    if not found:
        return f"no memories match {query!r}"
    lines = [f"{len(found)} memories for {query!r}:"]
    for i, r in enumerate(found, 1):
        lines.append(f"{i}. [{r.kind}, value {r.value:.2f}, similarity {r.similarity:.2f}] {r.text}")
    return "\n".join(lines)
