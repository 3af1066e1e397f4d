"""The Telegram bot: python-telegram-bot v22 over the shared conversation loop (`chat.py`).

    update ──► allowlist ──► command or message ──► Conversations: the agent's loop on one stack
               (refuse)                               per chat, one memory owner per user
                                 ◄── streamed reply: sendMessage, then throttled editMessageText
                                 ◄── 👍 / 👎 buttons ──► the episode's reward

Long polling by default (one process). With ``STACKMIND_TELEGRAM_WEBHOOK_URL`` set, any number of
workers behind a load balancer share one bot: each writes a text message it receives to the chat's
inbox in the shared database before it answers Telegram 200, and the worker that takes the chat's
lock answers the chat's queued messages in update order, deleting them once the reply is delivered
(`StackmindBot.drain_chat`; docs/deploy.md). Every send to a
chat goes through python-telegram-bot's `AIORateLimiter` (a global cap, group limits, and a
``RetryAfter`` from Telegram waited out and retried); a streamed answer is edited at most about once a
second. Handlers never raise into the application:
errors are logged (with the token redacted) and answered politely. Shutdown stops taking updates,
lets answers and /think runs in flight finish (up to a grace period) and delivers them.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Annotated, Any

import uvicorn
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, ReplyParameters, Update
from telegram.constants import ChatAction, MessageLimit
from telegram.error import BadRequest, InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from stackmind.errors import StackmindError
from stackmind.interfaces import _redact
from stackmind.interfaces.chat import ChatRef, ConversationClosed, Conversations, Reply, split_message
from stackmind.stack import LockTimeout
from stackmind.storage.inbox import Inbox, InboxItem

log = logging.getLogger("stackmind.telegram")

MAX_TEXT = MessageLimit.MAX_TEXT_LENGTH  # 4096

COMMANDS = [
    ("start", "say hello and show what I can do"),
    ("help", "the commands"),
    ("think", "/think GOAL: search for an answer step by step, with tools"),
    ("stack", "show this chat's working memory"),
    ("policies", "list the learning policies I know"),
    ("forget", "clear this chat's working memory"),
]

HELP = """I am stackmind, an agent that keeps what it knows as text and learns from your feedback.

Write to me and I answer. Under each answer, 👍 or 👎 tells me whether it helped: I learn from both.

/think GOAL: work on a goal step by step (search, tools); I send the conclusion when done
/stack: what is on this chat's working memory
/policies: the learning policies I know
/forget: clear this chat's working memory
/help: this text"""

TEXT_MESSAGES = filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND  # a chat turn (webhook: queued)

SORRY = "Sorry, something went wrong on my side while answering. Please try again in a moment."


class BotStartError(StackmindError, RuntimeError):
    """The bot cannot start: the token is refused, or the Bot API cannot be reached."""


class TelegramSettings(BaseSettings):
    """The bot's own settings (env ``STACKMIND_TELEGRAM_*``); the token is `Settings.telegram_bot_token`."""

    model_config = SettingsConfigDict(env_prefix="STACKMIND_TELEGRAM_", env_file=".env", extra="ignore",
                                      allow_inf_nan=False)

    # Telegram user ids allowed to talk to the bot, e.g. "12345,67890". Empty: nobody.
    allowed_users: Annotated[list[int], NoDecode] = []
    base_url: str = "https://api.telegram.org/bot"  # a local Bot API server, or a test fake
    base_file_url: str = "https://api.telegram.org/file/bot"
    webhook_url: str | None = None  # public https URL Telegram posts to (the load balancer); unset: long polling
    webhook_listen: str = "127.0.0.1"  # where this worker's webhook server listens (behind a TLS proxy)
    webhook_port: int = Field(8443, ge=1, le=65535)
    webhook_path: str = "telegram"
    # Telegram sends it in X-Telegram-Bot-Api-Secret-Token; required with a webhook (1-256 of A-Z a-z 0-9 _ -)
    webhook_secret: SecretStr | None = None
    chat_lock_poll_s: float = Field(0.2, gt=0, le=60)  # webhook: how often a worker retries a chat another one holds
    poll_timeout_s: float = Field(10.0, gt=0, le=600)
    chat_interval_s: float = Field(1.0, ge=0, le=600)  # at most one send or edit per chat per interval (~1/s)
    global_per_s: float = Field(25.0, gt=0, le=1000)  # all chats together (Telegram: ~30/s)
    typing_every_s: float = Field(4.5, gt=0, le=600)  # Telegram shows "typing…" for 5 s
    shutdown_grace_s: float = Field(30.0, ge=0, le=3600)
    refuse_every_s: float = Field(60.0, ge=0, le=86_400)  # tell a stranger at most this often that the bot is private

    @field_validator("allowed_users", mode="before")
    @classmethod
    def _ids(cls, v: Any) -> Any:
        if isinstance(v, str):
            parts = [p for p in v.replace(";", ",").replace(" ", ",").split(",") if p.strip()]
            try:
                return [int(p) for p in parts]
            except ValueError as e:
                raise ValueError(f"allowed_users must be Telegram user ids separated by commas, got {v!r}") from e
        if isinstance(v, int):
            return [v]
        return v


# ---- flood limits ----------------------------------------------------------------------------

UNPACED = frozenset({"sendChatAction"})  # not a message: no per-chat gap


class ChatRateLimiter(AIORateLimiter):
    """python-telegram-bot's limiter (overall, groups, RetryAfter), with private chats paced too:
    Telegram asks for about one message a second per chat, which the library leaves to the bot.

    A chat's requests go one at a time, and the next starts ``chat_interval_s`` after the previous
    one's answer came back: Telegram wrote the previous message before it answered, so the gap it
    sees is at least the interval however late a request reaches it (a loaded machine, a slow
    network). Spacing the starts instead lets a late request and a prompt one arrive too close.
    Only messages are paced (sends, edits): the "typing…" action is not a message, and paced like
    one it held a reply's first text back by up to the interval (it is sent as the message arrives)."""

    def __init__(self, chat_interval_s: float, **kw: Any) -> None:
        super().__init__(**kw)
        self.chat_interval_s = chat_interval_s
        self._chats: dict[int, tuple[asyncio.Lock, list[float]]] = {}

    async def process_request(self, callback: Any, args: Any, kwargs: dict[str, Any], endpoint: str,
                              data: dict[str, Any], rate_limit_args: int | None) -> Any:
        chat_id = data.get("chat_id")
        if not (isinstance(chat_id, int) and chat_id > 0 and self.chat_interval_s > 0) or endpoint in UNPACED:
            return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)
        lock, done_at = self._chats.setdefault(chat_id, (asyncio.Lock(), [float("-inf")]))
        async with lock:
            loop = asyncio.get_running_loop()
            wait = done_at[0] + self.chat_interval_s - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)
            finally:
                done_at[0] = loop.time()


# ---- streaming one answer ---------------------------------------------------------------------

@dataclass
class _Stream:
    """One answer being written: a message sent on the first partial text, then edited."""

    bot: Any
    interval_s: float  # between edits of one message (Telegram: about one a second per chat)
    chat_id: int
    reply_to: int | None
    message_id: int | None = None
    latest: str = ""
    shown: str = ""
    first_shown_at: float | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def partial(self, text: str) -> None:
        """Called by the conversation worker: remember the text, let the sender catch up."""
        self.latest = _preview(text)
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._send_loop())

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            text = self.latest
            if text == self.shown:
                continue
            try:
                await self._show(text)
            except TelegramError as e:  # a preview that fails is not fatal: the final text is sent
                log.warning("could not show a partial answer in chat %s: %s", self.chat_id, e)
            await asyncio.sleep(self.interval_s)

    async def _show(self, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        if self.message_id is None:
            msg = await self.bot.send_message(self.chat_id, text, reply_markup=markup,
                                              reply_parameters=_reply_to(self.reply_to))
            self.message_id = msg.message_id
            self.first_shown_at = time.perf_counter()
        else:
            try:
                await self.bot.edit_message_text(text, chat_id=self.chat_id, message_id=self.message_id,
                                                 reply_markup=markup)
            except BadRequest as e:
                if "not modified" not in str(e).lower():
                    raise
        self.shown = text

    async def finish(self, text: str, markup: InlineKeyboardMarkup | None) -> None:
        """The final text (split when long), the thumbs under its last piece."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        pieces = split_message(text, MAX_TEXT)
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            if i == 0:
                await self._show(piece, markup if last else None)
            else:
                await self.bot.send_message(self.chat_id, piece, reply_markup=markup if last else None)

    async def abandon(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _preview(text: str) -> str:
    return text if len(text) <= MAX_TEXT - 2 else text[: MAX_TEXT - 2] + " …"


def _reply_to(message_id: int | None) -> ReplyParameters | None:
    return ReplyParameters(message_id, allow_sending_without_reply=True) if message_id else None


def thumbs(episode_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[
        InlineKeyboardButton("👍", callback_data=f"rate:1:{episode_id}"),
        InlineKeyboardButton("👎", callback_data=f"rate:-1:{episode_id}"),
    ]])


# ---- the bot -------------------------------------------------------------------------------------

class StackmindBot:
    """The handlers, bound to one conversation loop."""

    def __init__(self, conversations: Conversations, config: TelegramSettings, inbox: Inbox | None = None) -> None:
        self.conversations = conversations
        self.config = config
        self.inbox = inbox  # webhook workers: text messages are queued in the shared database
        self._drains: dict[str, asyncio.Task[None]] = {}  # per chat: this worker draining its inbox
        self._kicks: dict[str, int] = {}  # per chat: messages received here since the drain started
        self.allowed = frozenset(config.allowed_users)
        self._refused_at: dict[int, float] = {}
        self._outstanding: dict[int, int] = {}  # per chat: answers being worked on (typing indicator)
        self._typing: dict[int, asyncio.Task[None]] = {}
        self._thinks: set[asyncio.Task[None]] = set()
        self._bot: Any = None  # the application's Bot, set at start
        self.replies = 0  # answers delivered (tests and benchmarks read these)
        self.first_visible: list[float] = []
        self.totals: list[float] = []

    # ---- wiring ---------------------------------------------------------------------------------
    def install(self, app: Application) -> None:
        guard = self._guarded
        app.add_handler(CommandHandler("start", guard(self.start)))
        app.add_handler(CommandHandler("help", guard(self.help)))
        app.add_handler(CommandHandler("think", guard(self.think)))
        app.add_handler(CommandHandler("stack", guard(self.stack)))
        app.add_handler(CommandHandler("policies", guard(self.policies)))
        app.add_handler(CommandHandler("forget", guard(self.forget)))
        app.add_handler(CallbackQueryHandler(guard(self.rate), pattern=r"^rate:"))
        app.add_handler(MessageHandler(TEXT_MESSAGES, guard(self.text)))
        app.add_handler(MessageHandler(filters.UpdateType.MESSAGE & filters.COMMAND, guard(self.unknown)))
        app.add_handler(MessageHandler(filters.UpdateType.MESSAGE & ~filters.TEXT, guard(self.not_text)))
        app.add_error_handler(self.on_error)

    @staticmethod
    def chat_ref(update: Update) -> ChatRef:
        assert update.effective_chat is not None and update.effective_user is not None
        return ChatRef(stack=f"telegram-{update.effective_chat.id}", owner=f"telegram:{update.effective_user.id}",
                       channel="Telegram")

    def _guarded(self, fn: Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[None]]) -> Any:
        """The allowlist, then the handler; an error is logged and answered, never raised."""

        async def handler(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            user = update.effective_user
            if user is None or update.effective_chat is None:
                return
            if user.id not in self.allowed:
                await self._refuse(update)
                return
            try:
                await fn(update, context)
            except Exception as e:
                await self._apologise(update, e)

        return handler

    async def _refuse(self, update: Update) -> None:
        assert update.effective_user is not None and update.effective_chat is not None
        uid = update.effective_user.id
        if update.callback_query is not None:
            await update.callback_query.answer("This bot is private.")
            return
        now = time.monotonic()
        if now - self._refused_at.get(uid, -1e9) < self.config.refuse_every_s:
            return
        self._refused_at[uid] = now
        if not self.allowed:
            text = ("This bot answers no one yet: its allowlist is empty. "
                    f"Your Telegram user id is {uid}. To allow yourself, set "
                    f"STACKMIND_TELEGRAM_ALLOWED_USERS={uid} and restart the bot.")
        else:
            text = (f"Sorry, this bot is private. Your Telegram user id is {uid}; "
                    "ask its owner to add it to STACKMIND_TELEGRAM_ALLOWED_USERS.")
        log.info("refused user %s (not on the allowlist)", uid)
        chat_id = update.effective_chat.id
        await update.get_bot().send_message(chat_id, text)

    async def _apologise(self, update: Update | None, error: BaseException) -> None:
        log.error("error while handling an update: %s", error, exc_info=error)
        if update is None or update.effective_chat is None:
            return
        chat_id = update.effective_chat.id
        text = SORRY
        if isinstance(error, ConversationClosed):
            text = "I am restarting right now; please send that again in a minute."
        try:
            if update.callback_query is not None:
                await update.callback_query.answer(text[:200])
            else:
                await update.get_bot().send_message(chat_id, text)
        except Exception as e:  # the apology itself failed (network down): logging is all we can do
            log.error("could not tell chat %s about an error: %s", chat_id, e)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._apologise(update if isinstance(update, Update) else None, context.error or RuntimeError("?"))

    async def send(self, chat_id: int, text: str, reply_to: int | None = None) -> None:
        for piece in split_message(text, MAX_TEXT):
            await self._bot.send_message(chat_id, piece, reply_parameters=_reply_to(reply_to))

    # ---- typing indicator ----------------------------------------------------------------------
    def _busy(self, chat_id: int, delta: int) -> None:
        n = self._outstanding.get(chat_id, 0) + delta
        self._outstanding[chat_id] = n
        if n > 0 and chat_id not in self._typing:
            self._typing[chat_id] = asyncio.create_task(self._keep_typing(chat_id))
        elif n <= 0:
            self._outstanding.pop(chat_id, None)
            task = self._typing.pop(chat_id, None)
            if task is not None:
                task.cancel()

    async def _keep_typing(self, chat_id: int) -> None:
        while True:
            try:
                await self._bot.send_chat_action(chat_id, ChatAction.TYPING)
            except TelegramError as e:
                log.debug("typing indicator failed in chat %s: %s", chat_id, e)
            await asyncio.sleep(self.config.typing_every_s)

    # ---- handlers ------------------------------------------------------------------------------
    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self._bot = context.bot
        name = update.effective_user.first_name if update.effective_user else "there"
        await self.send(update.effective_chat.id, f"Hello {name}!\n\n{HELP}")  # type: ignore[union-attr]

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self._bot = context.bot
        await self.send(update.effective_chat.id, HELP)  # type: ignore[union-attr]

    async def stack(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self._bot = context.bot
        await self.send(update.effective_chat.id, self.conversations.stack_text(self.chat_ref(update)))  # type: ignore[union-attr]

    async def policies(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self._bot = context.bot
        text = await asyncio.to_thread(self.conversations.policies_text)
        await self.send(update.effective_chat.id, text)  # type: ignore[union-attr]

    async def forget(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self._bot = context.bot
        await self.send(update.effective_chat.id, await self.conversations.forget(self.chat_ref(update)))  # type: ignore[union-attr]

    async def unknown(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self._bot = context.bot
        await self.send(update.effective_chat.id, "I do not know that command.\n\n" + HELP)  # type: ignore[union-attr]

    async def not_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self._bot = context.bot
        await self.send(update.effective_chat.id, "I can read text messages only, for now.")  # type: ignore[union-attr]

    async def text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self._bot = context.bot
        assert update.message is not None and update.effective_chat is not None
        if self.inbox is not None:  # queued by the webhook receiver: answered by whoever holds the chat
            self.kick(self.chat_ref(update).stack)
            return
        chat_id = update.effective_chat.id
        stream = _Stream(context.bot, self.config.chat_interval_s, chat_id, update.message.message_id)
        self._busy(chat_id, +1)
        try:
            reply: Reply = await self.conversations.say(self.chat_ref(update), update.message.text or "", stream.partial)
            if reply.leader:
                await stream.finish(reply.text, thumbs(reply.episode_id))
                self.replies += 1
                self.totals.append(reply.total_s)
                if reply.first_visible_s is not None:
                    self.first_visible.append(reply.first_visible_s)
        except BaseException:
            await stream.abandon()
            raise
        finally:
            self._busy(chat_id, -1)

    async def think(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Start a search; the handler returns at once and the conclusion arrives when it is done."""
        self._bot = context.bot
        assert update.message is not None and update.effective_chat is not None
        goal = " ".join(context.args or []).strip()
        chat_id = update.effective_chat.id
        if not goal:
            await self.send(chat_id, "Usage: /think GOAL, for example /think what is 17 * 23?")
            return
        await context.bot.send_message(chat_id, f"Thinking about: {goal}",
                                       reply_parameters=_reply_to(update.message.message_id))
        task = asyncio.create_task(self._think(update, context, goal))
        self._thinks.add(task)
        task.add_done_callback(self._thinks.discard)

    async def _think(self, update: Update, context: ContextTypes.DEFAULT_TYPE, goal: str) -> None:
        assert update.message is not None and update.effective_chat is not None
        chat_id = update.effective_chat.id
        progress = _Stream(context.bot, self.config.chat_interval_s, chat_id, update.message.message_id)
        self._busy(chat_id, +1)
        try:
            episode = await self.conversations.think(
                self.chat_ref(update), goal, lambda line: progress.partial(f"🤔 {goal}\n{line}"))
            await progress.abandon()
            answer = episode.answer or "I did not reach a conclusion within my step budget."
            text = f"Conclusion ({len(episode.steps)} steps): {answer}"
            final = _Stream(context.bot, self.config.chat_interval_s, chat_id, update.message.message_id)
            await final.finish(text, thumbs(episode.id))
            self.replies += 1
        except Exception as e:
            await progress.abandon()
            await self._apologise(update, e)
        finally:
            self._busy(chat_id, -1)

    async def rate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        try:
            _, value, episode_id = (query.data or "").split(":", 2)
            reward = float(value)
        except ValueError:
            await query.answer("I could not read that button.")
            return
        try:
            await asyncio.to_thread(self.conversations.rate, episode_id, reward, chat=self.chat_ref(update),
                                    by=f"telegram:{update.effective_user.id}")  # type: ignore[union-attr]
        except PermissionError:
            await query.answer("That answer belongs to another chat.")
            return
        except FileNotFoundError:
            await query.answer("I no longer have that answer's record.")
            return
        await query.answer("Thanks! 👍 noted." if reward > 0 else "Thanks, noted 👎: I will learn from it.")

    # ---- webhook workers: the chat inbox in the shared database ----------------------------------
    def inbox_key(self, update: Update) -> str | None:
        """The chat whose inbox an update goes to: text messages (not commands) from allowed users."""
        user = update.effective_user
        if not TEXT_MESSAGES.check_update(update) or user is None or user.id not in self.allowed:
            return None
        return self.chat_ref(update).stack

    def kick(self, key: str) -> None:
        """A message for chat ``key`` is in the inbox: make sure this worker drains it (or sees another
        worker holding the chat do so)."""
        self._kicks[key] = self._kicks.get(key, 0) + 1
        if key not in self._drains:
            self._drains[key] = asyncio.create_task(self.drain_chat(key))

    async def drain_chat(self, key: str) -> None:
        """Answer chat ``key``'s queued messages until none is left, holding the chat's lock.

        Another worker holding the lock answers them itself: this one retries every ``chat_lock_poll_s``
        while any are queued, so a message queued after the holder's last look is never stranded. Rows are
        deleted only once their reply is delivered: a worker that dies mid-turn leaves them (and
        PostgreSQL drops its lock) for the next worker to answer."""
        assert self.inbox is not None
        inbox = self.inbox
        try:
            while True:
                kicks = self._kicks.get(key, 0)
                if not await asyncio.to_thread(inbox.inbox_pending, key):
                    if self._kicks.get(key, 0) == kicks:
                        return
                    continue
                lock = inbox.lock(f"chat:{key}", timeout=0)
                try:
                    await asyncio.to_thread(lock.__enter__)
                except LockTimeout:  # another worker is answering this chat
                    await asyncio.sleep(self.config.chat_lock_poll_s)
                    continue
                try:
                    while items := await asyncio.to_thread(inbox.inbox_pending, key):
                        if not await self._answer_queued(items):
                            return  # shutting down: the rows stay for another worker
                        await asyncio.to_thread(inbox.inbox_done, [i.update_id for i in items])
                finally:
                    await asyncio.to_thread(lock.__exit__, None, None, None)
        finally:
            self._drains.pop(key, None)

    async def _answer_queued(self, items: list[InboxItem]) -> bool:
        """One turn for a chat's queued messages (answered together, as a burst is); False when the
        conversation loop is closing and took nothing."""
        updates = [Update.de_json(json.loads(i.payload), self._bot) for i in items]
        first = updates[0]
        assert first.message is not None and first.effective_chat is not None
        chat_id = first.effective_chat.id
        ref = self.chat_ref(first)
        stream = _Stream(self._bot, self.config.chat_interval_s, chat_id, first.message.message_id)
        self._busy(chat_id, +1)
        try:
            # Queued in order before the first await: the loop answers them as one turn (chat.py).
            replies = await asyncio.gather(*(
                self.conversations.say(ref, u.message.text or "", stream.partial if n == 0 else None)  # type: ignore[union-attr]
                for n, u in enumerate(updates)))
            reply = replies[0]
            await stream.finish(reply.text, thumbs(reply.episode_id))
            self.replies += 1
            self.totals.append(time.time() - items[0].received)
            if reply.first_visible_s is not None:
                self.first_visible.append(reply.first_visible_s)
            log.info("answered %s: %d queued messages (updates %s..%s)", ref.stack, len(items),
                     items[0].update_id, items[-1].update_id)
            return True
        except ConversationClosed:
            await stream.abandon()
            return False
        except Exception as e:  # answered with an apology; the messages are not retried forever
            await stream.abandon()
            await self._apologise(first, e)
            return True
        finally:
            self._busy(chat_id, -1)

    async def drain(self, grace_s: float) -> None:
        """Finish /think runs and queued turns in flight (their answers are delivered), up to ``grace_s``."""
        pending = {*self._thinks, *self._drains.values()}
        if pending:
            await asyncio.wait(pending, timeout=grace_s)
        for task in self._typing.values():
            task.cancel()


def build_application(token: str, bot: StackmindBot, config: TelegramSettings) -> Application:
    builder = ApplicationBuilder()
    if config.webhook_url:
        builder = builder.updater(None)  # updates arrive through `webhook_server`
    app = (
        builder
        .token(token)
        .base_url(config.base_url)
        .base_file_url(config.base_file_url)
        .concurrent_updates(True)  # chats are served side by side; the loop keeps each chat in order
        # Telegram's flood limits (overall, per group) and its RetryAfter answers: the library's limiter.
        .rate_limiter(ChatRateLimiter(config.chat_interval_s, overall_max_rate=config.global_per_s, max_retries=3))
        .get_updates_read_timeout(config.poll_timeout_s + 10)
        .build()
    )
    bot.install(app)
    return app


# ---- the webhook receiver --------------------------------------------------------------------------

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def webhook_app(app: Application, bot: StackmindBot, secret: str) -> Starlette:
    """``POST /<webhook_path>``: Telegram's update, checked against the secret, queued in the chat's
    inbox (a text message) and only then acknowledged; any failure before that is a 500, which Telegram
    retries (to another worker, behind a load balancer). ``GET /health`` for the load balancer."""
    async def receive(request: Request) -> Response:
        if not hmac.compare_digest(request.headers.get(SECRET_HEADER, "").encode(), secret.encode()):
            return PlainTextResponse("wrong secret token", status_code=403)
        try:
            data = await request.json()
            update = Update.de_json(data, app.bot)
        except (ValueError, TypeError, KeyError) as e:
            return PlainTextResponse(f"not a Telegram update: {type(e).__name__}", status_code=400)
        if update is None:
            return PlainTextResponse("not a Telegram update", status_code=400)
        key = bot.inbox_key(update)
        if key is not None and bot.inbox is not None:
            await asyncio.to_thread(bot.inbox.inbox_put, key, update.update_id, json.dumps(data))
        await app.update_queue.put(update)
        return Response(status_code=200)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    path = "/" + bot.config.webhook_path.strip("/")
    return Starlette(routes=[Route(path, receive, methods=["POST"]), Route("/health", health, methods=["GET"])])


class _Server(uvicorn.Server):
    """uvicorn inside the bot's event loop: the bot owns SIGINT and SIGTERM (a graceful shutdown)."""

    def capture_signals(self) -> Any:  # type: ignore[override]
        return nullcontext()


async def _start_webhook(app: Application, bot: StackmindBot, config: TelegramSettings,
                         secret: str) -> tuple[_Server, asyncio.Task[None]]:
    server = _Server(uvicorn.Config(webhook_app(app, bot, secret), host=config.webhook_listen,
                                    port=config.webhook_port, log_level="warning", lifespan="off", access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise BotStartError(f"the webhook server could not listen on {config.webhook_listen}:{config.webhook_port}")
        await asyncio.sleep(0.05)
    # Every worker registers the same public URL (the load balancer's): setting it again changes nothing.
    await app.bot.set_webhook(config.webhook_url or "", secret_token=secret,
                              allowed_updates=["message", "callback_query"])
    return server, task


# ---- running it ----------------------------------------------------------------------------------

class RedactToken(_redact.RedactFilter):
    """Replaces the bot token wherever it appears in a log record (httpx logs request URLs)."""

    def __init__(self, token: str, *more: str) -> None:
        super().__init__(_redact.secrets([token, *more]) if token else [])
        self.token = token


def protect_token(token: str, *more: str) -> RedactToken:
    """Keep the token (and ``more`` secrets: the webhook's) out of logs: quiet httpx's per-request
    lines, redact it on every root handler (and logging's last-resort one) and on the loggers that see it."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    redact = RedactToken(token, *more)
    for handler in [*logging.getLogger().handlers, logging.lastResort]:
        if handler is not None:
            handler.addFilter(redact)
    for name in ("telegram", "stackmind", "httpx"):
        logging.getLogger(name).addFilter(redact)
    return redact


async def serve(
    token: str,
    conversations: Conversations,
    config: TelegramSettings,
    stop: asyncio.Event,
    ready: Callable[[StackmindBot], None] | None = None,
) -> StackmindBot:
    """Run the bot until ``stop`` is set, then shut down gracefully. Returns the bot (its counters)."""
    secret = config.webhook_secret.get_secret_value().strip() if config.webhook_secret else ""
    if config.webhook_url and not secret:
        raise BotStartError("a webhook needs STACKMIND_TELEGRAM_WEBHOOK_SECRET (1-256 characters of A-Z a-z 0-9 _ -): "
                            "Telegram sends it with every update and the bot refuses updates without it")
    protect_token(token, secret)
    inbox: Inbox | None = conversations.store if config.webhook_url else None  # type: ignore[assignment]
    bot = StackmindBot(conversations, config, inbox)
    app = build_application(token, bot, config)
    await conversations.start()
    async with app:
        bot._bot = app.bot
        try:
            await app.bot.set_my_commands([BotCommand(c, d) for c, d in COMMANDS])
        except TelegramError as e:
            log.warning("could not register the command list with Telegram: %s", e)
        await app.start()
        webhook: tuple[_Server, asyncio.Task[None]] | None = None
        if config.webhook_url:
            webhook = await _start_webhook(app, bot, config, secret)
            log.info("webhook listening on %s:%s/%s", config.webhook_listen, config.webhook_port,
                     config.webhook_path.strip("/"))
            for key in await asyncio.to_thread(bot.inbox.inbox_chats):  # type: ignore[union-attr]
                bot.kick(key)  # turns a stopped or dead worker left queued
        else:
            assert app.updater is not None
            await app.updater.start_polling(timeout=config.poll_timeout_s, allowed_updates=["message", "callback_query"])
            log.info("long polling for updates")
        if ready is not None:
            ready(bot)
        await stop.wait()
        log.info("shutting down: finishing answers in flight (up to %.0f s)", config.shutdown_grace_s)
        if webhook is not None:  # no new updates (the webhook stays set: the other workers take them)
            webhook[0].should_exit = True
            await webhook[1]
        else:
            assert app.updater is not None
            await app.updater.stop()
        await conversations.close(config.shutdown_grace_s)  # answers in flight finish
        await bot.drain(config.shutdown_grace_s)
        await app.stop()  # waits for handler tasks to deliver
    return bot


def run(token: str, conversations: Conversations, config: TelegramSettings) -> None:
    """Blocking entry point for `stackmind telegram`: runs until SIGINT or SIGTERM.

    A refused token or an unreachable Bot API is a `BotStartError` (one line, no token in it)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread, or not POSIX
                pass
        await serve(token, conversations, config, stop)

    try:
        asyncio.run(main())
    except InvalidToken as e:
        raise BotStartError(f"the Telegram Bot API at {config.base_url} refused the bot token: check "
                            "TELEGRAM_BOT_TOKEN (in the environment or .env) against the one @BotFather gave") from e
    except NetworkError as e:  # TimedOut too
        raise BotStartError(f"cannot reach the Telegram Bot API at {config.base_url} ({_redact.redact(str(e), _redact.secrets([token]))}): "
                            "check the network, or STACKMIND_TELEGRAM_BASE_URL") from e
