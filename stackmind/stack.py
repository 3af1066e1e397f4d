"""The agent's working memory: named stacks of frames, persisted.

A frame is a piece of text with a kind, a learned value, provenance and a token count. Stacks are
kept behind one small storage interface (`StackStore`), implemented in ``stackmind/storage``:
`SQLiteStackStore` is the embedded default, `PostgresStackStore` serves several processes at once,
and ``stackmind.storage.open_store(settings)`` picks one from the settings. Every acknowledged write
is committed before the call returns, so a SIGKILL loses nothing that was acknowledged.

`Stack.render(budget_tokens)` is soft attention over the stack: it selects frames by value and
recency under a token budget, always keeps goal frames, and keeps stack order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from stackmind.errors import StackmindError

FrameKind = Literal["goal", "observation", "thought", "action", "trajectory", "policy", "conclusion"]
FRAME_KINDS: tuple[str, ...] = (
    "goal", "observation", "thought", "action", "trajectory", "policy", "conclusion",
)


class StackError(StackmindError):
    """A stack operation that cannot be done (empty stack, unknown frame)."""


class StackStoreError(StackError):
    """The stack database cannot be read or written (corrupt, truncated, locked, unwritable)."""


class LockTimeout(StackmindError, TimeoutError):
    """A named lock (`StackStore.lock`) stayed held by someone else for longer than asked to wait."""


@dataclass(frozen=True)
class Frame:
    kind: str
    text: str
    value: float = 0.5
    provenance: dict[str, Any] = field(default_factory=dict)
    tokens: int = 0
    created: float = field(default_factory=time.time)
    updated: float = 0.0
    id: int | None = None  # assigned by the store

    def __post_init__(self) -> None:
        if self.kind not in FRAME_KINDS:
            raise ValueError(f"unknown frame kind {self.kind!r}; expected one of {', '.join(FRAME_KINDS)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "text": self.text, "value": self.value,
            "provenance": self.provenance, "tokens": self.tokens,
            "created": self.created, "updated": self.updated,
        }


class StackStore(Protocol):
    """Storage for named stacks. Every method is durable when it returns."""

    def push(self, stack: str, frame: Frame) -> Frame: ...
    def pop(self, stack: str) -> Frame: ...
    def replace(self, stack: str, frame_id: int, frame: Frame) -> Frame: ...
    def frames(self, stack: str) -> list[Frame]: ...
    def stacks(self) -> dict[str, int]: ...
    def clear(self, stack: str) -> int: ...
    def lock(self, name: str, timeout: float | None = None) -> AbstractContextManager[None]:
        """Hold a named lock shared by every process on this store (a chat's turn, a named run);
        `LockTimeout` after ``timeout`` seconds, wait forever when None."""
        ...
    def close(self) -> None: ...


TokenCounter = Callable[[str], int]


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate (about 4 characters a token) for when no model is loaded."""
    return max(1, (len(text) + 3) // 4)


class Stack:
    """One named stack over a store. Token counts use the model's tokenizer when given one.

    ``on_pop`` sees every frame that leaves the stack by `pop` (the agent sends them to long-term
    memory)."""

    def __init__(self, store: StackStore, name: str, count_tokens: TokenCounter = approx_tokens,
                 on_pop: Callable[[Frame], None] | None = None) -> None:
        self.store = store
        self.name = name
        self.count_tokens = count_tokens
        self.on_pop = on_pop

    def push(self, kind: str, text: str, value: float = 0.5, **provenance: Any) -> Frame:
        frame = Frame(kind=kind, text=text, value=value, provenance=provenance,
                      tokens=self.count_tokens(_frame_line(kind, text)))
        return self.store.push(self.name, frame)

    def push_frame(self, frame: Frame) -> Frame:
        if not frame.tokens:
            frame = replace(frame, tokens=self.count_tokens(_frame_line(frame.kind, frame.text)))
        return self.store.push(self.name, frame)

    def pop(self) -> Frame:
        frame = self.store.pop(self.name)
        if self.on_pop is not None:
            self.on_pop(frame)
        return frame

    def peek(self) -> Frame:
        frames = self.store.frames(self.name)
        if not frames:
            raise StackError(f"stack {self.name!r} is empty: nothing to peek at")
        return frames[-1]

    def replace(self, frame_id: int, text: str | None = None, value: float | None = None) -> Frame:
        old = next((f for f in self.store.frames(self.name) if f.id == frame_id), None)
        if old is None:
            raise StackError(f"stack {self.name!r} has no frame with id {frame_id}")
        text = old.text if text is None else text
        new = replace(old, text=text, value=old.value if value is None else value,
                      tokens=self.count_tokens(_frame_line(old.kind, text)))
        return self.store.replace(self.name, frame_id, new)

    def frames(self) -> list[Frame]:
        return self.store.frames(self.name)

    def clear(self) -> int:
        return self.store.clear(self.name)

    def __len__(self) -> int:
        return len(self.frames())

    def select(self, budget_tokens: int, recency_weight: float = 0.5) -> list[Frame]:
        """Frames chosen for a prompt, in stack order (`select_frames`)."""
        return select_frames(self.frames(), budget_tokens, recency_weight)

    def render(self, budget_tokens: int, recency_weight: float = 0.5) -> str:
        """The stack as prompt text, value-weighted under a token budget."""
        return render_frames(self.frames(), budget_tokens, recency_weight)


def select_frames(frames: Sequence[Frame], budget_tokens: int, recency_weight: float = 0.5) -> list[Frame]:
    """Frames chosen for a prompt, in stack order.

    Goal frames are always kept. The rest compete on ``value + recency_weight * recency``, where
    recency runs from 0 (bottom) to 1 (top), and are taken greedily while they fit."""
    chosen = {i for i, f in enumerate(frames) if f.kind == "goal"}
    used = sum(frames[i].tokens for i in chosen)
    n = max(1, len(frames) - 1)
    ranked = sorted(
        (i for i in range(len(frames)) if i not in chosen),
        key=lambda i: frames[i].value + recency_weight * (i / n),
        reverse=True,
    )
    for i in ranked:
        if used + frames[i].tokens <= budget_tokens:
            chosen.add(i)
            used += frames[i].tokens
    return [frames[i] for i in sorted(chosen)]


def render_frames(frames: Sequence[Frame], budget_tokens: int, recency_weight: float = 0.5) -> str:
    """Frames as prompt text (one ``[kind] text`` line each), value-weighted under a token budget."""
    return "\n".join(_frame_line(f.kind, f.text) for f in select_frames(frames, budget_tokens, recency_weight))


def frame_tokens(frame: Frame, count_tokens: TokenCounter = approx_tokens) -> Frame:
    """The frame with its token count filled in (as a stack counts it)."""
    return frame if frame.tokens else replace(frame, tokens=count_tokens(_frame_line(frame.kind, frame.text)))


INDENT = "    "  # continuation lines of a frame's text, in a rendered view


def _frame_line(kind: str, text: str) -> str:
    """A frame as view text: ``[kind] text``, its later lines indented so the view reads back exactly."""
    return f"[{kind}] " + text.replace("\n", "\n" + INDENT)


def drop_frames(view: str, kinds: Collection[str]) -> str:
    """A rendered view without its frames of these kinds (the rest exactly as rendered)."""
    return "\n".join(_frame_line(k, t) for k, t in parse_view(view) if k not in kinds)


def parse_view(view: str) -> list[tuple[str, str]]:
    """A rendered view back into its frames' (kind, text), exactly (`render_frames` is its inverse)."""
    out: list[tuple[str, str]] = []
    for line in view.split("\n"):
        if line.startswith("[") and "] " in line and line[1:line.index("] ")] in FRAME_KINDS:
            kind = line[1:line.index("] ")]
            out.append((kind, line[len(kind) + 3:]))
        elif out and (line.startswith(INDENT) or not line.strip()):
            k, t = out[-1]
            out[-1] = (k, t + "\n" + line[len(INDENT):])
        elif out:  # a hand-written view without the indentation
            k, t = out[-1]
            out[-1] = (k, t + "\n" + line)
    return out
