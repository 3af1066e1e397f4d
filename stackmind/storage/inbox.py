"""The chat inbox: updates received by some bot worker, waiting for their chat's turn.

    worker that received it:  store.inbox_put(chat, update_id, payload)   (before answering Telegram 200)
    worker holding the chat:  with store.lock(f"chat:{chat}"):
                                  items = store.inbox_pending(chat)      # update order
                                  ... answer them as one turn, deliver the reply ...
                                  store.inbox_done([i.update_id for i in items])

Both stores implement it (the ``inbox`` table, migration 0003): SQLite for one process, PostgreSQL
for several workers. ``inbox_put`` is idempotent on the update id, so Telegram delivering an update
twice (a retry after a timeout) queues it once. docs/deploy.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class InboxItem:
    update_id: int
    chat: str  # the chat's key, e.g. "telegram-12345"
    received: float  # epoch seconds
    payload: str  # the update as Telegram sent it (JSON)


class Inbox(Protocol):
    """What the stores offer for it: the inbox's rows and their named locks (`StackStore.lock`)."""

    def inbox_put(self, chat: str, update_id: int, payload: str) -> bool:
        """Queue an update; False when it is queued already."""
        ...

    def inbox_pending(self, chat: str) -> list[InboxItem]:
        """The chat's queued updates, oldest update id first."""
        ...

    def inbox_done(self, update_ids: Sequence[int]) -> int:
        """Drop answered updates; returns how many were still there."""
        ...

    def inbox_chats(self) -> list[str]:
        """Chats with queued updates (what a worker picks up at start: another worker's unfinished turns)."""
        ...

    def lock(self, name: str, timeout: float | None = None) -> AbstractContextManager[None]: ...
