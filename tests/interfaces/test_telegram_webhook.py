"""Webhook workers in one process (the deployment test runs them as processes on PostgreSQL): two bots
on one store behind the fake Bot API's round-robin, each chat's messages answered in order whoever
received them, a wrong secret refused, and a turn a dead worker left in the inbox answered by the next."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import pytest

from stackmind.interfaces.chat import ChatSettings
from stackmind.settings import Settings
from stackmind.storage import open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes.bot_runner import RunningBot  # noqa: E402
from fakes.servers import free_port  # noqa: E402
from fakes.telegram_server import FakeTelegram  # noqa: E402

SECRET = "webhook-secret-0123456789"
CHAT = ChatSettings(max_reply_tokens=12, max_steps=1, render_budget_tokens=384, memory=False)


def worker(fake: FakeTelegram, settings: Settings, llm, allowed: list[int]) -> tuple[RunningBot, str]:  # noqa: ANN001
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram"
    return RunningBot(fake, settings, llm, allowed=allowed, chat=CHAT, webhook_url=url, webhook_port=port,
                      webhook_secret=SECRET), url


def goals(settings: Settings, chat: int) -> list[str]:
    store = open_store(settings)
    try:
        return [line for f in store.frames(f"telegram-{chat}") if f.kind == "goal" for line in f.text.split("\n")]
    finally:
        store.close()


@pytest.mark.slow
def test_two_webhook_workers_answer_each_chat_in_order(settings: Settings, embedded_llm) -> None:  # noqa: ANN001
    settings = settings.model_copy(update={"demos": 0})
    users = [3001, 3002, 3003]
    with FakeTelegram() as fake:
        (one, url1), (two, url2) = worker(fake, settings, embedded_llm, users), worker(fake, settings, embedded_llm, users)
        with one, two:
            fake.balance([url1, url2])
            r = httpx.post(url1, json={"update_id": 1}, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"})
            assert r.status_code == 403
            expected = {u: [f"u{u} says m{k}" for k in range(3)] for u in users}
            for k in range(3):
                for u in users:
                    fake.send_text(u, expected[u][k])
            fake.wait_for(lambda: all(sum(len(m.text) > 0 and bool(m.buttons) for m in fake.messages(u)) >= 1
                                      and len(goals(settings, u)) == 3 for u in users), 300, "every chat answered")
            fake.wait_for(lambda: not open_store(settings).inbox_chats(), 120, "the inbox emptied")
            assert {url for _, url, status in fake.deliveries if status == 200} == {url1, url2}
            assert one.bot is not None and two.bot is not None
            assert one.bot.replies + two.bot.replies >= len(users)
        for u in users:
            assert goals(settings, u) == expected[u]  # in order, once each
            assert all(m.chat_id == u for m in fake.messages(u))
        assert not fake.flood_violations


@pytest.mark.slow
def test_a_turn_a_dead_worker_left_queued_is_answered_by_the_next(settings: Settings, embedded_llm) -> None:  # noqa: ANN001
    settings = settings.model_copy(update={"demos": 0})
    user = 3100
    update = {"update_id": 77, "message": {
        "message_id": 5, "date": int(time.time()), "text": "left behind",
        "chat": {"id": user, "type": "private", "first_name": "U"}, "from": {"id": user, "is_bot": False, "first_name": "U"}}}
    store = open_store(settings)
    store.inbox_put(f"telegram-{user}", 77, json.dumps(update))  # received, acknowledged, then the worker died
    store.close()
    with FakeTelegram() as fake:
        bot, url = worker(fake, settings, embedded_llm, [user])
        with bot:
            fake.balance([url])
            fake.wait_for(lambda: any(m.buttons for m in fake.messages(user)), 180, "the queued message answered")
            assert fake.messages(user)[0].reply_to == 5
        assert goals(settings, user) == ["left behind"]
        assert open_store(settings).inbox_chats() == []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the bot's thread re-raises it
def test_a_webhook_without_a_secret_does_not_start(settings: Settings) -> None:
    from stackmind.interfaces.telegram import BotStartError

    with FakeTelegram() as fake:
        runner = RunningBot(fake, settings, None, allowed=[1], chat=CHAT,  # type: ignore[arg-type]
                            webhook_url="http://127.0.0.1:9/telegram", webhook_port=free_port())
        with pytest.raises(BotStartError, match="STACKMIND_TELEGRAM_WEBHOOK_SECRET"):
            runner.__enter__()


def test_webhook_listen_must_be_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from stackmind.interfaces.cli import app

    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:TEST-token-abcdef")
    res = CliRunner().invoke(app, ["telegram", "--webhook-listen", "8443", "--webhook-url", "https://x/telegram"])
    assert res.exit_code == 1 and "expected HOST:PORT" in res.output
    res = CliRunner().invoke(app, ["telegram", "--webhook-listen", "127.0.0.1:8443"])
    assert res.exit_code == 1 and "--webhook-url" in res.output
