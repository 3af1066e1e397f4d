"""The agent's loop, top to bottom.

    goal -> Stack -> render (value-weighted, token budget) -> LLM -> a step
         -> a tool or policy invocation runs -> observation frame -> ... -> final answer
         -> episode trace (text) written to the data dir

`Agent.run` is the single-path loop (think -> act -> observe until a final answer or the step
budget). Search (tree-of-thought), value scoring, memory recall and fast-learning policies plug in
at the marked places as those parts land.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from stackmind.llm import LLM, load_llm
from stackmind.llm.base import Message
from stackmind.settings import Settings
from stackmind.stack import SQLiteStackStore, Stack, StackStore
from stackmind.tools import Invocation, ToolContext, ToolRegistry, find_invocations
from stackmind.trace import Episode, Step

SYSTEM_PROMPT = """You are stackmind, an agent that solves a goal one step at a time.
Your working memory (the stack) is shown to you as lines like "[goal] ...", "[thought] ...", "[observation] ...".
Reply with ONE step, in one of these forms:
  Final answer: <the answer>            when you know the answer
  Thought: <one short line of reasoning>  when you need to think first
  Action: @tool(arguments)              to use a tool; its output comes back as an observation
{tools}Be brief. Prefer "Final answer:" as soon as you are sure."""

_FINAL = re.compile(r"(?is)\bfinal answer\s*:\s*(.+)")
_THOUGHT = re.compile(r"(?is)^\s*thought\s*:\s*")

ProgressFn = Callable[[str], None]


@dataclass
class StepResult:
    """What one step of the loop produced."""

    reply: str
    answer: str | None = None
    invocation: Invocation | None = None
    observation: str | None = None


@dataclass
class Agent:
    settings: Settings
    llm: LLM | None = None
    tools: ToolRegistry = field(default_factory=ToolRegistry)
    store: StackStore | None = None
    owner: str = "local"

    def __post_init__(self) -> None:
        self.settings.ensure_dirs()
        if self.store is None:
            self.store = SQLiteStackStore(self.settings.db_path)

    def model(self) -> LLM:
        """The LLM, loaded on first use (the embedded model takes seconds once cached)."""
        if self.llm is None:
            self.llm = load_llm(self.settings)
        return self.llm

    def stack(self, name: str) -> Stack:
        assert self.store is not None
        counter = self.llm.count_tokens if self.llm is not None else None
        return Stack(self.store, name, counter) if counter else Stack(self.store, name)

    # ---- the loop ---------------------------------------------------------------------------
    def run(
        self,
        goal: str,
        *,
        stack_name: str | None = None,
        max_steps: int | None = None,
        progress: ProgressFn | None = None,
    ) -> Episode:
        llm = self.model()
        episode = Episode(goal=goal, model=llm.name)
        episode.stack = stack_name or f"run-{episode.id}"
        stack = self.stack(episode.stack)
        stack.push("goal", goal, value=1.0, episode=episode.id)
        ctx = ToolContext(self.settings, owner=self.owner, stack=stack, episode_id=episode.id)
        usage_before = _snapshot(llm)
        t0 = time.perf_counter()
        try:
            for i in range(max_steps or self.settings.max_steps):
                view = stack.render(self.settings.render_budget_tokens)
                if progress:
                    progress(f"step {i + 1}: thinking ...")
                result = self.step(view, ctx)
                episode.steps.append(Step(
                    thought=result.reply, action=result.invocation.text if result.invocation else None,
                    observation=result.observation, view=view,
                ))
                if result.answer is not None:
                    episode.answer = result.answer
                    stack.push("conclusion", result.answer, value=0.9, episode=episode.id)
                    break
                if result.invocation is not None:
                    stack.push("action", result.invocation.text, value=0.6, episode=episode.id)
                    stack.push("observation", result.observation or "", value=0.7, episode=episode.id)
                else:
                    stack.push("thought", _THOUGHT.sub("", result.reply), value=0.5, episode=episode.id)
        finally:
            _close_tool_state(ctx)
            episode.meta["usage"] = _usage_since(llm, usage_before)
            episode.meta["wall_seconds"] = round(time.perf_counter() - t0, 3)
            episode.meta["owner"] = self.owner
            episode.save(self.settings.episodes_dir)
        return episode

    def step(self, view: str, ctx: ToolContext) -> StepResult:
        """One step: ask the model, then act on what it said."""
        reply = self.model().generate(
            [self.messages(view)], max_tokens=self.settings.max_new_tokens,
            temperature=self.settings.temperature, seed=self.settings.seed, stop=["\nObservation:"],
        ).texts[0][0].strip()
        invocation = next((inv for inv in find_invocations(reply) if self.tools.get(inv.name)), None)
        final = _FINAL.search(reply)
        if final and (invocation is None or final.start() < invocation.start):
            return StepResult(reply, answer=final.group(1).strip())
        if invocation is not None:
            observed = self.tools.run(invocation, ctx)
            return StepResult(reply, invocation=invocation, observation=observed.text)
        if _THOUGHT.match(reply) and reply.strip():
            return StepResult(reply)
        # A reply in none of the forms is the model answering directly.
        return StepResult(reply, answer=reply)

    def messages(self, view: str) -> list[Message]:
        tools = self.tools.describe()
        tool_text = f"Tools:\n{tools}\n" if tools else ""
        return [
            {"role": "system", "content": SYSTEM_PROMPT.format(tools=tool_text)},
            {"role": "user", "content": f"{view}\n\nYour next step:"},
        ]


def _snapshot(llm: LLM) -> dict[str, float]:
    return dict(llm.usage.to_dict())


def _usage_since(llm: LLM, before: dict[str, float]) -> dict[str, float]:
    now = llm.usage.to_dict()
    keys = ("calls", "prompts", "prompt_tokens", "completion_tokens", "wall_seconds")
    return {k: round(now[k] - before[k], 3) for k in keys}


def _close_tool_state(ctx: ToolContext) -> None:
    for value in ctx.state.values():
        close = getattr(value, "close", None)
        if callable(close):
            close()


def default_tools(settings: Settings) -> ToolRegistry:
    """The tools an agent gets by default: those whose parts are installed."""
    registry = ToolRegistry()
    try:
        from stackmind.tools.python import PythonTool
    except ImportError:
        pass
    else:
        registry.register(PythonTool())
    return registry
