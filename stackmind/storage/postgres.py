"""Stacks and episodes in PostgreSQL, for several agent processes at once (psycopg 3, a pool).

``STACKMIND_DATABASE_URL=postgresql://user:password@host:5432/db`` selects it
(`stackmind.storage.open_store`, `open_episodes`). The schema is migrated on open
(`stackmind.storage.migrate`). Every method commits before it returns.

Concurrency: pushes take ids from one sequence; `pop` and `clear` first take a transaction-level
advisory lock on the stack's name, so two processes popping one stack get two different frames in
order. `lock(name)` is a session-level advisory lock on a connection held for the block: it
serialises a chat's turns across workers, and PostgreSQL drops it if the holder's process dies.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from stackmind.stack import Frame, LockTimeout, StackError
from stackmind.storage.episodes import EpisodeNotFound, Since, apply_rating, check_episode_id, since_seconds
from stackmind.storage.inbox import InboxItem
from stackmind.storage.migrate import StorageError, migrate_postgres
from stackmind.trace import Episode, TraceError

_COLUMNS = "id, kind, text, value, provenance, tokens, created, updated"
_STACK_LOCK_CLASS = 0x534D  # two-key advisory locks (class, hashtext(stack)) guard pop and clear


def _open_pool(conninfo: str, label: str, max_size: int) -> ConnectionPool:
    try:
        migrate_postgres(conninfo, label)
    except psycopg.OperationalError as e:
        raise StorageError(
            f"cannot reach PostgreSQL at {label}: {str(e).strip()}. Start the server, fix "
            "STACKMIND_DATABASE_URL, or unset it to use the embedded SQLite store."
        ) from e
    pool = ConnectionPool(conninfo, min_size=1, max_size=max(1, max_size), open=False, name="stackmind",
                          check=ConnectionPool.check_connection)
    pool.open(wait=True, timeout=30.0)
    return pool


class _Postgres:
    def __init__(self, conninfo: str, *, label: str | None = None, pool_size: int = 8) -> None:
        self.label = label or "postgresql"
        self.location = self.label
        self._conninfo = conninfo
        self._pool = _open_pool(conninfo, self.label, pool_size)

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside one transaction: committed when the block ends, else rolled back."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as e:
            raise StorageError(f"no free connection to {self.label} within 30 s: raise database_pool_size") from e

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PostgresStackStore(_Postgres):
    """Named stacks in the ``frames`` table."""

    def __init__(self, conninfo: str, *, label: str | None = None, pool_size: int = 8) -> None:
        super().__init__(conninfo, label=label, pool_size=pool_size)
        self._locks: ConnectionPool | None = None

    @staticmethod
    def _row(row: tuple[Any, ...]) -> Frame:
        id_, kind, text, value, prov, tokens, created, updated = row
        return Frame(kind=kind, text=text, value=value, provenance=prov, tokens=tokens, created=created,
                     updated=updated, id=id_)

    def push(self, stack: str, frame: Frame) -> Frame:
        now = time.time()
        with self._conn() as conn:
            row = conn.execute(
                "INSERT INTO frames(stack, kind, text, value, provenance, tokens, created, updated)"
                " VALUES (%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
                (stack, frame.kind, frame.text, float(frame.value), Jsonb(frame.provenance), int(frame.tokens),
                 frame.created, now),
            ).fetchone()
        assert row is not None
        return replace(frame, id=int(row[0]), updated=now)

    def pop(self, stack: str) -> Frame:
        with self._conn() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_STACK_LOCK_CLASS, stack))
            row = conn.execute(
                f"DELETE FROM frames WHERE id = (SELECT max(id) FROM frames WHERE stack=%s) RETURNING {_COLUMNS}",
                (stack,),
            ).fetchone()
        if row is None:
            raise StackError(f"stack {stack!r} is empty: nothing to pop")
        return self._row(row)

    def replace(self, stack: str, frame_id: int, frame: Frame) -> Frame:
        now = time.time()
        with self._conn() as conn:
            cur = conn.execute(
                "UPDATE frames SET kind=%s, text=%s, value=%s, provenance=%s, tokens=%s, updated=%s"
                " WHERE id=%s AND stack=%s",
                (frame.kind, frame.text, float(frame.value), Jsonb(frame.provenance), int(frame.tokens), now,
                 frame_id, stack),
            )
            if cur.rowcount == 0:
                raise StackError(f"stack {stack!r} has no frame with id {frame_id}")
        return replace(frame, id=frame_id, updated=now)

    def frames(self, stack: str) -> list[Frame]:
        with self._conn() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM frames WHERE stack=%s ORDER BY id", (stack,)).fetchall()
        return [self._row(r) for r in rows]

    def stacks(self) -> dict[str, int]:
        with self._conn() as conn:
            rows = conn.execute("SELECT stack, COUNT(*) FROM frames GROUP BY stack ORDER BY stack").fetchall()
        return {name: int(n) for name, n in rows}

    def clear(self, stack: str) -> int:
        with self._conn() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_STACK_LOCK_CLASS, stack))
            return conn.execute("DELETE FROM frames WHERE stack=%s", (stack,)).rowcount

    @contextmanager
    def lock(self, name: str, timeout: float | None = None) -> Iterator[None]:
        """A session-level advisory lock on ``hashtextextended(name, 0)``, on a connection of its own
        pool (so held locks never starve the store's queries). Names whose 64-bit hashes collide share
        a lock: they take turns, which is safe."""
        if self._locks is None:
            self._locks = ConnectionPool(self._conninfo, min_size=0, max_size=256, open=True, name="stackmind-locks",
                                         kwargs={"autocommit": True}, check=ConnectionPool.check_connection)
        with self._locks.connection() as conn:
            if timeout is None:
                conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (name,))
            else:
                deadline = time.monotonic() + max(0.0, timeout)
                while True:
                    row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (name,)).fetchone()
                    if row and row[0]:
                        break
                    if time.monotonic() >= deadline:
                        raise LockTimeout(f"lock {name!r} on {self.label} is still held after {timeout} s")
                    time.sleep(0.02)
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (name,))

    # ---- the chat inbox (stackmind.storage.inbox) ---------------------------------------------------
    def inbox_put(self, chat: str, update_id: int, payload: str) -> bool:
        with self._conn() as conn:
            cur = conn.execute("INSERT INTO inbox(update_id, chat, received, payload) VALUES (%s,%s,%s,%s)"
                               " ON CONFLICT (update_id) DO NOTHING", (int(update_id), chat, time.time(), payload))
            return cur.rowcount == 1

    def inbox_pending(self, chat: str) -> list[InboxItem]:
        with self._conn() as conn:
            rows = conn.execute("SELECT update_id, chat, received, payload FROM inbox WHERE chat=%s"
                                " ORDER BY update_id", (chat,)).fetchall()
        return [InboxItem(int(u), c, float(r), p) for u, c, r, p in rows]

    def inbox_done(self, update_ids: Sequence[int]) -> int:
        with self._conn() as conn:
            return conn.execute("DELETE FROM inbox WHERE update_id = ANY(%s)", ([int(u) for u in update_ids],)).rowcount

    def inbox_chats(self) -> list[str]:
        with self._conn() as conn:
            return [r[0] for r in conn.execute("SELECT DISTINCT chat FROM inbox ORDER BY chat").fetchall()]

    def close(self) -> None:
        if self._locks is not None:
            self._locks.close()
            self._locks = None
        super().close()


class PostgresEpisodeStore(_Postgres):
    """Episodes in the ``episodes`` table (the trace text plus the columns one filters on), ratings in
    ``ratings``, hindsight labels in ``labels``."""

    def save(self, episode: Episode) -> str:
        check_episode_id(episode.id)
        owner = episode.meta.get("owner")
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO episodes(id, kind, goal, stack, owner, reward, created, updated, trace)"
                " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (id) DO UPDATE SET kind=EXCLUDED.kind,"
                " goal=EXCLUDED.goal, stack=EXCLUDED.stack, owner=EXCLUDED.owner, reward=EXCLUDED.reward,"
                " created=EXCLUDED.created, updated=EXCLUDED.updated, trace=EXCLUDED.trace",
                (episode.id, episode.kind, episode.goal, episode.stack, None if owner is None else str(owner),
                 episode.reward, episode.created, time.time(), episode.to_text()),
            )
        return self.where(episode.id)

    def where(self, episode_id: str) -> str:
        return f"{self.label}#episodes/{episode_id}"

    def _parse(self, episode_id: str, text: str) -> Episode:
        return Episode.from_text(text, self.where(episode_id), fast=True)

    def load(self, episode_id: str) -> Episode:
        with self._conn() as conn:
            row = conn.execute("SELECT trace FROM episodes WHERE id=%s", (check_episode_id(episode_id),)).fetchone()
        if row is None:
            raise EpisodeNotFound(f"no episode {episode_id!r} in {self.label}")
        return self._parse(episode_id, row[0])

    def ids(self, since: Since = None) -> list[str]:
        cutoff = since_seconds(since)
        with self._conn() as conn:
            rows = conn.execute("SELECT id FROM episodes WHERE updated >= %s ORDER BY id",
                                (cutoff if cutoff is not None else float("-inf"),)).fetchall()
        return [r[0] for r in rows]

    def episodes(self, since: Since = None, problems: list[str] | None = None) -> Iterator[Episode]:
        """Oldest id first, read in pages (keyset on id) so no connection is held while the caller works."""
        cutoff = since_seconds(since)
        after = ""
        while True:
            with self._conn() as conn:
                rows = conn.execute(
                    "SELECT id, trace FROM episodes WHERE updated >= %s AND id > %s ORDER BY id LIMIT 200",
                    (cutoff if cutoff is not None else float("-inf"), after),
                ).fetchall()
            if not rows:
                return
            for episode_id, text in rows:
                try:
                    yield self._parse(episode_id, text)
                except TraceError as e:
                    if problems is None:
                        raise
                    problems.append(str(e))
            after = rows[-1][0]

    def rate(self, episode_id: str, reward: float, *, by: str) -> Episode:
        now = time.time()
        with self._conn() as conn:
            row = conn.execute("SELECT trace FROM episodes WHERE id=%s FOR UPDATE",
                               (check_episode_id(episode_id),)).fetchone()
            if row is None:
                raise EpisodeNotFound(f"no episode {episode_id!r} in {self.label}")
            episode = apply_rating(self._parse(episode_id, row[0]), reward, by, now)
            conn.execute("UPDATE episodes SET reward=%s, updated=%s, trace=%s WHERE id=%s",
                         (episode.reward, now, episode.to_text(), episode_id))
            conn.execute("INSERT INTO ratings(episode, reward, by, at) VALUES (%s,%s,%s,%s)",
                         (episode_id, float(reward), by, now))
        return episode

    def ratings(self, episode_id: str) -> list[dict[str, Any]]:
        with self._conn() as conn:
            rows = conn.execute("SELECT reward, by, at FROM ratings WHERE episode=%s ORDER BY id",
                                (check_episode_id(episode_id),)).fetchall()
        return [{"reward": r, "by": b, "at": a} for r, b, a in rows]

    def count(self) -> int:
        with self._conn() as conn:
            row = conn.execute("SELECT count(*) FROM episodes").fetchone()
        return int(row[0]) if row else 0

    # ---- hindsight labels (stackmind.value.labels keeps them here when the database is set) --------
    def add_labels(self, records: list[dict[str, Any]]) -> int:
        """Append label records (``Label.to_dict()``); a record whose id is stored already is kept as it was."""
        with self._conn() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO labels(id, episode, kind, created, record) VALUES (%s,%s,%s,%s,%s)"
                " ON CONFLICT (id) DO NOTHING",
                [(r["id"], r.get("episode"), r["kind"], r["created"], Jsonb(r)) for r in records],
            )
        return len(records)

    def labels(self, since: str | None = None) -> list[dict[str, Any]]:
        """Label records, oldest first; ``since`` compares with their ``created`` (ISO time)."""
        with self._conn() as conn:
            rows = conn.execute("SELECT record FROM labels WHERE created >= %s ORDER BY created, id",
                                (since or "",)).fetchall()
        return [r[0] for r in rows]
