"""The typer application and the helpers every command module shares.

Command modules (``cli_*.py``) import `app` (or `bench_app`) from here and register their commands;
`stackmind.interfaces.cli` imports them all. The command line is a thin layer over the Python API.

One error path: whatever a command raises ends in `report_error`, which prints ONE line on stderr
(a `StackmindError` says what went wrong, where and what to do; anything else is named as unexpected)
with every secret redacted, and exits non-zero. ``stackmind --debug ...`` adds the traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from stackmind.errors import StackmindError
from stackmind.interfaces import _redact
from stackmind.settings import Settings, SettingsError, settings_error

MAX_ERROR_CHARS = 2000


class _OneErrorPath(TyperGroup):
    """The top-level group: a command's exception becomes one line (`report_error`) and exit 1."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # usage errors keep click's exit code 2
            raise
        except Exception as e:
            report_error(e, debug=bool(ctx.params.get("debug")))
            raise typer.Exit(1) from None


app = typer.Typer(
    name="stackmind",
    help="A text-native, self-modifying agent: stack, tree-of-thought, sandbox, nightly LoRA.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=_OneErrorPath,
)


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error.")) -> None:
    _redact.install(_redact.secrets())  # warnings logged before a command sets up logging
bench_app = typer.Typer(help="Benchmarks: print figures and write JSON.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

console = Console(stderr=True)  # progress and chatter go to stderr; answers and JSON to stdout
out = Console(highlight=False, soft_wrap=True, markup=False)

JSON_OPTION = typer.Option(False, "--json", help="Print the result as JSON on stdout.")


def settings() -> Settings:
    """The settings, with a usable data dir (a bad value is a `SettingsError`: one line on stderr)."""
    return Settings().check_home()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an actionable error (no traceback) and return the Exit to raise."""
    print_error(message)
    return typer.Exit(code)


def print_error(message: str) -> None:
    """One line on stderr, secrets redacted."""
    text = one_line(_redact.redact(message, _redact.secrets()))
    console.print(f"[bold red]error:[/] {escape(text)}", markup=True, highlight=False, soft_wrap=True)


def one_line(text: str) -> str:
    text = "; ".join(line.strip() for line in str(text).splitlines() if line.strip())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def describe(e: BaseException) -> str:
    """What to print for an exception: its own words when stackmind raised it on purpose."""
    if isinstance(e, StackmindError):
        return str(e)
    if isinstance(e, ValidationError):
        cls = _settings_class(e.title)
        if cls is not None:
            return str(settings_error(e, cls))
    if isinstance(e, OSError) and e.filename is not None:
        what = e.strerror or type(e).__name__
        return (f"{e.filename}: {what}; check that it exists and that you may read and write it "
                "(the data dir is STACKMIND_HOME)")
    detail = str(e)
    return f"unexpected {type(e).__name__}" + (f": {detail}" if detail else "") + \
        " (run with --debug for the traceback)"


def report_error(e: BaseException, debug: bool = False) -> None:
    if debug:
        text = "".join(traceback.format_exception(e))
        sys.stderr.write(_redact.redact(text, _redact.secrets()))
        sys.stderr.flush()
    print_error(describe(e))


class _OneLineFormatter(logging.Formatter):
    """Log lines stay lines: an exception is summed up as ``(Type: message)``, no traceback."""

    def format(self, record: logging.LogRecord) -> str:
        exc, record.exc_info = record.exc_info, None
        text, record.exc_text = record.exc_text, None
        try:
            line = super().format(record)
        finally:
            record.exc_info, record.exc_text = exc, text
        if exc and exc[1] is not None:
            line += f" ({type(exc[1]).__name__}: {one_line(str(exc[1]))[:300]})"
        elif text:
            line += f" ({one_line(text.strip().splitlines()[-1])[:300]})"
        return line


def debugging(ctx: typer.Context) -> bool:
    """Whether the command runs under ``stackmind --debug``."""
    return bool(ctx.find_root().params.get("debug"))


def setup_logging(level: int = logging.INFO, extra_secrets: list[str] | None = None, debug: bool = False) -> None:
    """Logs on stderr for long-running commands (the bot): one line a record, secrets redacted;
    with ``debug`` (``stackmind --debug``) the tracebacks are kept."""
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt) if debug else _OneLineFormatter(fmt))
    handler.addFilter(_redact.RedactFilter(_redact.secrets(extra_secrets or [])))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def _settings_class(title: str) -> type[Any] | None:
    """The settings class a ValidationError came from (each reads its own environment variables)."""
    if title == "Settings":
        return Settings
    if title == "ConsolidateConfig":
        from stackmind.consolidate.config import ConsolidateConfig

        return ConsolidateConfig
    if title == "ChatSettings":
        from stackmind.interfaces.chat import ChatSettings

        return ChatSettings
    if title == "TelegramSettings":
        from stackmind.interfaces.telegram import TelegramSettings

        return TelegramSettings
    return None


__all__ = ["JSON_OPTION", "SettingsError", "app", "bench_app", "console", "describe", "fail", "out",
           "debugging", "print_error", "print_json", "report_error", "settings", "setup_logging"]
