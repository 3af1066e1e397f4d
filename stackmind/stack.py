"""The agent's working memory: named stacks of frames, persisted.

A frame is a piece of text with a kind, a learned value, provenance and a token count. Stacks are
kept behind one small storage interface (`StackStore`); `SQLiteStackStore` is the default (WAL mode,
every acknowledged write is committed before the call returns, so a SIGKILL loses nothing that was
acknowledged). A server database can implement the same interface for several agent processes.

`Stack.render(budget_tokens)` is soft attention over the stack: it selects frames by value and
recency under a token budget, always keeps goal frames, and keeps stack order.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
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
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stack TEXT NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    value REAL NOT NULL,
    provenance TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS frames_stack ON frames(stack, id);
"""


class SQLiteStackStore:
    """SQLite in WAL mode with synchronous=FULL. Safe to share between threads of one process and
    between processes (SQLite's own locking)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        with self._errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
            except BaseException:
                self._db.close()
                raise

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """The database's failures as a `StackStoreError` that names the file and what to do."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            text = str(e)
            if "locked" in text or "busy" in text:
                hint = "another process holds it: wait for it, or stop it"
            else:
                hint = (f"it is damaged or not a database: move it aside (mv {self.path} {self.path}.broken) and "
                        "the next run starts a fresh one (its stacks are lost; episodes are kept)")
            raise StackStoreError(f"{self.path}: the stack database cannot be used ({text}); {hint}") from e
        except OSError as e:
            raise StackStoreError(f"{self.path}: cannot open the stack database ({e.strerror or e}); "
                                  "point STACKMIND_HOME at a folder you can write") from e

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _row(self, row: Sequence[Any]) -> Frame:
        id_, _stack, kind, text, value, prov, tokens, created, updated = row
        try:
            return Frame(kind=kind, text=text, value=value, provenance=json.loads(prov), tokens=tokens,
                         created=created, updated=updated, id=id_)
        except (ValueError, TypeError) as e:  # a row edited by hand: a bad kind or provenance
            raise StackStoreError(f"{self.path}: frame {id_} in the stack database is malformed ({e}); "
                                  "fix or delete that row, or move the database aside") from e

    def push(self, stack: str, frame: Frame) -> Frame:
        now = time.time()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO frames(stack, kind, text, value, provenance, tokens, created, updated)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (stack, frame.kind, frame.text, float(frame.value), json.dumps(frame.provenance),
                 int(frame.tokens), frame.created, now),
            )
            return replace(frame, id=cur.lastrowid, updated=now)

    def pop(self, stack: str) -> Frame:
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM frames WHERE stack=? ORDER BY id DESC LIMIT 1", (stack,)
            ).fetchone()
            if row is None:
                raise StackError(f"stack {stack!r} is empty: nothing to pop")
            db.execute("DELETE FROM frames WHERE id=?", (row[0],))
            return self._row(row)

    def replace(self, stack: str, frame_id: int, frame: Frame) -> Frame:
        now = time.time()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE frames SET kind=?, text=?, value=?, provenance=?, tokens=?, updated=?"
                " WHERE id=? AND stack=?",
                (frame.kind, frame.text, float(frame.value), json.dumps(frame.provenance),
                 int(frame.tokens), now, frame_id, stack),
            )
            if cur.rowcount == 0:
                raise StackError(f"stack {stack!r} has no frame with id {frame_id}")
            return replace(frame, id=frame_id, updated=now)

    def frames(self, stack: str) -> list[Frame]:
        with self._lock, self._errors():
            rows = self._db.execute("SELECT * FROM frames WHERE stack=? ORDER BY id", (stack,)).fetchall()
            return [self._row(r) for r in rows]

    def stacks(self) -> dict[str, int]:
        with self._lock, self._errors():
            rows = self._db.execute("SELECT stack, COUNT(*) FROM frames GROUP BY stack ORDER BY stack")
            return {name: n for name, n in rows.fetchall()}

    def clear(self, stack: str) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM frames WHERE stack=?", (stack,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


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
