"""Runs the real Telegram bot (`stackmind.interfaces.telegram.serve`) in a background thread,
talking to a `FakeTelegram` over HTTP, for end-to-end tests."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from stackmind.interfaces.chat import ChatSettings, Conversations
from stackmind.interfaces.telegram import StackmindBot, TelegramSettings, serve
from stackmind.llm import LLM
from stackmind.settings import Settings

from .telegram_server import FakeTelegram


class RunningBot:
    def __init__(self, fake: FakeTelegram, settings: Settings, llm: LLM, allowed: list[int],
                 chat: ChatSettings | None = None, memory: Any = None, **telegram: Any) -> None:
        self.fake = fake
        self.config = TelegramSettings(allowed_users=allowed, base_url=fake.base_url, poll_timeout_s=1.0,
                                       shutdown_grace_s=60.0, **telegram)
        self.conversations = Conversations(settings, llm, memory=memory, config=chat or ChatSettings(
            max_reply_tokens=48, max_steps=2, memory=False))
        self.bot: StackmindBot | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="stackmind-bot", daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def ready(bot: StackmindBot) -> None:
                self.bot = bot
                self._ready.set()

            await serve(self.fake.token, self.conversations, self.config, self._stop, ready)

        try:
            asyncio.run(main())
        except BaseException as e:
            self.error = e
            self._ready.set()
            raise

    def __enter__(self) -> RunningBot:
        self._thread.start()
        if not self._ready.wait(60):
            raise TimeoutError("the bot did not start within 60 s")
        if self.error is not None:
            raise self.error
        return self

    def stop(self, timeout: float = 120.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the bot did not shut down within {timeout:.0f} s")

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
