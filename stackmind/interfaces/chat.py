"""Conversations: the Telegram bot and the terminal chat, delivered by the agent.

    message ──► a goal on that chat's stack ──► Agent.run (the same loop: demonstrations, memory,
            ◄── final answer, streamed          tools, policies) ──► episode trace (reward from 👍/👎)

A chat is a named stack (``telegram-<chat id>``) and a memory owner (``telegram:<user id>``). Each
message is a goal of the agent's loop on that stack, run in a worker thread; the final answer streams
to the caller as it is generated. Batching the model calls of many chats is the LLM layer's job (the
llama.cpp backend decodes every running chat in one batch, a server does the same): this module only
orders turns. A chat's turns are answered in order, one at a time; messages that arrive while a chat
is mid-answer wait and are then answered together in one reply, as a person would. ``/think`` runs
the same loop with a search strategy. A thumbs up or down is the episode's reward: the value model
learns from it (`Agent.learn`) and the answer's frame on the stack is re-valued.
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

from stackmind.agent import Agent, default_tools, policy_library
from stackmind.errors import StackmindError
from stackmind.llm import LLM
from stackmind.policies.library import default_policy_dirs, load_lenient
from stackmind.settings import Settings
from stackmind.stack import Stack, StackStore
from stackmind.storage import open_store
from stackmind.trace import Episode, TraceError

log = logging.getLogger("stackmind.chat")

PartialFn = Callable[[str], Awaitable[None]]
ProgressFn = Callable[[str], Awaitable[None]]
NO_ANSWER = "(I could not reach an answer within my step budget.)"


class ChatSettings(BaseSettings):
    """How conversations run the agent (env ``STACKMIND_CHAT_*``)."""

    model_config = SettingsConfigDict(env_prefix="STACKMIND_CHAT_", env_file=".env", extra="ignore")

    max_steps: int = 4  # agent steps for a message
    max_reply_tokens: int = 320  # tokens of one step (the final answer is one step)
    render_budget_tokens: int = 1536  # how much of the chat's stack the model sees
    memory: bool = True  # use long-term memory (chromadb)
    think_search: str = "bfs"  # /think: the strategy of the same loop
    think_steps: int = 6


@dataclass(frozen=True)
class ChatRef:
    """Whose conversation: the stack it lives on and the memory owner."""

    stack: str  # e.g. "telegram-12345" (one per chat)
    owner: str  # e.g. "telegram:67890" (one per user; memories are scoped to it)
    channel: str = "chat"  # "Telegram", "a terminal"


@dataclass
class Reply:
    text: str
    episode_id: str
    messages: list[str]  # the user messages this reply answers (several when they came in a burst)
    frame_id: int | None = None  # the answer's frame on the stack
    first_visible_s: float | None = None  # from the turn's start to the first streamed text
    total_s: float = 0.0
    # Messages that came in a burst get one reply; the caller of the first of them is the leader (it
    # was streamed the text and delivers the reply), the others need not.
    leader: bool = True


@dataclass
class _Turn:
    chat: ChatRef
    messages: list[str]
    futures: list[asyncio.Future[Reply]]
    partial: PartialFn | None
    started: float = field(default_factory=time.perf_counter)


class ConversationClosed(StackmindError, RuntimeError):
    """The conversation loop is shutting down and takes no new work."""


class _Serialized:
    """A long-term memory shared by chats in several threads (chromadb's client is used one call at a time)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*a: Any, **kw: Any) -> Any:
            with self._lock:
                return attr(*a, **kw)

        return call


class Conversations:
    """Every chat of one process: turns in order per chat, each one a run of the agent."""

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
        self.config = config or ChatSettings()
        self.settings = settings.model_copy(update={
            "max_new_tokens": self.config.max_reply_tokens, "render_budget_tokens": self.config.render_budget_tokens,
        }).ensure_dirs()
        self.llm = llm
        self.store = store or open_store(settings)
        self.memory = _Serialized(memory) if memory is not None else None
        tools = tools if tools is not None else default_tools(self.settings)
        self.agent = Agent(self.settings, llm=llm, tools=tools, store=self.store,
                           library=policy_library(self.settings, tools), memory=self.memory)  # type: ignore[arg-type]
        self._waiting: dict[str, _Turn] = {}  # per chat: the next turn, gathering messages
        self._running: dict[str, asyncio.Task[None]] = {}  # per chat: the turn being answered
        self._background: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._started = False

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> Conversations:
        """Ready to answer: the model and what a first step needs are loaded (`Agent.warm`)."""
        if not self._started:
            await asyncio.to_thread(self.agent.warm)
        self._started = True
        return self

    async def close(self, grace_s: float = 30.0) -> None:
        """Stop taking work, finish what is in flight (up to ``grace_s``)."""
        self._closing = True
        pending = [*self._running.values(), *self._background]
        pending += [f for t in self._waiting.values() for f in t.futures]
        if pending:
            _done, not_done = await asyncio.wait(pending, timeout=grace_s)
            for f in not_done:
                f.cancel()

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
        if self.memory is not None and callable(getattr(self.memory._inner, "delete_owner", None)):
            m = await asyncio.to_thread(self.memory.delete_owner, chat.owner)
            text += f" Dropped {m} long-term memories."
        elif self.memory is not None:
            text += " Long-term memories stay until the forgetting policy retires them."
        return text

    def policies_text(self) -> str:
        lib, problems = load_lenient(default_policy_dirs(self.settings.home))
        if not len(lib):
            return "No learning policies found (put *.policy.yaml files in ./policies)."
        text = f"{len(lib)} learning policies:\n{lib.describe()}"
        if problems:
            text += f"\n({len(problems)} problems in policy files: run `stackmind policy check`)"
        return text

    def busy(self) -> int:
        """Turns waiting or being answered."""
        return len(self._waiting) + len(self._running)

    # ---- a chat turn ------------------------------------------------------------------------------
    async def say(self, chat: ChatRef, text: str, on_partial: PartialFn | None = None) -> Reply:
        """Queue a message; resolve with the reply that answers it (streamed through ``on_partial``).

        Call order is message order: the message is queued before the first ``await``."""
        if self._closing or not self._started:
            raise ConversationClosed("the conversation loop is not running (shutting down?)")
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        turn = self._waiting.get(chat.stack)
        if turn is None:
            self._waiting[chat.stack] = _Turn(chat, [text], [fut], on_partial)
        else:  # not started yet: answered together with the messages before it
            turn.messages.append(text)
            turn.futures.append(fut)
        if chat.stack not in self._running:
            self._running[chat.stack] = asyncio.create_task(self._serve(chat.stack))
        return await asyncio.shield(fut)

    async def _serve(self, key: str) -> None:
        """Answer a chat's turns one after the other until none is waiting."""
        try:
            while (turn := self._waiting.pop(key, None)) is not None:
                try:
                    reply = await self._answer(turn)
                except Exception as e:  # a failed turn fails its callers, never the other chats
                    log.exception("a turn of %s failed", key)
                    for f in turn.futures:
                        if not f.done():
                            f.set_exception(e)
                    continue
                for i, f in enumerate(turn.futures):
                    if not f.done():
                        f.set_result(replace(reply, leader=i == 0))
        finally:
            self._running.pop(key, None)

    async def _answer(self, turn: _Turn) -> Reply:
        loop = asyncio.get_running_loop()
        streamed: list[str] = []
        first: list[float] = []

        def on_text(delta: str) -> None:  # on the LLM's thread: hand the text to the event loop
            streamed.append(delta)
            if not first:
                first.append(time.perf_counter() - turn.started)
            if turn.partial is not None:
                asyncio.run_coroutine_threadsafe(_call_partial(turn.partial, "".join(streamed).strip()), loop)

        goal = "\n".join(turn.messages)
        episode = await asyncio.to_thread(
            self.agent.run, goal, stack_name=turn.chat.stack, owner=turn.chat.owner,
            max_steps=self.config.max_steps, on_text=on_text,
            meta={"kind": "chat-turn", "channel": turn.chat.channel, "messages": len(turn.messages)},
        )
        text = (episode.answer or "").strip() or NO_ANSWER
        frame = next((f for f in reversed(self.stack(turn.chat).frames())
                      if f.kind == "conclusion" and f.provenance.get("episode") == episode.id), None)
        if frame is not None:
            episode.meta["frame_id"] = frame.id
            await asyncio.to_thread(self.agent.episodes.save, episode)
        return Reply(text, episode.id, list(turn.messages), frame.id if frame else None,
                     first[0] if first else None, time.perf_counter() - turn.started)

    # ---- rewards from thumbs ----------------------------------------------------------------------
    def rate(self, episode_id: str, reward: float, *, chat: ChatRef, by: str | None = None) -> Episode:
        """A user's thumbs on a reply: the episode's reward (the value model learns from it) and the
        answer frame's value. Only the chat the reply was given in can rate it."""
        episode = self.agent.episodes.load(episode_id)
        if episode.stack != chat.stack:
            raise PermissionError("this answer belongs to another chat")
        episode = rate_episode(self.agent, episode, reward, by=by or chat.owner)
        frame_id = episode.meta.get("frame_id")
        if isinstance(frame_id, int):
            value = 0.5 + 0.4 * max(-1.0, min(1.0, float(reward)))
            try:
                self.stack(chat).replace(frame_id, value=value)
            except StackmindError:  # the frame was popped or forgotten: the reward on the trace stays
                log.info("frame %s of %s is gone; reward kept on the episode", frame_id, chat.stack)
        return episode

    # ---- /think: the same loop, searching -------------------------------------------------------
    async def think(self, chat: ChatRef, goal: str, progress: ProgressFn | None = None) -> Episode:
        """Run the agent on a goal with the chat's search strategy (``think_search``). It works on a stack
        of its own (``<chat>-think``), so the chat goes on meanwhile; its goal goes on the chat's stack at
        once and its conclusion when it is reached."""
        if self._closing:
            raise ConversationClosed("the conversation loop is not running (shutting down?)")
        loop = asyncio.get_running_loop()

        def report(line: str) -> None:
            if progress is not None:
                asyncio.run_coroutine_threadsafe(progress(line), loop)

        await asyncio.to_thread(self.agent.push_between_runs, chat.stack, "goal", goal, 1.0, command="think")
        task = asyncio.create_task(asyncio.to_thread(
            self.agent.run, goal, stack_name=f"{chat.stack}-think", owner=chat.owner,
            max_steps=self.config.think_steps, search=self.config.think_search, progress=report,
            meta={"kind": "think", "channel": chat.channel, "chat": chat.stack},
        ))
        self._background.add(task)
        try:
            episode = await asyncio.shield(task)
        finally:
            self._background.discard(task)
        await asyncio.to_thread(self.agent.push_between_runs, chat.stack, "conclusion", episode.answer or NO_ANSWER,
                                0.9, episode=episode.id, command="think")
        return episode


def rate_episode(agent: Agent, episode: Episode, reward: float, *, by: str) -> Episode:
    """Record a rating as an episode's reward (feedback kept), save it, and let the agent learn from it."""
    episode.reward = float(reward)
    feedback = list(episode.meta.get("feedback", []))
    feedback.append({"reward": float(reward), "by": by, "at": round(time.time(), 3)})
    episode.meta["feedback"] = feedback
    agent.episodes.save(episode)
    agent.learn(episode)
    return episode


def episode_path(settings: Settings, episode_id: str) -> Path:
    if not episode_id or any(c in episode_id for c in "/\\.") or len(episode_id) > 64:
        raise TraceError(f"not an episode id: {episode_id!r}")
    return settings.episodes_dir / f"{episode_id}.trace.yaml"


async def _call_partial(fn: PartialFn, text: str) -> None:
    """Partial callbacks must be quick (record the text, wake a sender)."""
    try:
        await fn(text)
    except Exception:  # a failed preview must not stop the answer
        log.warning("a partial-reply callback failed", exc_info=True)


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
