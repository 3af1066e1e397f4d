"""Load: 20 users x 20 messages through the real bot, the fake Bot API over HTTP and the real model
(STACKMIND_LOAD_MESSAGES=50 runs the full size, 1000 messages: about ten minutes on 2 cores).

What it measures: that under a burst far beyond what the model can answer one by one (400
messages; the model decodes a few tokens a second on 2 cores) nothing is lost, every reply goes to
the right chat, no stack or memory crosses users, Telegram's flood limit holds, and the bot stays up.
Each turn is a run of the agent (one step, a short reply, no demonstrations) so that it runs in
minutes: the llama.cpp backend decodes all the running chats in one batch, and a chat's messages that
arrive while it is being answered are answered together in its next turn (each is in its goal, in order).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from stackmind.interfaces.chat import ChatSettings
from stackmind.settings import Settings
from stackmind.storage import SQLiteStackStore
from stackmind.trace import Episode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes.bot_runner import RunningBot  # noqa: E402
from fakes.telegram_server import FakeTelegram  # noqa: E402

USERS = [2000 + i for i in range(20)]
MESSAGES = int(os.environ.get("STACKMIND_LOAD_MESSAGES", "20"))


_PARSED: dict[Path, tuple[float, Episode]] = {}


def episodes_by_chat(settings: Settings) -> dict[str, list[Episode]]:
    """Every episode so far, by chat (each file parsed once per version: the test polls this while the
    bot works, and must not take the CPU the bot needs)."""
    out: dict[str, list[Episode]] = {}
    for path in settings.episodes_dir.glob("*.trace.yaml"):
        try:
            mtime = path.stat().st_mtime
            cached = _PARSED.get(path)
            if cached is None or cached[0] != mtime:
                cached = _PARSED[path] = (mtime, Episode.load(path))
        except Exception:  # being written (the rename is atomic, but be safe)
            continue
        out.setdefault(cached[1].stack or "", []).append(cached[1])
    for eps in out.values():
        eps.sort(key=lambda e: (e.created, e.meta.get("frame_id", 0)))
    return out


def covered(episodes: list[Episode]) -> list[str]:
    return [line for e in episodes for line in e.goal.split("\n")]


@pytest.mark.slow
def test_twenty_users_twenty_messages_each(settings: Settings, embedded_llm) -> None:  # noqa: ANN001
    memory_mod = pytest.importorskip("stackmind.memory")
    config = ChatSettings(max_reply_tokens=16, max_steps=1, render_budget_tokens=512, memory=True)
    settings = settings.model_copy(update={"demos": 0, "recall_k": 2})
    embedded_llm.backend.stats["max_batch"] = 0
    expected = {u: [f"u{u} says m{k}" for k in range(MESSAGES)] for u in USERS}
    t0 = time.perf_counter()
    with FakeTelegram() as fake, memory_mod.Memory(settings) as memory:
        runner = RunningBot(fake, settings, embedded_llm, allowed=USERS, chat=config, memory=memory)
        with runner:
            sent_ids: dict[int, set[int]] = {u: set() for u in USERS}
            for k in range(MESSAGES):
                for u in USERS:
                    sent_ids[u].add(fake.send_text(u, expected[u][k]))

            last_poll = [0.0]

            def all_answered() -> bool:
                # wait_for holds the fake's lock while it asks: read the episodes at most once a second
                if time.monotonic() - last_poll[0] < 1.0:
                    return False
                last_poll[0] = time.monotonic()
                eps = episodes_by_chat(settings)
                for u in USERS:
                    chat_eps = eps.get(f"telegram-{u}", [])
                    if len(covered(chat_eps)) < MESSAGES:
                        return False
                    finals = [m for m in fake.messages(u) if m.buttons]
                    if len(finals) < len(chat_eps):
                        return False
                return True

            fake.wait_for(all_answered, 1500, "every message answered")
            answered_s = time.perf_counter() - t0
            time.sleep(1.5)
            before = len(fake.messages(USERS[0]))
            fake.send_text(USERS[0], "/help")
            fake.wait_for(lambda: len(fake.messages(USERS[0])) > before, 60, "/help after the load")
            assert runner.alive
            bot = runner.bot
            assert bot is not None
            stats = dict(embedded_llm.backend.stats)
        # ---- nothing lost, nothing crossed ----
        store = SQLiteStackStore(settings.db_path)
        eps = episodes_by_chat(settings)
        for u in USERS:
            goals = [line for f in store.frames(f"telegram-{u}") if f.kind == "goal" for line in f.text.split("\n")]
            assert goals == expected[u], f"stack of user {u} lost, reordered or mixed messages"
            assert covered(eps[f"telegram-{u}"]) == expected[u], f"user {u}: a message answered twice or never"
            assert all(e.meta["owner"] == f"telegram:{u}" for e in eps[f"telegram-{u}"])
            for m in fake.messages(u):
                assert m.chat_id == u
                if m.reply_to is not None:
                    assert m.reply_to in sent_ids[u], f"a reply in chat {u} answers another chat's message"
            finals = [m for m in fake.messages(u) if m.buttons]
            assert len(finals) == len(eps[f"telegram-{u}"])
            mine = memory.recall("says m", owner=f"telegram:{u}", k=10)
            others = [f"u{v} " for v in USERS if v != u]  # another user's words (a program's output is mine)
            assert mine and not any(o in r.text for r in mine for o in others)
            assert all(r.owner == f"telegram:{u}" for r in mine)
        assert not fake.flood_violations, fake.flood_violations[:5]
    turns = sum(len(eps[f"telegram-{u}"]) for u in USERS)
    figures = {
        "messages": len(USERS) * MESSAGES, "turns": turns, "decode_iterations": stats["iterations"],
        "max_batch": stats["max_batch"],
        "seconds_to_answer_all": round(answered_s, 1),
        "replies_delivered": bot.replies,
    }
    print("\nLOAD " + json.dumps(figures))
    assert stats["max_batch"] > 1  # chats were decoded together
