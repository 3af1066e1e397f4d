"""Secrets never printed: the one redaction that the command line's error printer and the logs use.

`secrets()` collects the values to hide (the Telegram bot token, the Wolfram|Alpha key, the OpenAI
API key: from the environment, ``.env`` and the settings), `redact` replaces each with a placeholder
(also URL-encoded, and a token's secret half on its own), and `RedactFilter` does the same to every
log record that reaches a handler, its exception text included.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Iterable
from urllib.parse import quote

SECRET_VARIABLES = (
    "TELEGRAM_BOT_TOKEN", "STACKMIND_TELEGRAM_BOT_TOKEN", "WOLFRAMALPHA_API_KEY",
    "STACKMIND_WOLFRAMALPHA_API_KEY", "STACKMIND_OPENAI_API_KEY", "STACKMIND_TELEGRAM_WEBHOOK_SECRET",
)
PLACEHOLDER = "<secret>"
_MIN_SECRET = 6  # shorter values would redact ordinary words


def secrets(extra: Iterable[str] = ()) -> list[str]:
    """Every secret value this process knows of, longest first (so a part never hides the whole)."""
    found = {os.environ.get(name, "") for name in SECRET_VARIABLES} | set(extra)
    try:  # the settings also read .env; they may be broken, which is what is being reported
        from pydantic import SecretStr

        from stackmind.settings import Settings

        s = Settings()
        found |= {v.get_secret_value() for v in (getattr(s, name) for name in type(s).model_fields)
                  if isinstance(v, SecretStr)}
    except Exception:  # noqa: S110 (no settings, no further secrets: the environment's are enough)
        pass
    out: set[str] = set()
    for value in found:
        value = value.strip()
        if len(value) < _MIN_SECRET:
            continue
        out |= {value, quote(value, safe=""), quote(value)}
        head, sep, tail = value.partition(":")  # a bot token is <bot id>:<secret>
        if sep and len(tail) >= _MIN_SECRET:
            out.add(tail)
    return sorted(out, key=len, reverse=True)


def redact(text: str, hidden: Iterable[str]) -> str:
    for value in hidden:
        if value and value in text:
            text = text.replace(value, PLACEHOLDER)
    return text


class RedactFilter(logging.Filter):
    """Replaces secrets in a record's message and in its exception's text, before any handler
    formats it (httpx logs request URLs, which carry the bot token)."""

    def __init__(self, hidden: Iterable[str]) -> None:
        super().__init__()
        self.hidden = [h for h in hidden if h]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.hidden:
            return True
        msg = record.getMessage()
        clean = redact(msg, self.hidden)
        if clean != msg:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text, record.exc_info = redact(text, self.hidden), None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, self.hidden)
        return True


def install(hidden: Iterable[str]) -> RedactFilter:
    """Put the filter on every handler of the root logger and on logging's last-resort handler
    (what prints warnings when no handler is configured)."""
    f = RedactFilter(hidden)
    handlers = [*logging.getLogger().handlers, logging.lastResort]
    for handler in handlers:
        if handler is not None and not any(isinstance(x, RedactFilter) and x.hidden == f.hidden
                                           for x in handler.filters):
            handler.addFilter(f)
    return f
