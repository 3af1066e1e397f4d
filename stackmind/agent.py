"""The agent's loop, top to bottom.

    goal -> Stack (a named stack, one run at a time)
      first: worked examples of similar goals pushed (demonstrations from the trace library)
      before each step: long-term memory recalled onto the stack (owner-scoped)
                        learning policies whose triggers fire pushed (fast learning)
      -> render (value-weighted, token budget) -> StepFormat.messages -> LLM, the step grammar enforced
      -> StepFormat.parse: Thought | Action | Final
      -> an action runs a tool (the sandbox, recall, wolfram) -> observation frame,
         or invokes a learning policy (@name(...)): its examples pushed, the sub-goal solved by this
         same loop, everything popped, the result pushed back as a conclusion
      -> ... until a final answer or the step budget
    or, with a search strategy, the same steps expanded as a tree (stackmind.search), or several
    paths sampled and their answers voted on (self-consistency)
    -> reward from the goal's verifier (when it has one) -> episode trace, written after every step;
       frames that left the stack and the conclusion go to long-term memory; an episode with a reward
       is labelled in hindsight and the value model learns from it.

`Agent` holds the parts; `Agent.from_settings` opens the ones the settings ask for.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from stackmind.demos import DemoLibrary, default_trace_dirs
from stackmind.errors import StackmindError
from stackmind.llm import LLM, load_llm
from stackmind.llm.base import Message
from stackmind.memory import Memory, MemoryStoreError
from stackmind.policies import InvocationError, Invoker, Policy, PolicyLibrary, policy_frames
from stackmind.policies.library import BUILTIN_TOOLS, default_policy_dirs, load_lenient
from stackmind.search import Budget, SearchResult, solve
from stackmind.search.scorer import GENERIC_VALUE_PROMPT
from stackmind.settings import Settings
from stackmind.stack import Frame, LockTimeout, Stack, StackStore, drop_frames, parse_view, render_frames
from stackmind.stepformat import STOP, Action, Final, FormatError, ParsedStep, StepFormat, Thought
from stackmind.storage import EpisodeStore, SQLiteStackStore, open_episodes, open_store
from stackmind.tasks.answers import answer_key
from stackmind.tasks.base import State, ValueSpec, read_verdicts
from stackmind.tools import ToolContext, ToolRegistry, default_tools
from stackmind.tools.invocation import find_invocations
from stackmind.trace import Episode, Step
from stackmind.value import ValueModel, ValueModelError, after_episode, choose_scorer, current_version, trust

log = logging.getLogger("stackmind.agent")

ProgressFn = Callable[[str], None]
TextFn = Callable[[str], None]  # receives the final answer's text as it is generated
Verifier = Callable[[str | None], float]

MIN_RECALL_SIMILARITY = 0.7  # only a memory this close to the step is pushed (looser ones mislead a small model)
SUB_STEPS = 4  # the step budget of a policy's sub-goal
DEMOS = 2  # worked examples pushed before the first step
# Values a frame starts with, by kind, until the value model has learned better (its cold-start prior).
PRIOR = {"goal": 1.0, "trajectory": 0.8, "policy": 0.8, "conclusion": 0.9, "observation": 0.7,
         "action": 0.6, "thought": 0.5}


_DEMO_LOCK = threading.Lock()  # runs in threads share one demonstration library, loaded once


class GoalError(StackmindError, ValueError):
    """A goal the agent cannot take: empty, or larger than its working memory."""


@dataclass
class StepResult:
    """What one step of the loop produced."""

    reply: str
    step: ParsedStep | None  # None: the reply was not in the step format (no grammar was enforced)
    answer: str | None = None
    observation: str | None = None
    ok: bool = True  # False when the action failed (a tool error, a bad invocation, a malformed reply)
    policy: bool = False  # the action invoked a learning policy (its result is already on the stack)
    substeps: list[Step] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)  # why the step was sampled again, each time ("cut", "repeat", "copy")
    view: str | None = None  # the view the reply was given, when it is not the one the step was asked on
    repeated: bool = False  # every sample was a step already taken: it was not run again


@dataclass
class _Run:
    """One episode's working state."""

    episode: Episode
    ctx: ToolContext
    fmt: StepFormat
    invoker: Invoker | None
    progress: ProgressFn | None
    on_text: TextFn | None = None
    temperature: float = 0.0
    seed: int | None = None
    verify: Verifier | None = None  # the goal's checker, when it has one
    owner: str = "local"  # whose memories
    left: list[Frame] = field(default_factory=list)  # frames popped off the stack during the run
    recalled: set[str] = field(default_factory=set)  # memory ids already on the stack
    pushed: list[str] = field(default_factory=list)  # learning policies pushed by fast learning
    save: Callable[[], None] | None = None  # writes the episode as it stands (after every step)
    copy_told: bool = False  # told once that its answer was a worked example's (`_copied_example`)


@dataclass
class Agent:
    settings: Settings
    llm: LLM | None = None
    tools: ToolRegistry = field(default_factory=ToolRegistry)
    store: StackStore | None = None
    owner: str = "local"
    library: PolicyLibrary | None = None  # learning policies: fast learning and @name(...) calls
    memory: Memory | None = None  # long-term memory (owned by the caller, who closes it)
    demos: DemoLibrary | None = None  # worked examples by similarity (loaded on first use)
    scorer: object | None = None  # for tree searches; default: the value model when trusted, else the judge
    _value_cache: tuple[str, object] | None = field(default=None, repr=False)
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
        """The LLM, loaded on first use."""
        if self.llm is None:
            self.llm = load_llm(self.settings)
        return self.llm

    def warm(self) -> None:
        """Load now what a first step would wait for: the model, the demonstrations with their vectors
        (the embedder), and the system prompt read once, so that the backend's prefix cache holds it
        and a chat's first reply does not pay for any of them (the system prompt is about 350 tokens,
        some 3-4 s of prompt reading on two cores)."""
        model = self.model()
        fmt = self.step_format()
        if self.settings.demos > 0:
            self.demo_library(fmt).select("warm", 1)
        if getattr(model.backend, "caches_prefixes", False):  # in process; a server may be down at start
            model.generate([fmt.messages("", "hello")], max_tokens=1, temperature=0.0)

    def stack(self, name: str) -> Stack:
        assert self.store is not None
        return Stack(self.store, name, self.model().count_tokens)

    def push_between_runs(self, stack_name: str, kind: str, text: str, value: float, **provenance: Any) -> None:
        """Push a frame onto a named stack when no run is on it (waiting for one to finish): a run
        settles its stack back to where it started, and would take a frame pushed meanwhile with it
        (a /think conclusion reached during a chat turn)."""
        with self._stack_lock(stack_name, None):
            self.stack(stack_name).push(kind, text, value=value, **provenance)

    def step_format(self) -> StepFormat:
        """The format of this agent's steps. Its tools are described in the system prompt; a learning
        policy becomes callable when its frames are on the stack (`StepFormat.calling`)."""
        return StepFormat.for_names({t: self.tools.get(t).description  # type: ignore[union-attr]
                                     for t in self.tools.names()})

    def _callable(self, run: _Run, frames: Sequence[Frame]) -> StepFormat:
        """The format for the next step: the tools, and the learning policies whose frames are on the stack."""
        if self.library is None:
            return run.fmt
        names = {f.provenance.get("policy") for f in frames if f.kind in ("policy", "trajectory")}
        return run.fmt.calling(n for n in names if isinstance(n, str) and n in self.library)

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
        verify: Verifier | None = None,
        on_text: TextFn | None = None,
        samples: int | None = None,
        meta: dict[str, object] | None = None,
        owner: str | None = None,
    ) -> Episode:
        """Reach one goal; the episode is written to the data dir after every step.

        ``policies``: push exactly these learning policies first and do no fast learning of its own
        (``[]`` for none). ``search``: none (one path), vote (``samples`` paths, the majority answer),
        or bfs | dfs | mcts (a tree of steps); default: the settings'. ``verify``: the goal's checker
        (answer -> reward in [0, 1]); the episode's reward when given. ``on_text`` receives the final
        answer as it is generated. ``owner``: whose memories (default: the agent's).

        When the run ends, the frames it pushed leave the stack (to long-term memory) and the goal and
        its conclusion stay: a conversation's stack is its goals and answers."""
        llm = self.model()
        owner = owner or self.owner
        goal = self.check_goal(goal)
        episode = Episode(goal=goal, model=llm.name)
        episode.stack = stack_name or f"run-{episode.id}"
        episode.meta.update(meta or {})
        episode.meta["status"] = "running"
        episode.meta["tools"] = sorted(self.tools.names())  # the step format it was prompted in
        strategy = search or self.settings.search
        n = samples or self.settings.samples
        if strategy == "none" and n > 1:
            strategy = "vote"
        with self._stack_lock(episode.stack, progress):
            stack = self.stack(episode.stack)
            self._clear_interrupted(stack)
            ctx = ToolContext(self.settings, owner=owner, stack=stack, episode_id=episode.id)
            if self.memory is not None:
                ctx.state["memory"] = self.memory
            owned = set(ctx.state)  # the agent's own parts: not closed with the episode
            fmt = self.step_format()
            invoker = Invoker(self.library) if self.library is not None else None
            run = _Run(episode, ctx, fmt, invoker, progress, on_text, temperature=self.settings.temperature,
                       seed=self.settings.seed, verify=verify, owner=owner)
            run.save = lambda: self.episodes.save(episode)
            mark = len(stack)
            stack.on_pop = run.left.append
            self._push_demos(stack, goal, fmt, run)
            if policies is not None:
                self._push_policies(stack, goal, policies, run)
            stack.push("goal", goal, value=PRIOR["goal"], episode=episode.id)
            run.save()
            usage_before = dict(llm.usage.to_dict())
            t0 = time.perf_counter()
            try:
                if strategy == "vote":
                    episode.answer = self._vote(goal, stack, run, max(2, n), max_steps, fast=policies is None)
                elif strategy != "none":
                    episode.answer = self._tree_search(goal, stack, strategy, run)
                else:
                    episode.answer = self._loop(goal, stack, run, episode.steps, depth=0,
                                                max_steps=max_steps or self.settings.max_steps,
                                                fast=policies is None)
                self._settle(stack, mark, goal, episode)
                if verify is not None:
                    episode.reward = float(verify(episode.answer))
                episode.meta["status"] = "done"
            except BaseException:
                episode.meta["status"] = "failed"
                self._settle(stack, mark, goal, episode)
                raise
            finally:
                stack.on_pop = None
                _close_tool_state(ctx, keep=owned)
                episode.meta["usage"] = _usage_since(llm, usage_before)
                episode.meta["wall_seconds"] = round(time.perf_counter() - t0, 3)
                episode.meta["owner"] = owner
                if run.pushed:
                    episode.meta["policies"] = run.pushed
                run.save()
        self._remember(episode, run)
        self.learn(episode)
        return episode

    def _settle(self, stack: Stack, mark: int, goal: str, episode: Episode) -> None:
        """The run's working frames leave the stack (to memory); its goal and conclusion stay."""
        while len(stack) > mark:
            stack.pop()
        stack.push("goal", goal, value=PRIOR["goal"], episode=episode.id)
        if episode.answer is not None:
            stack.push("conclusion", episode.answer, value=PRIOR["conclusion"], episode=episode.id)

    def check_goal(self, goal: str) -> str:
        """The goal as the agent takes it; an empty one, or one larger than the working memory, is refused."""
        goal = (goal or "").strip()
        if not goal:
            raise GoalError("the goal is empty: say what the agent should reach")
        budget = self.settings.render_budget_tokens
        n = self.model().count_tokens(goal) if len(goal) < 40 * budget else len(goal) // 4
        if n > budget * 3 // 4:
            raise GoalError(f"the goal is about {n} tokens; the agent's working memory holds {budget} "
                            "(STACKMIND_RENDER_BUDGET_TOKENS), and the goal must leave room for its steps: "
                            "shorten the goal or raise the budget")
        return goal

    def _loop(self, goal: str, stack: Stack, run: _Run, steps: list[Step], *, depth: int, max_steps: int,
              fast: bool) -> str | None:
        """Think, act, observe on ``stack`` until an answer (returned) or the step budget (None)."""
        failed = stuck = False
        worked: dict[str, bool] = {}  # each step taken on the goal (`_taken_key`): a call that ran and worked?
        for i in range(max_steps):
            if depth == 0:
                self._recall(stack, goal, run, first=i == 0)
                if fast:
                    self._fast_learning(stack, goal, run, failed)
            view = stack.render(self.settings.render_budget_tokens)
            if run.progress:
                where = f"step {i + 1}" if depth == 0 else f"sub-goal (depth {depth}) step {i + 1}"
                run.progress(f"{where}: thinking ...")
            result = self.step(view, goal, run, depth=depth, fmt=self._callable(run, stack.frames()),
                               thought_alone=not (steps and _bare_thought(steps[-1], run.fmt)),
                               last=i == max_steps - 1 or stuck, taken=worked)
            stuck = result.repeated  # it has nothing new to try: it answers with what it has
            worked.setdefault(_taken_key(result.step, result.reply), result.ok and isinstance(result.step, Action))
            steps.append(Step(thought=result.reply, action=result.step.call.text
                              if isinstance(result.step, Action) else None,
                              observation=result.observation, view=result.view or view, substeps=result.substeps,
                              meta={"depth": depth} if depth else {}))
            if not isinstance(result.step, Action | Thought | Final):
                steps[-1].meta["format_error"] = True
            if result.resampled:
                steps[-1].meta["resampled"] = result.resampled
            failed = not result.ok
            if run.save is not None and depth == 0:
                run.save()
            if result.answer is not None and i < max_steps - 1 and not run.copy_told:
                copied = _copied_example(result.answer, goal, stack.frames())
                if copied is not None:  # told once, while a step is left: then any answer is taken
                    run.copy_told = True
                    steps[-1].meta["copied_example"] = copied
                    result = StepResult(result.reply, None, ok=False, observation=(
                        f"{result.answer.strip()[:80]} is the answer of a worked example above, to another goal "
                        f"({copied[:120]}); it is not this goal's: work this goal out with its own numbers"))
                    steps[-1].observation = result.observation
            if result.answer is not None:
                steps[-1].value = self.valued(Frame("conclusion", result.answer), run, stack.frames()).value
                return result.answer
            pushed = self._push_step(stack, result, run)
            if pushed:  # the step's predicted value: that of the state it ended in (the RPE's baseline)
                steps[-1].value = pushed[-1].value
        return None

    def step(self, view: str, goal: str, run: _Run, *, depth: int = 0, fmt: StepFormat | None = None,
             thought_alone: bool = True, last: bool = False,
             taken: Mapping[str, bool] | None = None) -> StepResult:
        """One step: ask the model (the grammar makes the reply one step), then act on it. The step
        budget's ``last`` step may only be the final answer: a run ends with its best answer. A reply
        the token limit cut mid-step, one word for word a step already ``taken`` on this goal (the
        same call again observes the same: a call that failed is one, as an action or as the final
        answer) or a thought nearly word for word one taken, a call copied from a worked example on the stack with
        that example's numbers, or an answer that is a program printing a string written in it, is
        sampled again (`Settings.resamples`); when every try before the last copied an example's call,
        the last is asked without the worked examples (demonstrations) on the view, rather than take
        a copy with another goal's numbers. ``taken`` maps each step taken (`_taken_key`) to whether it
        was a call that ran and worked. A call that worked, written again as an action,
        is not sampled again (a variant of a program that worked observes what it
        observed: Game of 24, the search printed the answer and the model reran it with the operations
        reordered, step after step), and the step is asked as the final answer instead."""
        fmt = fmt or run.fmt
        taken = taken or {}
        stream = _AnswerStream(run.on_text) if run.on_text is not None and depth == 0 else None
        messages = fmt.messages(view, goal)
        temperature, seed = run.temperature, run.seed
        why: str | None = None
        words_only = False  # a sample wrote its answer's words as a program printing them
        asked = view
        reasons: list[str] = []
        for attempt in range(self.settings.resamples + 1):
            if why is not None:
                reasons.append(why)
            if why not in (None, "answered"):
                # At temperature 0 the same prompt gives the same reply: sample the step.
                temperature = max(run.temperature, self.settings.vote_temperature)
                seed = (run.seed or 0) * 7919 + attempt
            if (why == "copy" and attempt == self.settings.resamples
                    and (bare := drop_frames(view, {"trajectory"})) != view):  # the last try: the example misleads
                asked, messages = bare, fmt.messages(bare, goal)
            if stream is not None:
                stream.restart()
            grammar = fmt.grammar(thought_alone=thought_alone, final_only=last, words_only=words_only)
            gen = self.model().generate(
                [messages], max_tokens=self.settings.max_new_tokens, temperature=temperature, seed=seed,
                stop=STOP, grammar=grammar, on_text=stream.feed if stream is not None else None)
            reply = gen.texts[0][0].strip()
            parsed = _parsed(fmt, reply)
            key = _taken_key(parsed, reply)
            if isinstance(parsed, Action) and taken.get(key) and not last:
                why, last = "answered", True  # what the call gave stands: the step is the final answer
                continue
            in_words = isinstance(parsed, Final) and not parsed.answer.startswith("@")
            if not in_words and (key in taken and not taken[key] or _near_repeat(parsed, taken, fmt)):
                why = "repeat"  # a step already taken (or a thought nearly one): decided before its call runs again
                continue
            if _copied_call(parsed, goal, view):
                why = "copy"  # a worked example's program, with that example's numbers
                continue
            if _printed_literal(parsed):
                why, words_only = "literal", True  # words written as a program: asked for as words
                continue
            result = self.act(reply, run, depth=depth, fmt=fmt)
            why = "cut" if result.step is None and gen.cut() else None  # the grammar held, the limit cut it
            if why == "cut" and _PRINTING_WORDS.match(reply):
                words_only = True  # cut while it printed its answer's words: they are asked for as words
            if why is None:
                break
        else:
            if why in ("repeat", "answered"):  # every sample was a step already taken: running it again observes the same
                result = StepResult(reply, parsed, ok=False, repeated=True, observation=(
                    "(the same step again: what it gave is above; the next step is the final answer)"))
            elif why in ("copy", "literal"):  # every sample was one of those: the last is taken, as it is
                result = self.act(reply, run, depth=depth, fmt=fmt)
        result.resampled = reasons
        if asked != view:
            result.view = asked
        if why == "cut":
            result.observation = (f"(the step ran past its {self.settings.max_new_tokens} tokens "
                                  f"{attempt + 1} times and was dropped)")
        return result

    def act(self, reply: str, run: _Run, *, depth: int = 0, fmt: StepFormat | None = None) -> StepResult:
        """What a reply means: a thought, an answer, or a tool or policy call (run here)."""
        try:
            step = (fmt or run.fmt).parse(reply)
        except FormatError as e:
            return StepResult(reply, None, observation=f"that reply is not one step ({e})", ok=False)
        if isinstance(step, Thought):
            return StepResult(reply, step)
        if isinstance(step, Final):
            call = self._answer_call(step.answer, run)
            if call is None:
                return StepResult(reply, step, answer=step.answer)
            # "Final answer: @python(print(...))": the answer is what the call returns, when it works.
            observed = self.tools.run(call, run.ctx)
            answer = observed.text.strip() if observed.ok and observed.text.strip() else None
            return StepResult(reply, Action(call, step.thought), answer=answer, observation=observed.text,
                              ok=observed.ok)
        if self.tools.get(step.call.name) is None:
            return self._invoke_policy(reply, step, run, depth)
        observed = self.tools.run(step.call, run.ctx)
        return StepResult(reply, step, observation=observed.text, ok=observed.ok)

    def _answer_call(self, answer: str, run: _Run):  # noqa: ANN202
        calls = find_invocations(answer)
        if calls and calls[0].start == 0 and calls[0].end == len(answer) and self.tools.get(calls[0].name):
            return calls[0]
        return None

    def _push_step(self, stack: Stack, result: StepResult, run: _Run) -> list[Frame]:
        """Push a step's frames, each valued; returns them ([] when a policy's invoker pushed its own)."""
        if result.policy:
            return []  # the invoker pushed the call's conclusion
        frames = ([run.fmt.observation_frame(result.observation or "")] if result.step is None
                  else run.fmt.frames(result.step, result.observation))
        below = stack.frames()
        pushed = []
        for frame in frames:
            pushed.append(stack.push_frame(self.valued(frame, run, below)))
            below.append(pushed[-1])
        return pushed

    def valued(self, frame: Frame, run: _Run, below: Sequence[Frame]) -> Frame:
        """A frame with its value: the value model's prediction of the return from the state the frame
        ends (the goal, the last steps, this frame) when its held-out measurements earn it that
        (`value.select.trust`); else the frame kind's prior."""
        value, why = PRIOR.get(frame.kind, 0.5), "prior"
        model = self._trusted_value_model()
        if model is not None:
            recent = tuple(f.text for f in below[-6:] if f.kind in ("thought", "action", "observation"))
            value = model.score(run.episode.goal, [State((*recent, frame.text))])[0]
            why = f"value model {model.version}"
        return Frame(frame.kind, frame.text, round(float(value), 4),
                     {**frame.provenance, "episode": run.episode.id, "valued_by": why})

    def _trusted_value_model(self):  # noqa: ANN202
        """The current value model when it is trusted (checked once per version), else None."""
        version = current_version(self.settings)
        if version is None:
            return None
        cached = self._value_cache
        if cached is None or cached[0] != version:
            model = None
            try:
                candidate = ValueModel.load(self.settings, version)
                if trust(candidate.meta.get("metrics", {}))[0]:
                    model = candidate
            except ValueModelError as e:
                log.info("frames valued by their prior: %s", e)
            self._value_cache = cached = (version, model)
        return cached[1]

    def _invoke_policy(self, reply: str, step: Action, run: _Run, depth: int) -> StepResult:
        """``@name(...)`` of a learning policy: push its examples, solve the sub-goal with this same
        loop, pop, and push the result back (`stackmind.policies.invoke`)."""
        assert run.invoker is not None and run.ctx.stack is not None
        substeps: list[Step] = []

        def solve(subgoal: str, stack: Stack, d: int) -> str:
            answer = self._loop(subgoal, stack, run, substeps, depth=d, max_steps=SUB_STEPS, fast=False)
            return answer if answer is not None else "(no answer within the sub-goal's step budget)"

        try:
            result = run.invoker.invoke(step.call, run.ctx.stack, solve, depth)
        except InvocationError as e:
            return StepResult(reply, step, observation=str(e), ok=False, substeps=substeps)
        out = StepResult(reply, step, observation=result.result, policy=True, substeps=substeps)
        return out

    # ---- search strategies over the same steps ----------------------------------------------
    def _vote(self, goal: str, stack: Stack, run: _Run, n: int, max_steps: int | None, fast: bool) -> str | None:
        """Self-consistency: ``n`` paths sampled at temperature, each on its own copy of the stack, run
        side by side (the backend batches their steps); the answer most paths reached wins, and that
        path's frames go on the real stack."""
        base = stack.frames()
        store = SQLiteStackStore(Path(":memory:"))
        temperature = self.settings.vote_temperature
        paths: list[tuple[str | None, list[Step], Stack, _Run]] = []

        def one(k: int) -> tuple[str | None, list[Step], Stack, _Run]:
            s = Stack(store, f"path-{k}", stack.count_tokens)
            for f in base:
                s.push_frame(f)
            ctx = ToolContext(self.settings, owner=run.owner, stack=s, episode_id=run.episode.id)
            if self.memory is not None:
                ctx.state["memory"] = self.memory
            sub = _Run(run.episode, ctx, run.fmt, Invoker(self.library) if self.library is not None else None,
                       None, None, temperature=temperature, seed=(run.seed or 0) * 1000 + k, owner=run.owner)
            steps: list[Step] = []
            answer = self._loop(goal, s, sub, steps, depth=1, max_steps=max_steps or self.settings.max_steps,
                                fast=False)
            _close_tool_state(ctx, keep={"memory"})
            return answer, steps, s, sub

        if run.progress:
            run.progress(f"sampling {n} paths ...")
        with ThreadPoolExecutor(max_workers=n) as pool:
            paths = list(pool.map(one, range(n)))
        answers = [_answer_key(a) for a, *_ in paths]
        counts = Counter(a for a in answers if a is not None)
        run.episode.meta["vote"] = {"answers": [a for a, *_ in paths], "counts": dict(counts)}
        if not counts:
            chosen = 0
        else:
            best = max(counts.values())
            chosen = next(i for i, a in enumerate(answers) if a is not None and counts[a] == best)
        answer, steps, s, _ = paths[chosen]
        for st in steps:
            st.meta.pop("depth", None)
        run.episode.steps.extend(steps)
        for f in s.frames()[len(base):]:
            stack.push_frame(f)
        store.close()
        return answer

    def _tree_search(self, goal: str, stack: Stack, strategy: str, run: _Run) -> str | None:
        """A tree of steps (bfs, dfs, mcts): each node is a stack state; its children are sampled steps,
        an action's observation part of the child. The tree is kept on the episode."""
        llm = self.model()
        task = StepTree(self, goal, stack.frames(), run)
        task.verify = run.verify
        scorer = self.scorer
        if scorer is None:
            scorer, why = choose_scorer(self.settings, llm, task)
            run.episode.meta["scorer"] = why
        budget = Budget(llm_calls=self.settings.search_max_calls, seconds=self.settings.search_max_seconds)
        result = solve(task, llm, strategy=strategy, scorer=scorer, budget=budget,  # type: ignore[arg-type]
                       seed=self.settings.seed, progress=run.progress, samples=self.settings.search_samples,
                       temperature=self.settings.vote_temperature)
        run.episode.tree = result.tree.to_json()
        run.episode.meta["search"] = result.summary()
        path = task.path(result)
        run.episode.steps.extend(s.data["step"] for s in path)
        for f in (path[-1].data["frames"][len(task.base):] if path else ()):
            stack.push_frame(f)
        return result.answer

    # ---- fast learning and memory -----------------------------------------------------------
    def demo_library(self, fmt: StepFormat) -> DemoLibrary:
        with _DEMO_LOCK:
            return self._demo_library(fmt)

    def _demo_library(self, fmt: StepFormat) -> DemoLibrary:
        if self.demos is None:
            episodes = self.settings.episodes_dir if self.settings.demos_from_episodes else None
            self.demos = DemoLibrary.load(fmt, default_trace_dirs(self.settings.home), episodes)
        return self.demos

    def _push_demos(self, stack: Stack, goal: str, fmt: StepFormat, run: _Run) -> None:
        if self.settings.demos <= 0:
            return
        library = self.demo_library(fmt)
        chosen = library.select(goal, self.settings.demos) or library.fallbacks(goal)
        for d in reversed(chosen):  # the most similar one nearest the goal
            stack.push("trajectory", d.text, value=PRIOR["trajectory"], source="demo", origin=d.origin,
                       episode=run.episode.id)
        if chosen:
            run.episode.meta["demos"] = [d.origin for d in chosen]

    def _push_policies(self, stack: Stack, goal: str, policies: Sequence[Policy], run: _Run) -> None:
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
        pushed = self.library.push(stack, goal, prediction_error=1.0 if failed else None, tools=self.tools.names())
        run.pushed.extend(p.name for p in pushed)
        if pushed and run.progress:
            run.progress("pushed " + ", ".join(f"@{p.name}" for p in pushed))

    def _recall(self, stack: Stack, goal: str, run: _Run, first: bool) -> None:
        """Automatic recall before a step: the owner's memories most like the goal (and, after the
        first step, the newest frame), not already on the stack."""
        if self.memory is None:
            return
        query = goal
        if not first:
            top = stack.peek()
            if top.kind == "goal" or top.provenance.get("source") == "memory":
                return
            query = f"{goal}\n{top.text[-500:]}"
        try:
            found = self.memory.recall(query, owner=run.owner, k=self.settings.recall_k)
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
        items = [f for f in run.left if f.kind in ("thought", "observation", "conclusion")
                 and f.provenance.get("source") != "memory" and f.text.strip()]
        if episode.answer is not None:
            value = 0.6 if episode.reward is None else 0.2 + 0.7 * max(0.0, min(1.0, episode.reward))
            items.append(Frame(kind="conclusion", text=f"{episode.goal} -> {episode.answer}", value=value,
                               provenance={"episode": episode.id}))
        if not items:
            return
        try:
            self.memory.store_many(items, owner=run.owner, episode=episode.id)
        except MemoryStoreError as e:
            log.warning("could not store the episode's memories: %s", e)

    def learn(self, episode: Episode) -> None:
        """An episode with a reward: hindsight labels, RPEs, and an online value-model update."""
        if not self.settings.learn or episode.reward is None:
            return
        try:
            learned = after_episode(self.settings, episode)
        except ValueModelError as e:
            log.info("value model not updated: %s", e)
            return
        episode.meta["learning"] = {"labels": len(learned.labels), "rpe": len(learned.rpe),
                                    "value_version": learned.version}
        self.episodes.save(episode)

    # ---- one run per named stack -------------------------------------------------------------
    @contextmanager
    def _stack_lock(self, name: str, progress: ProgressFn | None) -> Iterator[None]:
        """Runs on one named stack take turns (the store's lock: a file lock on SQLite, an advisory lock
        on PostgreSQL, so across hosts too): each sees only its own frames and the finished runs'."""
        assert self.store is not None
        lock = self.store.lock(f"stack:{name}", timeout=0)
        try:
            lock.__enter__()
        except LockTimeout:
            if progress:
                progress(f"another run is using the stack {name!r}; waiting for it to finish ...")
            lock = self.store.lock(f"stack:{name}")
            lock.__enter__()
        try:
            yield
        finally:
            lock.__exit__(None, None, None)

    def _clear_interrupted(self, stack: Stack) -> None:
        """Frames of runs on this stack that never finished (killed): their goal must not haunt it."""
        mine = {f.provenance.get("episode") for f in stack.frames() if f.provenance.get("episode")}
        for ep_id in mine:
            try:
                ep = self.episodes.load(ep_id)
            except (OSError, StackmindError):
                continue
            if ep.meta.get("status") != "running":
                continue
            kept = [f for f in stack.frames() if f.provenance.get("episode") != ep_id]
            stack.clear()
            for f in kept:
                stack.push_frame(f)
            ep.meta["status"] = "interrupted"
            self.episodes.save(ep)


class StepTree:
    """The agent's steps as a search task (`stackmind.search.base.Task`): a state is the stack's frames
    after a path of steps; expanding it samples steps in the step format, grammar enforced, and acts
    on each as the single path does (a tool runs, a policy's sub-goal is solved), so a child holds its
    action's observation. A Final step ends a path; the goal's verifier (when given) checks it."""

    name = "agent"

    def __init__(self, agent: Agent, goal: str, base: Sequence[Frame], run: _Run) -> None:
        self.agent, self.goal, self.run = agent, goal, run
        self.base = tuple(base)
        self.max_depth = agent.settings.max_steps
        self.propose_max_tokens = agent.settings.max_new_tokens
        self.propose_stop = STOP
        self.propose_grammar = agent._callable(run, self.base).grammar()
        self.verify: Verifier | None = None
        self._count = agent.model().count_tokens

    def root(self) -> State:
        return State((), None, {"frames": self.base, "answer": None})

    def view(self, state: State) -> str:
        return render_frames(state.data["frames"], self.agent.settings.render_budget_tokens)

    def propose_prompt(self, state: State) -> list[Message]:
        return self.run.fmt.messages(self.view(state), self.goal)

    def children(self, state: State, completions: Sequence[str]) -> list[State]:
        out: list[State] = []
        for reply in completions:
            view = self.view(state)
            store = SQLiteStackStore(Path(":memory:"))
            try:
                stack = Stack(store, "node", self._count)
                for f in state.data["frames"]:
                    stack.push_frame(f)
                ctx = ToolContext(self.agent.settings, owner=self.run.owner, stack=stack,
                                  episode_id=self.run.episode.id)
                sub = _Run(self.run.episode, ctx, self.run.fmt,
                           Invoker(self.agent.library) if self.agent.library is not None else None, None,
                           owner=self.run.owner)
                result = self.agent.act(reply.strip(), sub, fmt=self.agent._callable(sub, state.data["frames"]))
                _close_tool_state(ctx, keep=set())
                if result.step is None:
                    continue  # not a step: nothing to search from
                if result.answer is None:
                    self.agent._push_step(stack, result, sub)
                frames = tuple(stack.frames())
            finally:
                store.close()
            step = Step(thought=result.reply, observation=result.observation, view=view,
                        action=result.step.call.text if isinstance(result.step, Action) else None)
            out.append(state.then(result.reply.strip(), frames=frames, answer=result.answer, step=step))
        return out

    def value_spec(self, state: State) -> ValueSpec:
        return ValueSpec(GENERIC_VALUE_PROMPT.format(goal=self.goal, steps=state.render() or "(none yet)"), 48,
                         ("\n\n",))

    def read_value(self, samples: Sequence[str]) -> float:
        return read_verdicts(samples)

    def is_final(self, state: State) -> bool:
        return state.data.get("answer") is not None or state.depth >= self.max_depth

    def outcome(self, state: State) -> float | None:
        answer = state.data.get("answer")
        if answer is None or self.verify is None:
            return None
        return float(self.verify(answer))

    def answer(self, state: State) -> str | None:
        return state.data.get("answer")

    def path(self, result: SearchResult) -> list[State]:
        """The states from the root's first child to the chosen node."""
        if result.best is None:
            return []
        return [result.tree.states[n] for n in result.tree.path(result.best)[1:]]


class _AnswerStream:
    """Passes on only the final answer's text from a streamed reply ("Final answer: ..." after any
    thought); an answer that is a call (``Final answer: @python(...)``) is not shown: what it prints
    will be the answer."""

    MARK = "Final answer: "

    def __init__(self, on_text: TextFn) -> None:
        self.on_text = on_text
        self.buffer = ""  # this sample's reply so far (`restart` empties it)
        self.shown = ""  # the answer text passed on, over all samples of the step

    def restart(self) -> None:
        """A new sample of the step: it is shown only where it goes on from what was shown (text
        already passed on cannot be taken back; the finished answer is given whole at the end)."""
        self.buffer = ""

    def feed(self, _prompt: int, _sample: int, delta: str) -> None:
        self.buffer += delta
        at = self.buffer.find(self.MARK)
        if at == -1:
            return
        text = self.buffer[at + len(self.MARK):]
        if not text.strip() or text.lstrip().startswith("@"):
            return
        if len(text) > len(self.shown) and text.startswith(self.shown):
            self.on_text(text[len(self.shown):])
            self.shown = text


def _parsed(fmt: StepFormat, reply: str) -> ParsedStep | None:
    try:
        return fmt.parse(reply)
    except FormatError:
        return None


def _taken_key(step: ParsedStep | None, reply: str) -> str:
    """What makes two steps the same step: a call's text, however it was written (an action, or the
    final answer as a call), else the reply."""
    if isinstance(step, Action):
        return step.call.text
    if isinstance(step, Final) and step.answer.startswith("@"):
        return step.answer
    return reply


NEAR_REPEAT = 0.8  # word-sequence similarity at which a thought says again what a taken one said


def _near_repeat(step: ParsedStep | None, taken: Collection[str], fmt: StepFormat) -> bool:
    """Whether a thought says nearly word for word what a thought already taken on this goal said
    (similarity of their word sequences >= `NEAR_REPEAT`): a small model's sampled thoughts often
    differ only in a few words, and each such step spends one of the budget without moving."""
    if not isinstance(step, Thought):
        return False
    words = step.text.lower().split()
    for earlier in taken:
        before = _parsed(fmt, earlier)
        if isinstance(before, Thought) and SequenceMatcher(
                None, words, before.text.lower().split(), autojunk=False).ratio() >= NEAR_REPEAT:
            return True
    return False


def _bare_thought(step: Step, fmt: StepFormat) -> bool:
    return isinstance(fmt.step_of(step), Thought)


COPY_MAX_WORDS = 8  # the longest answer `_copied_example` holds against an example's
_EXAMPLE_GOAL = re.compile(r"(?:Worked example\. Goal:|^\s*goal:|^\[goal\]) (.+)$", re.MULTILINE)
_EXAMPLE_ANSWER = re.compile(r"(?:Final answer:|^\[conclusion\])\s*(.+)$", re.MULTILINE)


def _copied_example(answer: str, goal: str, frames: Sequence[Frame]) -> str | None:
    """The goal of a worked example on the stack (a demonstration, a policy's example or trajectory)
    whose answer this is, when that goal is another one and the answer is not in this goal's own
    text: a small model copies the nearest example's answer instead of working its own goal out.
    Only a short answer (a value, a word or a few) counts: a long one word for word an example's is
    that example's prose (a greeting's reply), which fits a goal like its own."""
    if len(answer.split()) > COPY_MAX_WORDS:
        return None
    key = answer_key(answer)
    if key is None or key in {answer_key(w) for w in re.findall(r"-?\d+(?:\.\d+)?", goal)}:
        return None
    here = " ".join(goal.split()).lower()
    for f in frames:
        if f.kind not in ("trajectory", "policy"):
            continue
        goals = [(m.start(), m.group(1).strip()) for m in _EXAMPLE_GOAL.finditer(f.text)]
        for m in _EXAMPLE_ANSWER.finditer(f.text):
            owner = next((g for at, g in reversed(goals) if at < m.start()), None)
            if owner is not None and " ".join(owner.split()).lower() != here and answer_key(m.group(1)) == key:
                return owner
    return None


_NUMBER = r"\d+(?:\.\d+)?"
_QUOTED = r"'([^'\n]*)'|\"([^\"\n]*)\""


def _copied_call(step: ParsedStep | None, goal: str, view: str) -> bool:
    """Whether the code of the step's call (an action, or a final answer that is a call) is written
    word for word in a worked example on the stack (a demonstration, a policy's example), or is a
    piece of one, and holds a literal (a number, a quoted string) that is not in this goal: a small
    model copies the nearest example's program, its numbers and words and all."""
    if isinstance(step, Action):
        call = step.call.raw
    elif isinstance(step, Final) and (calls := find_invocations(step.answer)) and calls[0].text == step.answer.strip():
        call = calls[0].raw
    else:
        return False
    numbers = set(re.findall(_NUMBER, goal))
    if all(n in numbers for n in re.findall(_NUMBER, call)) and all(
            q in goal for q in (a or b for a, b in re.findall(_QUOTED, call)) if q):
        return False
    here, needle = " ".join(goal.split()), " ".join(call.split())
    return any(kind in ("trajectory", "policy") and needle in (text := " ".join(body.split())) and here not in text
               for kind, body in parse_view(view))


_PRINT = r"print\(\s*"  # a program printing a string written in it: the whole program, and its start
_PRINTED_LITERAL = re.compile(_PRINT + r"""(?:'[^'\n]*'|"[^"\n]*")\s*\)""")
_PRINTING_WORDS = re.compile(r"(?:Thought: [^\n]*\n)?Final answer: @python\(" + _PRINT + "['\"]")


def _printed_literal(step: ParsedStep | None) -> bool:
    """Whether the step answers with a program that only prints a string written in it
    (``Final answer: @python(print('Paris is ...'))``): words dressed as a computation, which the
    answer's stream cannot show as it is written. Such an answer is sampled again."""
    if not isinstance(step, Final) or not (calls := find_invocations(step.answer)):
        return False
    return (calls[0].text == step.answer.strip() and calls[0].name == "python"
            and _PRINTED_LITERAL.fullmatch(calls[0].raw.strip()) is not None)


def _answer_key(answer: str | None) -> str | None:
    """Answers that say the same thing vote together (case, spacing and a trailing period aside)."""
    if answer is None or not answer.strip():
        return None
    return answer_key(answer)


def _usage_since(llm: LLM, before: dict[str, float]) -> dict[str, float]:
    now = llm.usage.to_dict()
    keys = ("calls", "prompts", "prompt_tokens", "completion_tokens", "wall_seconds", "cached_tokens")
    return {k: round(now[k] - before.get(k, 0), 3) for k in keys}


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
    # Checked against every tool the agent can have (a policy that shows @recall still loads when
    # memory is off; the step grammar then does not offer the call).
    library, problems = load_lenient(default_policy_dirs(settings.policies_home or settings.home),
                                     tools=tools.names() | BUILTIN_TOOLS)
    for p in problems:
        if p.severity == "error":
            (warn or log.warning)(f"policy skipped: {p}")
    return library
