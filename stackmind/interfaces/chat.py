"""The conversation loop shared by the Telegram bot and the terminal chat.

    message ──► the chat's Stack (an observation frame) ──► render under a token budget ──► LLM
            ◄── reply streamed in chunks ◄── one batched generate per round, across chats

One worker owns the model (the in-process model does one generate at a time). It works in *rounds*:
each round takes every chat that is waiting or mid-answer (up to ``max_batch``, oldest first, one
turn per chat) and advances all of them by one chunk of tokens in ONE batched generate. A new chat
joins at the next chunk boundary, so a long answer never makes another chat wait for all of it
(fair), and several chats share the cost of a forward pass (batched). Messages that arrive while
their chat is mid-answer wait for the next turn, and then are answered together in one reply, as a
person would: nothing is dropped (every message is on the stack) and the model is not asked the
same stale question fifty times.

Requests that are not chat turns (a ``/think`` run of the agent, with its own sampling settings)
go through `Conversations.llm_for_agents`, an `LLM` whose backend queues on the same worker and runs
between chat rounds.

Every turn is saved as an episode trace (goal = the messages, answer = the reply) so a thumbs up or
down (`Conversations.rate`) becomes the episode's reward for hindsight labelling, and it nudges the
value of the reply's frame on the stack (fast learning: liked answers stay in context longer).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

from stackmind.errors import StackmindError
from stackmind.llm import LLM, Completion, Request
from stackmind.llm.base import Message
from stackmind.settings import Settings
from stackmind.stack import Frame, Stack, StackStore
from stackmind.storage import open_episodes, open_store
from stackmind.trace import Episode, Step, TraceError

log = logging.getLogger("stackmind.chat")

PartialFn = Callable[[str], Awaitable[None]]
ProgressFn = Callable[[str], Awaitable[None]]

CHAT_SYSTEM = (
    "You are stackmind, a concise and friendly assistant chatting over {channel}. "
    "Answer the user's latest message briefly and accurately."
)


class ChatSettings(BaseSettings):
    """How the conversation loop uses the model (env ``STACKMIND_CHAT_*``)."""

    model_config = SettingsConfigDict(env_prefix="STACKMIND_CHAT_", env_file=".env", extra="ignore")

    max_reply_tokens: int = 160  # a chat reply is short; /think has the agent's own budget
    first_chunk_tokens: int = 8  # small, so the first words show early
    chunk_tokens: int = 24  # later chunks: bigger, fewer re-reads of the prompt
    max_batch: int = 16  # chats advanced together in one generate
    render_budget_tokens: int = 384  # how much of the chat's stack the model sees
    recall_k: int = 3  # memories recalled per turn (when long-term memory is on)
    memory: bool = True  # use long-term memory (chromadb) when it is installed
    think_steps: int = 6  # agent steps for /think


@dataclass(frozen=True)
class ChatRef:
    """Whose conversation: the stack it lives on and the memory owner."""

    stack: str  # e.g. "telegram-12345" (one per chat)
    owner: str  # e.g. "telegram:67890" (one per user; memories are scoped to it)
    channel: str = "chat"  # shown to the model: "Telegram", "a terminal"


@dataclass
class Reply:
    text: str
    episode_id: str
    messages: list[str]  # the user messages this reply answers (several when they came in a burst)
    frame_id: int | None = None  # the reply's frame on the stack
    first_visible_s: float | None = None  # from the turn's start to the first partial text
    total_s: float = 0.0
    # Several messages that came in a burst get one reply; the caller of the first of them is the
    # leader (it was streamed the partial text and should deliver the reply), the others need not.
    leader: bool = True


@dataclass
class _Turn:
    chat: ChatRef
    messages: list[str]
    futures: list[asyncio.Future[Reply]]
    partial: PartialFn | None  # the first caller's: streamed the text as it grows
    prompt: str | list[Message] = ""
    text: str = ""
    tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    first_visible_s: float | None = None
    view: str = ""
    recalled: list[str] = field(default_factory=list)


@dataclass
class _Raw:
    request: Request
    future: asyncio.Future[list[Completion]]


class ConversationClosed(StackmindError, RuntimeError):
    """The conversation loop is shutting down and takes no new work."""


class Conversations:
    """The conversation loop: one per process, shared by every chat."""

    def __init__(
        self,
        settings: Settings,
        llm: LLM,
        *,
        store: StackStore | None = None,
        memory: Any = None,
        config: ChatSettings | None = None,
        tools: Any = None,
    ) -> None:
        self.settings = settings.ensure_dirs()
        self.llm = llm
        self.store = store or open_store(settings)
        self.episodes = open_episodes(settings)
        self.memory = memory  # a stackmind.memory.Memory, or None
        self.config = config or ChatSettings()
        self.tools = tools  # a ToolRegistry for /think; default_tools(settings) when None
        self._library: Any = None  # learning policies for /think, loaded on first use
        self._waiting: dict[str, list[_Turn]] = {}  # per chat, in arrival order
        self._active: dict[str, _Turn] = {}  # per chat, the turn being answered
        self._raw: list[_Raw] = []
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._background: set[asyncio.Task[Any]] = set()
        self._memory_lock = threading.Lock()  # Memory is not thread-safe
        self.rounds = 0  # batched generates run for chat turns (benchmarks read it)
        self.round_sizes: list[int] = []

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> Conversations:
        if self._worker is None:
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            self._worker = asyncio.create_task(self._work(), name="stackmind-chat-worker")
        return self

    async def close(self, grace_s: float = 30.0) -> None:
        """Stop taking work, finish what is in flight (up to ``grace_s``), then stop the worker."""
        self._closing = True
        pending = [f for turns in self._waiting.values() for t in turns for f in t.futures]
        pending += [f for t in self._active.values() for f in t.futures]
        pending += [r.future for r in self._raw]
        waitables: list[Any] = [*pending, *self._background]
        if waitables:
            done, not_done = await asyncio.wait(waitables, timeout=grace_s)
            for f in not_done:
                f.cancel()
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None

    async def __aenter__(self) -> Conversations:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- the stack of a chat -------------------------------------------------------------------
    def stack(self, chat: ChatRef) -> Stack:
        return Stack(self.store, chat.stack, self.llm.count_tokens)

    def stack_text(self, chat: ChatRef, last: int = 30) -> str:
        frames = self.stack(chat).frames()
        if not frames:
            return "The stack is empty."
        shown = frames[-last:]
        head = f"{len(frames)} frames" + (f" (the last {len(shown)} shown)" if len(shown) < len(frames) else "")
        lines = [f"{head}, top last:"]
        for f in shown:
            text = f.text if len(f.text) <= 200 else f.text[:197] + "..."
            lines.append(f"[{f.kind} {f.value:.2f}] {text}")
        return "\n".join(lines)

    async def forget(self, chat: ChatRef) -> str:
        """Clear the chat's stack. Long-term memories are dropped too where the memory supports it."""
        n = self.stack(chat).clear()
        text = f"Cleared {n} frames from this chat's stack."
        delete = getattr(self.memory, "delete_owner", None)
        if callable(delete):
            m = await asyncio.to_thread(self._with_memory, delete, chat.owner)
            text += f" Dropped {m} long-term memories."
        elif self.memory is not None:
            text += " Long-term memories stay until the forgetting policy retires them."
        return text

    def policies_text(self) -> str:
        try:
            from stackmind.policies.library import default_policy_dirs, load_lenient
        except ImportError:
            return "No learning-policy library is installed yet."
        lib, problems = load_lenient(default_policy_dirs(self.settings.home))
        if not len(lib):
            return "No learning policies found (put *.policy.yaml files in ./policies)."
        text = f"{len(lib)} learning policies:\n{lib.describe()}"
        if problems:
            text += f"\n({len(problems)} problems in policy files: run `stackmind policy check`)"
        return text

    # ---- a chat turn ------------------------------------------------------------------------------
    async def say(self, chat: ChatRef, text: str, on_partial: PartialFn | None = None) -> Reply:
        """Queue a message; resolve with the reply that answers it (streamed through ``on_partial``).

        Call order is message order: the message is queued before the first ``await``.
        """
        if self._closing or self._worker is None or self._wake is None:
            raise ConversationClosed("the conversation loop is not running (shutting down?)")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Reply] = loop.create_future()
        waiting = self._waiting.setdefault(chat.stack, [])
        if waiting:  # not yet started: join the waiting turn (answered together)
            turn = waiting[-1]
            turn.messages.append(text)
            turn.futures.append(fut)
        else:
            waiting.append(_Turn(chat, [text], [fut], on_partial))
        self._wake.set()
        return await asyncio.shield(fut)

    def busy(self) -> int:
        """Turns waiting or being answered."""
        return sum(len(t) for t in self._waiting.values()) + len(self._active)

    async def _work(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._raw or self._active or any(self._waiting.values()):
                if self._raw:  # one agent request, then a chat round: neither starves the other
                    raw = self._raw.pop(0)
                    await self._run_raw(raw)
                if self._active or any(self._waiting.values()):
                    try:
                        await self._round()
                    except Exception as e:  # a bug in a round fails its turns, never the worker
                        log.exception("a chat round failed")
                        for turn in list(self._active.values()):
                            _fail(turn, e)
                        self._active.clear()

    async def _round(self) -> None:
        # Admit waiting turns, oldest first, one per chat, while the batch has room.
        for key in sorted(self._waiting, key=lambda k: self._waiting[k][0].started if self._waiting[k] else 0):
            if len(self._active) >= self.config.max_batch:
                break
            if key in self._active or not self._waiting.get(key):
                continue
            turn = self._waiting[key].pop(0)
            if not self._waiting[key]:
                del self._waiting[key]
            try:
                await self._begin(turn)
            except Exception as e:  # a broken stack or memory fails this turn, not the loop
                log.exception("could not start a turn for %s", turn.chat.stack)
                _fail(turn, e)
                continue
            self._active[key] = turn
        turns = list(self._active.values())
        if not turns:
            return
        cfg = self.config
        sizes = [min(cfg.first_chunk_tokens if t.tokens == 0 else cfg.chunk_tokens,
                     cfg.max_reply_tokens - t.tokens) for t in turns]
        # One generate per distinct chunk size (usually one: turns that started together).
        done: list[_Turn] = []
        for size in sorted(set(sizes)):
            group = [t for t, s in zip(turns, sizes, strict=True) if s == size]
            try:
                texts = await asyncio.to_thread(self._generate, [self._continuation(t) for t in group], size)
            except Exception as e:
                log.exception("generate failed for %d chats", len(group))
                for t in group:
                    _fail(t, e)
                    self._active.pop(t.chat.stack, None)
                continue
            self.rounds += 1
            self.round_sizes.append(len(group))
            for t, (new, ntok) in zip(group, texts, strict=True):
                t.text += new
                t.tokens += max(ntok, 1)
                finished = ntok < size or t.tokens >= cfg.max_reply_tokens
                if t.text.strip() and not finished:
                    if t.first_visible_s is None:
                        t.first_visible_s = time.perf_counter() - t.started
                    if t.partial is not None:
                        await _call_partial(t.partial, t.text.strip())
                if finished:
                    done.append(t)
        for t in done:
            self._active.pop(t.chat.stack, None)
            try:
                reply = await self._finish(t)
            except Exception as e:
                log.exception("could not save the turn for %s", t.chat.stack)
                _fail(t, e)
                continue
            for i, f in enumerate(t.futures):
                if not f.done():
                    f.set_result(replace(reply, leader=i == 0))

    def _generate(self, prompts: list[str | list[Message]], max_tokens: int) -> list[tuple[str, int]]:
        """Texts and completion-token counts (counted by the backend, so a stop at EOS is exact)."""
        request = Request(prompts=list(prompts), max_tokens=max_tokens, temperature=0.0,
                          seed=self.settings.seed)
        t0 = time.perf_counter()
        completions = self.llm.backend.generate(request)
        _account(self.llm, completions, time.perf_counter() - t0)
        return [(c.texts[0], c.completion_tokens) for c in completions]

    def _continuation(self, turn: _Turn) -> str | list[Message]:
        """The prompt for the next chunk: the chat prompt plus what was already said."""
        if isinstance(turn.prompt, str):
            return turn.prompt + turn.text
        return turn.prompt  # a backend without chat templating gets one chunk only (see _begin)

    async def _begin(self, turn: _Turn) -> None:
        stack = self.stack(turn.chat)
        for m in turn.messages:
            stack.push("observation", m, value=0.6, role="user", owner=turn.chat.owner)
        if self.memory is not None and self.config.recall_k > 0:
            turn.recalled = await asyncio.to_thread(self._recall, turn.chat, "\n".join(turn.messages))
        messages = self.chat_messages(turn.chat, turn.recalled)
        turn.view = stack.render(self.config.render_budget_tokens)
        render = getattr(self.llm.backend, "render_prompt", None)
        if callable(render):
            turn.prompt = render(messages)
        else:
            turn.prompt = messages
            turn.tokens = self.config.max_reply_tokens - self.config.chunk_tokens  # one chunk: no continuation

    def chat_messages(self, chat: ChatRef, recalled: list[str] = ()) -> list[Message]:  # type: ignore[assignment]
        """The chat's stack as chat messages: selected by value under the token budget."""
        system = CHAT_SYSTEM.format(channel=chat.channel)
        frames = self.stack(chat).select(self.config.render_budget_tokens)
        context = [f for f in frames if f.provenance.get("role") not in ("user", "assistant")]
        if context:
            system += "\nFrom your working memory:\n" + "\n".join(f"[{f.kind}] {f.text}" for f in context)
        if recalled:
            system += "\nThings you remember about this user:\n" + "\n".join(f"- {r}" for r in recalled)
        messages: list[Message] = [{"role": "system", "content": system}]
        for f in frames:
            role = f.provenance.get("role")
            if role not in ("user", "assistant"):
                continue
            if messages[-1]["role"] == role:  # several messages in a row: one turn
                messages[-1] = {"role": role, "content": messages[-1]["content"] + "\n" + f.text}
            else:
                messages.append({"role": role, "content": f.text})
        if messages[-1]["role"] != "user":
            messages.append({"role": "user", "content": "(continue)"})
        return messages

    async def _finish(self, turn: _Turn) -> Reply:
        text = turn.text.strip() or "(I have nothing to add.)"
        stack = self.stack(turn.chat)
        episode = Episode(goal="\n".join(turn.messages), model=self.llm.name, stack=turn.chat.stack)
        episode.steps.append(Step(thought=text, view=turn.view))
        episode.answer = text
        total = time.perf_counter() - turn.started
        episode.meta.update(owner=turn.chat.owner, channel=turn.chat.channel, kind="chat-turn",
                            reply_tokens=turn.tokens, wall_seconds=round(total, 3))
        if turn.recalled:
            episode.meta["recalled"] = turn.recalled
        frame = stack.push("conclusion", text, value=0.5, role="assistant", episode=episode.id)
        episode.meta["frame_id"] = frame.id
        await asyncio.to_thread(self.episodes.save, episode)
        if self.memory is not None:
            await asyncio.to_thread(self._remember, turn.chat, turn.messages, text, episode.id)
        return Reply(text, episode.id, list(turn.messages), frame.id, turn.first_visible_s, total)

    # ---- long-term memory ------------------------------------------------------------------------
    def _with_memory(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        with self._memory_lock:
            return fn(*args, **kw)

    def _recall(self, chat: ChatRef, query: str) -> list[str]:
        try:
            found = self._with_memory(self.memory.recall, query, owner=chat.owner, k=self.config.recall_k)
        except Exception:  # memory is a help, not a requirement: log and answer without it
            log.exception("recall failed for %s", chat.owner)
            return []
        return [r.text for r in found]

    def _remember(self, chat: ChatRef, messages: list[str], reply: str, episode_id: str) -> None:
        items = [Frame("observation", f"The user said: {m}", 0.6, {"role": "user"}) for m in messages]
        items.append(Frame("conclusion", f"You answered: {reply}", 0.5, {"role": "assistant"}))
        try:
            self._with_memory(self.memory.store_many, items, owner=chat.owner, episode=episode_id)
        except Exception:
            log.exception("could not store memories for %s", chat.owner)

    # ---- rewards from thumbs ----------------------------------------------------------------------
    def rate(self, episode_id: str, reward: float, *, chat: ChatRef, by: str | None = None) -> Episode:
        """Record a user's thumbs on a reply: the episode's reward (re-saved) and the frame's value.

        Only the chat the reply was given in can rate it."""
        episode = self.episodes.load(episode_id)
        if episode.stack != chat.stack:
            raise PermissionError("this answer belongs to another chat")
        episode.reward = float(reward)
        feedback = list(episode.meta.get("feedback", []))
        feedback.append({"reward": float(reward), "by": by or chat.owner, "at": round(time.time(), 3)})
        episode.meta["feedback"] = feedback
        self.episodes.save(episode)
        frame_id = episode.meta.get("frame_id")
        if isinstance(frame_id, int):
            value = 0.5 + 0.4 * max(-1.0, min(1.0, float(reward)))
            try:
                self.stack(chat).replace(frame_id, value=value)
            except Exception:  # the frame was popped or forgotten: the reward on the trace stays
                log.info("frame %s of %s is gone; reward kept on the episode", frame_id, chat.stack)
        return episode

    # ---- /think: the agent, on the same worker --------------------------------------------------
    async def think(self, chat: ChatRef, goal: str, progress: ProgressFn | None = None) -> Episode:
        """Run the agent on a goal (tools, learning policies, and the settings' search strategy), its
        model calls queued on the worker. Long-term memory stays with the chat turns (it is not
        shared with the agent's thread)."""
        if self._closing or self._loop is None:
            raise ConversationClosed("the conversation loop is not running (shutting down?)")
        from stackmind.agent import Agent, default_tools, policy_library

        loop = self._loop
        tools = self.tools if self.tools is not None else default_tools(self.settings)
        if self._library is None:  # loaded once, on the first /think
            self._library = policy_library(self.settings, tools)
        agent = Agent(self.settings, llm=self.llm_for_agents(), tools=tools, store=self.store, episodes=self.episodes, owner=chat.owner,
                      library=self._library)

        def report(line: str) -> None:
            if progress is not None:
                asyncio.run_coroutine_threadsafe(progress(line), loop)

        stack = self.stack(chat)
        stack.push("goal", goal, value=0.8, role="user", owner=chat.owner, command="think")
        task = asyncio.create_task(asyncio.to_thread(
            agent.run, goal, stack_name=f"{chat.stack}-think", max_steps=self.config.think_steps, progress=report,
        ))
        self._background.add(task)
        try:
            episode = await asyncio.shield(task)
        finally:
            self._background.discard(task)
        episode.meta["chat"] = chat.stack
        stack.push("conclusion", episode.answer or "(no conclusion within the step budget)", value=0.8,
                   role="assistant", episode=episode.id)
        await asyncio.to_thread(self.episodes.save, episode)
        return episode

    def llm_for_agents(self) -> LLM:
        """An `LLM` whose generates queue on this loop's worker (between chat rounds)."""
        return LLM(_QueuedBackend(self))

    def _submit_raw(self, request: Request) -> list[Completion]:
        """From a worker thread: queue a request on the loop and wait for its completions."""
        loop = self._loop
        if loop is None or self._closing and self._worker is None:
            raise ConversationClosed("the conversation loop is not running")

        async def submit() -> list[Completion]:
            fut: asyncio.Future[list[Completion]] = loop.create_future()
            self._raw.append(_Raw(request, fut))
            assert self._wake is not None
            self._wake.set()
            return await fut

        return asyncio.run_coroutine_threadsafe(submit(), loop).result()

    async def _run_raw(self, raw: _Raw) -> None:
        try:
            t0 = time.perf_counter()
            out = await asyncio.to_thread(self.llm.backend.generate, raw.request)
            _account(self.llm, out, time.perf_counter() - t0)
        except Exception as e:
            if not raw.future.done():
                raw.future.set_exception(e)
            return
        if not raw.future.done():
            raw.future.set_result(out)


class _QueuedBackend:
    """A `Backend` that runs requests on the conversation worker (for the agent in /think)."""

    def __init__(self, conversations: Conversations) -> None:
        self.conversations = conversations
        self.name = conversations.llm.name

    def generate(self, request: Request) -> list[Completion]:
        return self.conversations._submit_raw(request)

    def count_tokens(self, text: str) -> int:
        return self.conversations.llm.count_tokens(text)


def episode_path(settings: Settings, episode_id: str) -> Path:
    if not episode_id or any(c in episode_id for c in "/\\.") or len(episode_id) > 64:
        raise TraceError(f"not an episode id: {episode_id!r}")
    return settings.episodes_dir / f"{episode_id}.trace.yaml"


def _account(llm: LLM, completions: list[Completion], wall: float) -> None:
    from stackmind.llm.base import Usage

    llm.usage.add(Usage(
        calls=1, prompts=len(completions), prompt_tokens=sum(c.prompt_tokens for c in completions),
        completion_tokens=sum(c.completion_tokens for c in completions), wall_seconds=wall,
    ))


async def _call_partial(fn: PartialFn, text: str) -> None:
    """Partial callbacks run on the worker: they must be quick (record the text, wake a sender)."""
    try:
        await fn(text)
    except Exception:  # a failed preview must not stop the answer
        log.warning("a partial-reply callback failed", exc_info=True)


def _fail(turn: _Turn, error: BaseException) -> None:
    for f in turn.futures:
        if not f.done():
            f.set_exception(error)


def split_message(text: str, limit: int = 4096) -> list[str]:
    """Split text into pieces of at most ``limit`` characters, at paragraph, line or word breaks."""
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind("\n\n"), window.rfind("\n"), window.rfind(" "))
        if cut < limit // 2:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not pieces:
        pieces.append(rest)
    return pieces
