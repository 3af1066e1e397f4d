"""A fake Telegram Bot API server over real HTTP on 127.0.0.1, for end-to-end tests of the bot.

The bot reaches it through python-telegram-bot's ``base_url`` (``fake.base_url``). It implements
the methods the bot calls (getMe, getUpdates with long polling, sendMessage, editMessageText,
sendChatAction, answerCallbackQuery, deleteWebhook, setMyCommands, ...) with Telegram's rules that
matter here: 4096-character messages, "message is not modified", unknown token -> 401. It records
every call, and every send or edit closer than ``flood_gap_s`` to the previous one in the same chat
as a flood violation. Tests play users with `send_text` and `press` and wait with `wait_for`.

Webhooks: after ``setWebhook`` (its ``secret_token`` sent back in ``X-Telegram-Bot-Api-Secret-Token``)
updates are POSTed instead of held for ``getUpdates`` (which then answers 409 Conflict, as Telegram
does); `balance` spreads them round-robin over several worker URLs, standing in for the load
balancer in front of the workers. A chat's updates go out one at a time, in order (the next after
the previous one's 200), different chats' side by side. A delivery that fails (no answer, not 200) is
retried on the next URL, as Telegram retries; every attempt is in ``deliveries``.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

BOT_USER = {"id": 4242, "is_bot": True, "first_name": "stackmind", "username": "stackmind_test_bot",
            "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}
_JSON_KEYS = {"reply_markup", "reply_parameters", "allowed_updates", "commands", "entities",
              "link_preview_options", "scope"}
_INT_KEYS = {"chat_id", "message_id", "offset", "limit", "reply_to_message_id"}


@dataclass
class SentMessage:
    chat_id: int
    message_id: int
    text: str
    reply_markup: dict[str, Any] | None = None
    reply_to: int | None = None
    edits: list[str] = field(default_factory=list)  # earlier texts, oldest first
    sent_at: float = field(default_factory=time.monotonic)
    final_at: float = field(default_factory=time.monotonic)  # last send or edit

    @property
    def buttons(self) -> list[dict[str, Any]]:
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [b for row in rows for b in row]


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float


class FakeTelegram:
    def __init__(self, token: str = "123456:TEST-token-abcdef", flood_gap_s: float = 0.9) -> None:
        self.token = token
        self.flood_gap_s = flood_gap_s
        self._cond = threading.Condition()
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self.calls: list[Call] = []
        self.sent: list[SentMessage] = []  # the bot's messages, in order
        self._by_id: dict[tuple[int, int], SentMessage] = {}
        self._last_write: dict[int, float] = {}
        self.flood_violations: list[tuple[int, float]] = []
        self.callback_answers: list[dict[str, Any]] = []
        self.user_messages: dict[int, dict[str, Any]] = {}  # message_id -> user message
        self.webhook_url: str | None = None
        self.webhook_secret: str | None = None
        self._targets: list[str] = []  # the load balancer's workers; empty: the webhook URL
        self._next_target = itertools.count()
        self._outbox: dict[int, deque[dict[str, Any]]] = {}  # per chat: updates not yet delivered, in order
        self._delivering: set[int] = set()  # chats with an update in flight
        self._closed = False
        self._deliverers: list[threading.Thread] = []
        self.deliveries: list[tuple[int, str, int]] = []  # (update id, url, HTTP status or 0: no answer)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-telegram", daemon=True)

    # ---- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> FakeTelegram:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/bot"

    # ---- playing users ----------------------------------------------------------------------------
    def send_text(self, user_id: int, text: str, chat_id: int | None = None) -> int:
        """A user writes to the bot; returns the message id."""
        chat_id = user_id if chat_id is None else chat_id
        with self._cond:
            mid = next(self._message_ids)
            msg: dict[str, Any] = {
                "message_id": mid, "date": int(time.time()), "text": text,
                "chat": {"id": chat_id, "type": "private" if chat_id == user_id else "group",
                         "first_name": f"User{user_id}"},
                "from": {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"},
            }
            if text.startswith("/"):
                command = text.split()[0]
                msg["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
            self.user_messages[mid] = msg
            self._enqueue({"update_id": next(self._update_ids), "message": msg})
            return mid

    def send_photo(self, user_id: int) -> int:
        with self._cond:
            mid = next(self._message_ids)
            msg = {"message_id": mid, "date": int(time.time()), "chat": {"id": user_id, "type": "private"},
                   "from": {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"},
                   "photo": [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]}
            self._enqueue({"update_id": next(self._update_ids), "message": msg})
            return mid

    def press(self, user_id: int, message: SentMessage, data: str) -> str:
        """A user presses an inline button under one of the bot's messages; returns the query id."""
        with self._cond:
            qid = f"q{next(self._update_ids)}"
            self._enqueue({"update_id": next(self._update_ids), "callback_query": {
                "id": qid, "chat_instance": "ci", "data": data,
                "from": {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"},
                "message": self._message_dict(message),
            }})
            return qid

    def _enqueue(self, update: dict[str, Any]) -> None:
        """(Holding the lock.) Held for getUpdates, or posted to the webhook."""
        if self.webhook_url is not None:
            self._post_later(update)
        else:
            self._updates.append(update)
        self._cond.notify_all()

    # ---- webhooks -----------------------------------------------------------------------------------
    def balance(self, urls: list[str], deliverers: int = 4) -> None:
        """Post webhook updates round-robin to ``urls`` (the workers behind a load balancer)."""
        with self._cond:
            self._targets = list(urls)
        self._start_deliverers(deliverers)

    def _start_deliverers(self, n: int) -> None:
        while len(self._deliverers) < n:
            t = threading.Thread(target=self._deliver, name=f"fake-telegram-webhook-{len(self._deliverers)}",
                                 daemon=True)
            self._deliverers.append(t)
            t.start()

    def _post_later(self, update: dict[str, Any]) -> None:
        body = update.get("message") or (update.get("callback_query") or {}).get("message") or {}
        self._outbox.setdefault(int(body.get("chat", {}).get("id", 0)), deque()).append(update)

    def _take(self) -> tuple[int, dict[str, Any]] | None:
        """(Holding the lock.) The oldest update of a chat with none in flight; None once closed."""
        while not self._closed:
            for chat, updates in self._outbox.items():
                if updates and chat not in self._delivering:
                    self._delivering.add(chat)
                    return chat, updates.popleft()
            self._cond.wait(0.2)
        return None

    def _deliver(self) -> None:
        with httpx.Client(timeout=30.0) as client:
            while True:
                with self._cond:
                    taken = self._take()
                if taken is None:
                    return
                chat, update = taken
                for attempt in range(60):
                    with self._cond:
                        targets = self._targets or ([self.webhook_url] if self.webhook_url else [])
                        url = targets[next(self._next_target) % len(targets)] if targets else None
                        headers = {"X-Telegram-Bot-Api-Secret-Token": self.webhook_secret or ""}
                    if url is None:
                        break
                    try:
                        status = client.post(url, json=update, headers=headers).status_code
                    except httpx.HTTPError:
                        status = 0
                    with self._cond:
                        self.deliveries.append((update["update_id"], url, status))
                        self._cond.notify_all()
                    if status == 200:
                        break
                    time.sleep(min(2.0, 0.1 * (attempt + 1)))
                with self._cond:
                    self._delivering.discard(chat)
                    self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; "
                                       f"bot sent: {[(m.chat_id, m.text[:60]) for m in self.sent[-10:]]}")
                self._cond.wait(min(left, 0.2))

    def messages(self, chat_id: int) -> list[SentMessage]:
        with self._cond:
            return [m for m in self.sent if m.chat_id == chat_id]

    def method_calls(self, method: str) -> list[Call]:
        with self._cond:
            return [c for c in self.calls if c.method == method]

    def pending_updates(self) -> int:
        with self._cond:
            return len(self._updates)

    # ---- the API ------------------------------------------------------------------------------------
    def _message_dict(self, m: SentMessage) -> dict[str, Any]:
        d: dict[str, Any] = {"message_id": m.message_id, "date": int(time.time()), "text": m.text,
                             "chat": {"id": m.chat_id, "type": "private"}, "from": BOT_USER}
        if m.reply_markup:
            d["reply_markup"] = m.reply_markup
        return d

    def _write(self, chat_id: int) -> None:
        now = time.monotonic()
        last = self._last_write.get(chat_id)
        if last is not None and now - last < self.flood_gap_s:
            self.flood_violations.append((chat_id, now - last))
        self._last_write[chat_id] = now

    def handle(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._cond:
            self.calls.append(Call(method, params, time.monotonic()))
            self._cond.notify_all()
        if method == "getUpdates":
            if self.webhook_url is not None:
                return 409, {"ok": False, "error_code": 409, "description":
                             "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
                             "delete the webhook first"}
            return 200, {"ok": True, "result": self._get_updates(params)}
        with self._cond:
            try:
                return self._dispatch(method, params)
            finally:
                self._cond.notify_all()

    def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        deadline = time.monotonic() + min(timeout, 5.0)  # short holds keep shutdown quick in tests
        with self._cond:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while not self._updates and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            return list(self._updates[:limit])

    def _dispatch(self, method: str, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        ok = {"ok": True, "result": True}
        if method == "getMe":
            return 200, {"ok": True, "result": BOT_USER}
        if method == "setWebhook":
            url = str(p.get("url") or "")
            self.webhook_url, self.webhook_secret = (url or None), p.get("secret_token")
            for update in self._updates:  # held ones go out now
                self._post_later(update)
            self._updates.clear()
            if url:
                threading.Thread(target=self._start_deliverers, args=(4,), daemon=True).start()
            return 200, ok
        if method == "deleteWebhook":
            self.webhook_url = self.webhook_secret = None
            return 200, ok
        if method in ("setMyCommands", "deleteMyCommands", "close", "logOut"):
            return 200, ok
        if method == "sendChatAction":
            return 200, ok
        if method == "answerCallbackQuery":
            self.callback_answers.append(p)
            return 200, ok
        if method == "sendMessage":
            text = str(p.get("text", ""))
            if not text.strip():
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
            if len(text) > 4096:
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"}
            chat_id = int(p["chat_id"])
            self._write(chat_id)
            reply_to = (p.get("reply_parameters") or {}).get("message_id") or p.get("reply_to_message_id")
            m = SentMessage(chat_id, next(self._message_ids), text, p.get("reply_markup"), reply_to)
            self.sent.append(m)
            self._by_id[(chat_id, m.message_id)] = m
            return 200, {"ok": True, "result": self._message_dict(m)}
        if method == "editMessageText":
            chat_id, mid, text = int(p["chat_id"]), int(p["message_id"]), str(p.get("text", ""))
            m = self._by_id.get((chat_id, mid))
            if m is None:
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message to edit not found"}
            if len(text) > 4096:
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"}
            if text == m.text and p.get("reply_markup") == m.reply_markup:
                return 400, {"ok": False, "error_code": 400, "description":
                             "Bad Request: message is not modified: specified new message content and reply "
                             "markup are exactly the same as a current content and reply markup of the message"}
            self._write(chat_id)
            m.edits.append(m.text)
            m.text = text
            m.reply_markup = p.get("reply_markup")
            m.final_at = time.monotonic()
            return 200, {"ok": True, "result": self._message_dict(m)}
        return 404, {"ok": False, "error_code": 404, "description": f"Not Found: method {method} is not faked"}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _params(self) -> dict[str, Any]:
                url = urlparse(self.path)
                raw: dict[str, list[str]] = parse_qs(url.query)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                ctype = self.headers.get("Content-Type", "")
                if body and ctype.startswith("application/json"):
                    return dict(json.loads(body))
                if body:
                    raw.update(parse_qs(body.decode("utf-8"), keep_blank_values=True))
                out: dict[str, Any] = {}
                for k, v in raw.items():
                    val: Any = v[-1]
                    if k in _JSON_KEYS:
                        val = json.loads(val)
                    elif k in _INT_KEYS:
                        val = int(val)
                    out[k] = val
                return out

            def _serve(self) -> None:
                path = urlparse(self.path).path
                prefix = f"/bot{fake.token}/"
                if not path.startswith(prefix):
                    self._reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                    return
                method = path[len(prefix):]
                try:
                    status, payload = fake.handle(method, self._params())
                except Exception as e:  # a bug in the fake: say so loudly
                    status, payload = 500, {"ok": False, "error_code": 500, "description": f"fake: {e!r}"}
                self._reply(status, payload)

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the bot hung up (shutdown): fine
                    pass

            do_GET = _serve
            do_POST = _serve

        return Handler
