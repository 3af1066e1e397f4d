"""The chat inbox (`stackmind.storage.inbox`) on both stores: update order per chat, idempotent puts,
rows gone only when marked done, and another store (another worker) sees the same rows."""

from __future__ import annotations

from fakes.servers import Backend

from stackmind.storage import open_store


def test_pending_in_update_order_per_chat_and_gone_when_done(backend: Backend) -> None:
    settings = backend.settings()
    a, b = open_store(settings), open_store(settings)  # two workers on one database
    try:
        assert a.inbox_put("telegram-1", 12, '{"n": 12}')
        assert b.inbox_put("telegram-1", 10, '{"n": 10}')
        assert a.inbox_put("telegram-2", 11, '{"n": 11}')
        assert not b.inbox_put("telegram-1", 12, '{"n": "again"}')  # Telegram retried: queued once
        assert [i.update_id for i in b.inbox_pending("telegram-1")] == [10, 12]
        assert a.inbox_pending("telegram-1")[1].payload == '{"n": 12}'
        assert a.inbox_chats() == ["telegram-1", "telegram-2"]
        assert b.inbox_done([10, 12, 99]) == 2
        assert a.inbox_pending("telegram-1") == []
        assert b.inbox_chats() == ["telegram-2"]
    finally:
        a.close()
        b.close()
