"""`SQLiteStackStore`: stacks in one SQLite file, the embedded default.

WAL mode with ``synchronous=FULL``: every acknowledged write is committed before the call returns.
Safe to share between threads of one process and between processes (SQLite's own locking). The
schema is migrated on open (`stackmind.storage.migrate`). Named locks are file locks (filelock) in
``locks/`` beside the database, so they hold across processes too.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import filelock

from stackmind.stack import Frame, LockTimeout, StackError, StackStoreError
from stackmind.storage.inbox import InboxItem
from stackmind.storage.migrate import migrate_sqlite

_COLUMNS = "id, stack, kind, text, value, provenance, tokens, created, updated"
_OPENING_WAIT_S = 120  # how long a process waits for another one that is opening the database


class SQLiteStackStore:
    """Stacks in a SQLite file (``":memory:"`` for a throwaway one)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.in_memory = str(path) == ":memory:"
        self._lock = threading.RLock()
        with self._errors():
            if not self.in_memory:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=30.0, check_same_thread=False, isolation_level=None)
            try:
                with self._opening(), self._lock:
                    self._db.execute("PRAGMA journal_mode=WAL")
                    self._db.execute("PRAGMA synchronous=FULL")
                    migrate_sqlite(self._db, f"sqlite:{path}")
            except BaseException:
                self._db.close()
                raise
        self._memory_locks: dict[str, threading.Lock] = {}

    @contextmanager
    def _opening(self) -> Iterator[None]:
        """One process at a time sets the journal mode and migrates: SQLite answers a second process
        that switches a fresh file to WAL at the same moment "database is locked" without waiting."""
        if self.in_memory:
            yield
            return
        folder = self.path.parent / "locks"
        folder.mkdir(exist_ok=True)
        lock = filelock.FileLock(folder / f"{self.path.name}.open.lock", timeout=_OPENING_WAIT_S, thread_local=False)
        try:
            with lock:
                yield
        except filelock.Timeout as e:
            raise StackStoreError(f"{self.path}: another process has been opening the stack database for "
                                  f"{_OPENING_WAIT_S} s: wait for it, or stop it") from e

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

    @property
    def label(self) -> str:
        return f"sqlite:{self.path}"

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
                f"SELECT {_COLUMNS} FROM frames WHERE stack=? ORDER BY id DESC LIMIT 1", (stack,)
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
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM frames WHERE stack=? ORDER BY id", (stack,)).fetchall()
        return [self._row(r) for r in rows]

    def stacks(self) -> dict[str, int]:
        with self._lock, self._errors():
            rows = self._db.execute("SELECT stack, COUNT(*) FROM frames GROUP BY stack ORDER BY stack")
            return {name: n for name, n in rows.fetchall()}

    def clear(self, stack: str) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM frames WHERE stack=?", (stack,)).rowcount

    @contextmanager
    def lock(self, name: str, timeout: float | None = None) -> Iterator[None]:
        """A file lock ``locks/<hash of name>.lock`` beside the database (a thread lock for ``:memory:``)."""
        wait = -1.0 if timeout is None else max(0.0, timeout)
        if self.in_memory:
            with self._lock:
                mutex = self._memory_locks.setdefault(name, threading.Lock())
            if not mutex.acquire(timeout=wait):
                raise LockTimeout(f"lock {name!r} is still held after {timeout} s")
            try:
                yield
            finally:
                mutex.release()
            return
        folder = self.path.parent / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        file_lock = filelock.FileLock(folder / f"{digest}.lock", timeout=wait, thread_local=False)
        try:
            file_lock.acquire()
        except filelock.Timeout:
            raise LockTimeout(f"lock {name!r} ({file_lock.lock_file}) is still held after {timeout} s") from None
        try:
            yield
        finally:
            file_lock.release()

    # ---- the chat inbox (stackmind.storage.inbox) ---------------------------------------------------
    def inbox_put(self, chat: str, update_id: int, payload: str) -> bool:
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO inbox(update_id, chat, received, payload) VALUES (?,?,?,?)",
                             (int(update_id), chat, time.time(), payload))
            return cur.rowcount == 1

    def inbox_pending(self, chat: str) -> list[InboxItem]:
        with self._lock, self._errors():
            rows = self._db.execute("SELECT update_id, chat, received, payload FROM inbox WHERE chat=?"
                                    " ORDER BY update_id", (chat,)).fetchall()
        return [InboxItem(*r) for r in rows]

    def inbox_done(self, update_ids: Sequence[int]) -> int:
        with self._tx() as db:
            return sum(db.execute("DELETE FROM inbox WHERE update_id=?", (int(u),)).rowcount for u in update_ids)

    def inbox_chats(self) -> list[str]:
        with self._lock, self._errors():
            return [r[0] for r in self._db.execute("SELECT DISTINCT chat FROM inbox ORDER BY chat").fetchall()]

    def close(self) -> None:
        with self._lock:
            self._db.close()
