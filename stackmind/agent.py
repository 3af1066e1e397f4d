"""The agent's loop, top to bottom.

    goal -> Stack
      before each step: long-term memory recalled onto the stack (owner-scoped)
                        learning policies whose triggers fire pushed (fast learning)
      -> render (value-weighted, token budget) -> LLM -> one step
      -> a tool runs (the sandbox, recall, wolfram) -> observation frame
         or a policy is invoked (@name(...)): its examples pushed, the sub-goal solved by this
         same loop, everything popped, the result pushed back as a conclusion
      -> ... until a final answer or the step budget
    or, with a search strategy, a tree-of-thought search scored by the value model (or the judge)
    -> episode trace (text) in the data dir; frames that left the stack and the conclusion go to
       long-term memory; an episode with a reward is labelled in hindsight and the value model
       learns from it.

`Agent` holds the parts; `Agent.from_settings` opens the ones the settings ask for.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stackmind.llm import LLM, load_llm
from stackmind.llm.base import Message
from stackmind.settings import Settings
from stackmind.stack import Frame, Stack, StackStore
from stackmind.storage import EpisodeStore, open_episodes, open_store
from stackmind.tools import Invocation, ToolContext, ToolRegistry, find_invocations
from stackmind.trace import Episode, Step

if TYPE_CHECKING:
    from stackmind.memory import Memory
    from stackmind.policies import Invoker, Policy, PolicyLibrary
    from stackmind.search.scorer import Scorer

log = logging.getLogger("stackmind.agent")

SYSTEM_PROMPT = """You are stackmind, an agent that solves a goal one step at a time.
Your working memory (the stack) is shown to you as lines like "[goal] ...", "[thought] ...", "[observation] ...".
Reply with ONE step, in one of these forms:
  Final answer: <the answer>              when you know the answer
  Thought: <one short line of reasoning>  when you need to think first
  Action: @name(arguments)                to use a tool or a learning policy; its result comes back as an observation
{tools}For arithmetic, do not guess: compute it with @python(print(...)) first, then give the final answer.
Be brief. Give "Final answer:" as soon as you are sure."""

_FINAL = re.compile(r"(?is)\bfinal answer\s*:\s*(.+)")
_THOUGHT = re.compile(r"(?is)^\s*thought\s*:\s*")
_ACTION = re.compile(r"(?is)^\s*action\s*:\s*")

ProgressFn = Callable[[str], None]

MIN_RECALL_SIMILARITY = 0.7  # only a memory this close to the step is pushed (looser ones mislead a small model)
SUB_STEPS = 4  # the step budget of a policy's sub-goal


@dataclass
class StepResult:
    """What one step of the loop produced."""

    reply: str
    answer: str | None = None
    invocation: Invocation | None = None
    observation: str | None = None
    ok: bool = True  # False when the action failed (a tool error, a bad invocation)
    policy: bool = False  # the invocation ran a learning policy (its result is already on the stack)
    substeps: list[Step] = field(default_factory=list)


@dataclass
class _Run:
    """One episode's working state."""

    episode: Episode
    ctx: ToolContext
    invoker: Invoker | None
    progress: ProgressFn | None
    left: list[Frame] = field(default_factory=list)  # frames popped off the stack during the run
    recalled: set[str] = field(default_factory=set)  # memory ids already on the stack
    pushed: list[str] = field(default_factory=list)  # learning policies pushed by fast learning


@dataclass
class Agent:
    settings: Settings
    llm: LLM | None = None
    tools: ToolRegistry = field(default_factory=ToolRegistry)
    store: StackStore | None = None
    owner: str = "local"
    library: PolicyLibrary | None = None  # learning policies: fast learning and @name(...) calls
    memory: Memory | None = None  # long-term memory (owned by the caller, who closes it)
    scorer: Scorer | None = None  # for searches; default: the value model when trusted, else the judge
    episodes: EpisodeStore | None = None  # where episodes are saved; default: the settings' store

    def __post_init__(self) -> None:
        self.settings.ensure_dirs()
        if self.store is None:
            self.store = open_store(self.settings)
        if self.episodes is None:
            self.episodes = open_episodes(self.settings)

    @classmethod
    def from_settings(cls, settings: Settings, *, llm: LLM | None = None, owner: str = "local",
                      store: StackStore | None = None, warn: ProgressFn | None = None) -> Agent:
        """An agent with every part the settings ask for: tools, learning policies, memory.

        A part that cannot open (another process holds the memory, a policy file does not parse)
        is left out with a warning, never a failure: the agent still answers."""
        warn = warn or log.warning
        tools = default_tools(settings)
        library = policy_library(settings, tools, warn)
        memory = None
        if settings.memory:
            from stackmind.memory import Memory, MemoryStoreError

            try:
                memory = Memory(settings)
            except MemoryStoreError as e:
                warn(f"long-term memory is off for this run: {e}")
        return cls(settings, llm=llm, tools=tools, store=store, owner=owner, library=library, memory=memory)

    def close(self) -> None:
        if self.memory is not None:
            self.memory.close()
            self.memory = None

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
        policies: Sequence[Policy] | None = None,
        search: str | None = None,
    ) -> Episode:
        """Solve one goal; the episode is saved to the data dir (also when the run fails).

        ``policies``: push exactly these learning policies first and do no fast learning of its own
        (``[]`` for none); by default the library's triggers choose before each step. ``search``:
        bfs | dfs | mcts for a tree-of-thought search, none for the single-path loop (default: the
        settings' ``search``)."""
        llm = self.model()
        episode = Episode(goal=goal, model=llm.name)
        episode.stack = stack_name or f"run-{episode.id}"
        stack = self.stack(episode.stack)
        ctx = ToolContext(self.settings, owner=self.owner, stack=stack, episode_id=episode.id)
        if self.memory is not None:
            ctx.state["memory"] = self.memory
        owned = set(ctx.state)  # the agent's own parts: not closed with the episode
        invoker = None
        if self.library is not None:
            from stackmind.policies import Invoker

            invoker = Invoker(self.library)
        run = _Run(episode, ctx, invoker, progress)
        stack.on_pop = run.left.append
        stack.push("goal", goal, value=1.0, episode=episode.id)
        if policies is not None:
            self._push_policies(stack, goal, policies, run)
        strategy = search or self.settings.search
        usage_before = _snapshot(llm)
        t0 = time.perf_counter()
        try:
            if strategy != "none":
                self._search(goal, stack, strategy, run)
            else:
                episode.answer = self._loop(goal, stack, run, episode.steps, depth=0,
                                            max_steps=max_steps or self.settings.max_steps,
                                            fast=policies is None)
            if episode.answer is not None:
                stack.push("conclusion", episode.answer, value=0.9, episode=episode.id)
        finally:
            stack.on_pop = None
            _close_tool_state(ctx, keep=owned)
            episode.meta["usage"] = _usage_since(llm, usage_before)
            episode.meta["wall_seconds"] = round(time.perf_counter() - t0, 3)
            episode.meta["owner"] = self.owner
            if run.pushed:
                episode.meta["policies"] = run.pushed
            self.episodes.save(episode)
        self._remember(episode, run)
        self.learn(episode)
        return episode

    def _loop(self, goal: str, stack: Stack, run: _Run, steps: list[Step], *, depth: int, max_steps: int,
              fast: bool) -> str | None:
        """Think, act, observe on ``stack`` until an answer (returned) or the step budget (None)."""
        failed = False
        for i in range(max_steps):
            if depth == 0:
                self._recall(stack, goal, run, first=i == 0)
                if fast:
                    self._fast_learning(stack, goal, run, failed)
            view = stack.render(self.settings.render_budget_tokens)
            if run.progress:
                where = f"step {i + 1}" if depth == 0 else f"sub-goal (depth {depth}) step {i + 1}"
                run.progress(f"{where}: thinking ...")
            result = self.step(view, run.ctx, depth=depth, run=run, goal=goal)
            if (result.answer is None and result.invocation is None and steps
                    and " ".join(result.reply.split()) == " ".join(steps[-1].thought.split())):
                result = StepResult(result.reply, ok=False, observation=(
                    "that repeats your last step; take a different step or give the Final answer"))
            steps.append(Step(
                thought=result.reply, action=result.invocation.text if result.invocation else None,
                observation=result.observation, view=view, substeps=result.substeps,
                meta={"depth": depth} if depth else {},
            ))
            failed = not result.ok
            if result.answer is not None:
                return result.answer
            if result.policy:
                continue  # the invoker pushed the call's conclusion
            if result.invocation is not None:
                stack.push("action", result.invocation.text, value=0.6, episode=run.episode.id)
                stack.push("observation", result.observation or "", value=0.7, episode=run.episode.id)
            elif result.observation is not None:  # an action that named nothing runnable
                stack.push("observation", result.observation, value=0.6, episode=run.episode.id)
            else:
                stack.push("thought", _THOUGHT.sub("", result.reply), value=0.5, episode=run.episode.id)
        return None

    def step(self, view: str, ctx: ToolContext, *, depth: int = 0, run: _Run | None = None,
             goal: str | None = None) -> StepResult:
        """One step: ask the model, then act on what it said."""
        reply = self.model().generate(
            [self.messages(view, goal)], max_tokens=self.settings.max_new_tokens,
            temperature=self.settings.temperature, seed=self.settings.seed, stop=["\nObservation:", "\n[observation]"],
        ).texts[0][0].strip()
        return self.act(reply, view, ctx, depth=depth, run=run, goal=goal)

    def act(self, reply: str, view: str, ctx: ToolContext, *, depth: int = 0, run: _Run | None = None,
            goal: str | None = None) -> StepResult:
        """What a reply means: an answer, a tool or policy call (run here), a thought, or a reply
        that needs correcting (an observation saying what was wrong)."""
        invocation = next((inv for inv in find_invocations(reply) if self._knows(inv.name)), None)
        final = _FINAL.search(reply)
        answer_is_call = bool(final and invocation is not None
                              and final.group(1).strip().startswith(f"@{invocation.name}("))
        if final and (invocation is None or final.start() < invocation.start) and not answer_is_call:
            answer = final.group(1).strip()
            expr = _restated_expression(answer, goal) if goal is not None else None
            if expr is None or self.tools.get("python") is None:
                return StepResult(reply, answer=answer)
            # "What is 17 * 23?" -> "Final answer: 17 * 23" is the question again, not its value: the
            # answer is the expression's value, computed in the sandbox like "Final answer: @python(...)".
            invocation, answer_is_call = find_invocations(f"@python(print({expr}))")[0], True
        if invocation is not None:
            if self.tools.get(invocation.name) is None and run is not None and run.invoker is not None:
                return self._invoke_policy(reply, invocation, ctx, depth, run)
            observed = self.tools.run(invocation, ctx)
            # "Final answer: @python(print(...))": the answer is what the call returns (when it works).
            answer = observed.text.strip() if answer_is_call and observed.ok and observed.text.strip() else None
            return StepResult(reply, answer=answer, invocation=invocation, observation=observed.text, ok=observed.ok)
        if _ACTION.match(reply):
            named = [f"@{inv.name}" for inv in find_invocations(reply)]
            return StepResult(reply, observation=(
                f"unknown tool or policy {', '.join(named)}" if named else "an action names a tool: @name(arguments)"
            ) + f"; available: {', '.join(sorted(self._names()))}", ok=False)
        if _THOUGHT.match(reply) and reply.strip():
            return StepResult(reply)
        if _copies_view(reply, view):  # a small model sometimes continues the stack instead of answering
            return StepResult(reply, observation="that reply copies the stack; reply with one step: "
                                                 "Thought: ..., Action: @name(...) or Final answer: ...", ok=False)
        # A reply in none of the forms is the model answering directly.
        return StepResult(reply, answer=reply)

    def _knows(self, name: str) -> bool:
        return name in self._names()

    def _names(self) -> set[str]:
        return self.tools.names() | (self.library.names() if self.library is not None else set())

    def _invoke_policy(self, reply: str, invocation: Invocation, ctx: ToolContext, depth: int,
                       run: _Run) -> StepResult:
        """``@name(...)`` of a learning policy: push its examples, solve the sub-goal with this same
        loop, pop, and push the result back (`stackmind.policies.invoke`)."""
        from stackmind.policies import InvocationError

        assert run.invoker is not None and ctx.stack is not None
        substeps: list[Step] = []

        def solve(subgoal: str, stack: Stack, d: int) -> str:
            answer = self._loop(subgoal, stack, run, substeps, depth=d, max_steps=SUB_STEPS, fast=False)
            return answer if answer is not None else "(no answer within the sub-goal's step budget)"

        try:
            result = run.invoker.invoke(invocation, ctx.stack, solve, depth)
        except InvocationError as e:
            return StepResult(reply, invocation=invocation, observation=str(e), ok=False, substeps=substeps)
        return StepResult(reply, invocation=invocation, observation=result.result, policy=True, substeps=substeps)

    def messages(self, view: str, goal: str | None = None) -> list[Message]:
        """The step's prompt: the stack's view, then the goal restated last (a small model answers
        what it read last; the examples that fast learning pushed sit above it)."""
        described = [self.tools.describe()]
        if self.library is not None and self.library.names():
            described.append(self.library.describe())
        text = "\n".join(d for d in described if d)
        tool_text = f"Tools and learning policies:\n{text}\n" if text else ""
        return [
            {"role": "system", "content": SYSTEM_PROMPT.format(tools=tool_text)},
            {"role": "user", "content": f"{view}\n\n" + (f"Current goal: {goal}\n" if goal else "") + "Your next step:"},
        ]

    # ---- search -----------------------------------------------------------------------------
    def _search(self, goal: str, stack: Stack, strategy: str, run: _Run) -> None:
        """A tree-of-thought search instead of the single path; the tree is kept on the episode."""
        from stackmind.search import Budget, solve
        from stackmind.tasks.text import TextGoal

        llm = self.model()
        task = TextGoal(goal)
        scorer = self.scorer
        if scorer is None:
            from stackmind.value import choose_scorer

            scorer, why = choose_scorer(self.settings, llm, task)
            run.episode.meta["scorer"] = why
        budget = Budget(llm_calls=self.settings.search_max_calls, seconds=self.settings.search_max_seconds)
        result = solve(task, llm, strategy=strategy, scorer=scorer, budget=budget, seed=self.settings.seed,
                       progress=run.progress)
        found = result.to_episode(model=llm.name)
        run.episode.steps.extend(found.steps)
        run.episode.answer, run.episode.reward, run.episode.tree = found.answer, found.reward, found.tree
        run.episode.meta["search"] = found.meta["search"]
        for s in found.steps:
            stack.push("thought", s.thought, value=s.value if s.value is not None else 0.5, episode=run.episode.id)

    # ---- fast learning and memory -----------------------------------------------------------
    def _push_policies(self, stack: Stack, goal: str, policies: Sequence[Policy], run: _Run) -> None:
        from stackmind.policies import policy_frames

        for policy in policies:
            if self.library is not None and policy.name in self.library:
                frames = self.library.frames(policy, goal)
            else:
                fast = policy.training.fast
                frames = policy_frames(policy, policy.train_examples()[:fast.examples if fast else 3],
                                       fast.trajectories if fast else 1)
            for f in frames:
                stack.push_frame(f)
            run.pushed.append(policy.name)

    def _fast_learning(self, stack: Stack, goal: str, run: _Run, failed: bool) -> None:
        if self.library is None or not self.library.names():
            return
        pushed = self.library.push(stack, goal, prediction_error=1.0 if failed else None)
        run.pushed.extend(p.name for p in pushed)
        if pushed and run.progress:
            run.progress("pushed " + ", ".join(f"@{p.name}" for p in pushed))

    def _recall(self, stack: Stack, goal: str, run: _Run, first: bool) -> None:
        """Automatic recall before a step: the owner's memories most like the goal (and, after the
        first step, the newest frame), not already on the stack."""
        if self.memory is None:
            return
        from stackmind.memory import MemoryStoreError

        query = goal
        if not first:
            top = stack.peek()
            if top.kind == "goal" or top.provenance.get("source") == "memory":
                return
            query = f"{goal}\n{top.text[-500:]}"
        try:
            found = self.memory.recall(query, owner=self.owner, k=self.settings.recall_k)
        except MemoryStoreError as e:
            log.warning("recall failed: %s", e)
            return
        for r in found:
            if r.id in run.recalled or r.similarity < MIN_RECALL_SIMILARITY:
                continue
            run.recalled.add(r.id)
            stack.push_frame(r.to_frame())

    def _remember(self, episode: Episode, run: _Run) -> None:
        """Frames that left the stack and the conclusion go to long-term memory."""
        if self.memory is None:
            return
        from stackmind.memory import MemoryStoreError

        items = [f for f in run.left if f.kind in ("thought", "observation", "conclusion")
                 and f.provenance.get("source") != "memory" and f.text.strip()]
        if episode.answer is not None:
            value = 0.6 if episode.reward is None else 0.2 + 0.7 * max(0.0, min(1.0, episode.reward))
            items.append(Frame(kind="conclusion", text=f"{episode.goal} -> {episode.answer}", value=value,
                               provenance={"episode": episode.id}))
        if not items:
            return
        try:
            self.memory.store_many(items, owner=self.owner, episode=episode.id)
        except MemoryStoreError as e:
            log.warning("could not store the episode's memories: %s", e)

    def learn(self, episode: Episode) -> None:
        """An episode with a reward: hindsight labels, RPEs, and an online value-model update."""
        if not self.settings.learn or episode.reward is None:
            return
        from stackmind.value import ValueModelError, after_episode

        try:
            learned = after_episode(self.settings, episode)
        except ValueModelError as e:
            log.info("value model not updated: %s", e)
            return
        episode.meta["learning"] = {"labels": len(learned.labels), "rpe": len(learned.rpe),
                                    "value_version": learned.version}


_FRAME_LINE = re.compile(r"^\s*\[[a-z_]+\]\s")  # "[goal] ...", "[policy] ...": a line of the rendered stack


_ARITHMETIC = re.compile(r"^[\d\s.()+\-*/%]*\d\s*[+\-*/%]\s*[\d(][\d\s.()+\-*/%]*$")


def _restated_expression(answer: str, goal: str) -> str | None:
    """The answer when it is a bare arithmetic expression copied from the goal (so not yet computed)."""
    expr = " ".join(answer.rstrip(".").split())
    if not _ARITHMETIC.match(expr):
        return None
    inside = re.search(rf"(?<![\d.]){re.escape(expr.replace(' ', ''))}(?![\d.])", "".join(goal.split()))
    return expr if inside else None


def _copies_view(reply: str, view: str) -> bool:
    """Whether a reply only continues or repeats the rendered stack (no answer in it)."""
    if _FRAME_LINE.match(reply):
        return True
    text = " ".join(reply.split()).lower()
    return len(text) >= 12 and text in " ".join(view.split()).lower()


def _snapshot(llm: LLM) -> dict[str, float]:
    return dict(llm.usage.to_dict())


def _usage_since(llm: LLM, before: dict[str, float]) -> dict[str, float]:
    now = llm.usage.to_dict()
    keys = ("calls", "prompts", "prompt_tokens", "completion_tokens", "wall_seconds")
    return {k: round(now[k] - before[k], 3) for k in keys}


def _close_tool_state(ctx: ToolContext, keep: set[str]) -> None:
    for key, value in ctx.state.items():
        close = getattr(value, "close", None)
        if key not in keep and callable(close):
            close()


def policy_library(settings: Settings, tools: ToolRegistry, warn: ProgressFn | None = None) -> PolicyLibrary | None:
    """The learning policies the settings ask for (None when they are off); a file that does not
    parse is skipped with a warning, never a failure."""
    if not settings.policies:
        return None
    from stackmind.policies.library import default_policy_dirs, load_lenient

    library, problems = load_lenient(default_policy_dirs(settings.home), tools=tools)
    for p in problems:
        if p.severity == "error":
            (warn or log.warning)(f"policy skipped: {p}")
    return library


def default_tools(settings: Settings) -> ToolRegistry:
    """The tools an agent gets: the sandbox's @python, @recall of long-term memory, @wolfram."""
    from stackmind.tools.python import PythonTool
    from stackmind.tools.wolfram import WolframTool

    registry = ToolRegistry([PythonTool(), WolframTool()])
    if settings.memory:
        from stackmind.tools.recall import RecallTool

        registry.register(RecallTool())
    return registry
