"""`stackmind chat` (the conversation loop in a terminal) and `stackmind telegram` (the bot)."""

from __future__ import annotations

import asyncio
import getpass
import logging
import sys
from typing import Annotated, Any

import typer

from stackmind.interfaces._app import app, console, debugging, fail, setup_logging
from stackmind.interfaces.chat import ChatRef, ChatSettings, ConversationClosed, Conversations
from stackmind.settings import Settings

TERMINAL_HELP = """Type a message and press Enter. Commands:
  /think GOAL   work on a goal step by step (search, tools)
  /stack        this chat's working memory
  /policies     the learning policies I know
  /forget       clear this chat's working memory
  /good, /bad   thumbs up or down for the last answer (a reward for learning)
  /quit         leave (Ctrl-D too)"""


def _load(settings: Settings, config: ChatSettings) -> tuple[Any, Any]:
    """The model and, where it is installed and wanted, long-term memory."""
    from stackmind.llm import LLMError, load_llm

    with console.status("loading the model (the first run assembles and converts it) ..."):
        try:
            llm = load_llm(settings)
        except LLMError as e:
            raise fail(str(e)) from e
    memory = None
    if config.memory:
        try:
            from stackmind.memory import Memory

            with console.status("opening long-term memory ..."):
                memory = Memory(settings)
        except ImportError:
            console.print("long-term memory is not installed; chatting without it", style="yellow")
        except Exception as e:  # locked by another process, a server down: chat without it
            console.print(f"long-term memory is unavailable ({e}); chatting without it", style="yellow")
    return llm, memory


@app.command()
def chat(
    name: str = typer.Option("terminal", help="Which conversation: each name has its own stack."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", help="Longest reply, in tokens."),
    memory: bool | None = typer.Option(None, "--memory/--no-memory", help="Use long-term memory."),
) -> None:
    """Chat with stackmind in this terminal (the same conversation loop as the Telegram bot)."""
    settings = Settings().check_home().ensure_dirs()
    config = ChatSettings()
    if max_tokens is not None:
        config.max_reply_tokens = max_tokens
    if memory is not None:
        config.memory = memory
    llm, mem = _load(settings, config)
    ref = ChatRef(stack=f"chat-{name}", owner=f"local:{getpass.getuser()}", channel="a terminal")
    try:
        asyncio.run(_terminal(Conversations(settings, llm, memory=mem, config=config), ref))
    finally:
        if mem is not None:
            mem.close()


async def _terminal(conversations: Conversations, ref: ChatRef) -> None:
    from rich.console import Console

    out = Console(highlight=False, soft_wrap=True)
    interactive = sys.stdin.isatty()
    if interactive:
        console.print(TERMINAL_HELP)
    last_episode: str | None = None

    def read() -> str | None:
        try:
            if interactive:
                return out.input("[bold cyan]you>[/] ")
            line = sys.stdin.readline()
            return None if line == "" else line.rstrip("\n")
        except (EOFError, KeyboardInterrupt):
            return None

    async with conversations:
        while True:
            line = await asyncio.to_thread(read)
            if line is None:
                break
            text = line.strip()
            if not text:
                continue
            command, _, arg = text.partition(" ")
            try:
                if command in ("/quit", "/exit"):
                    break
                if command == "/help":
                    out.print(TERMINAL_HELP, markup=False)
                elif command == "/stack":
                    out.print(conversations.stack_text(ref), markup=False)
                elif command == "/policies":
                    out.print(await asyncio.to_thread(conversations.policies_text), markup=False)
                elif command == "/forget":
                    out.print(await conversations.forget(ref), markup=False)
                elif command in ("/good", "/bad"):
                    if last_episode is None:
                        out.print("There is no answer to rate yet.", markup=False)
                    else:
                        reward = 1.0 if command == "/good" else -1.0
                        await asyncio.to_thread(conversations.rate, last_episode, reward, chat=ref)
                        out.print(f"Noted: reward {reward:+.0f} on episode {last_episode}.", markup=False)
                elif command == "/think":
                    if not arg.strip():
                        out.print("Usage: /think GOAL", markup=False)
                        continue

                    async def progress(line: str) -> None:
                        console.print(f"  {line}", style="dim", markup=False)

                    episode = await conversations.think(ref, arg.strip(), progress)
                    last_episode = episode.id
                    answer = episode.answer or "I did not reach a conclusion within my step budget."
                    out.print(f"stackmind> Conclusion ({len(episode.steps)} steps): {answer}", markup=False)
                elif command.startswith("/"):
                    out.print(f"I do not know {command}.\n{TERMINAL_HELP}", markup=False)
                else:
                    last_episode = await _answer(conversations, ref, text, out)
            except ConversationClosed:
                break
            except Exception as e:  # one failed turn is reported; the chat goes on
                logging.getLogger("stackmind.chat").debug("turn failed", exc_info=e)
                console.print(f"[bold red]error:[/] {type(e).__name__}: {e}", highlight=False)


async def _answer(conversations: Conversations, ref: ChatRef, text: str, out: Any) -> str:
    """Stream the reply as it grows: print only what is new."""
    shown = ""
    out.print("stackmind> ", end="", markup=False)

    async def partial(so_far: str) -> None:
        nonlocal shown
        if so_far.startswith(shown):
            out.print(so_far[len(shown):], end="", markup=False)
            shown = so_far
        sys.stdout.flush()

    reply = await conversations.say(ref, text, partial)
    rest = reply.text[len(shown):] if reply.text.startswith(shown) else "\n" + reply.text
    out.print(rest, markup=False)
    return reply.episode_id


@app.command()
def telegram(
    ctx: typer.Context,
    allow: Annotated[list[int] | None, typer.Option(
        "--allow", help="A Telegram user id to allow (repeatable); adds to STACKMIND_TELEGRAM_ALLOWED_USERS.",
    )] = None,
    webhook_url: str | None = typer.Option(None, help="Receive updates by webhook at this public URL "
                                           "(the load balancer's) instead of long polling."),
    webhook_listen: str | None = typer.Option(None, metavar="HOST:PORT", help="Where this worker's webhook "
                                              "server listens (STACKMIND_TELEGRAM_WEBHOOK_LISTEN / _PORT)."),
) -> None:
    """Run the Telegram bot (token from TELEGRAM_BOT_TOKEN or .env) until Ctrl-C or SIGTERM."""
    from stackmind.interfaces.telegram import TelegramSettings, run

    settings = Settings().check_home().ensure_dirs()
    if settings.telegram_bot_token is None or not settings.telegram_bot_token.get_secret_value().strip():
        raise fail("no bot token: create a bot with @BotFather, then set TELEGRAM_BOT_TOKEN "
                   "in the environment or in .env")
    token = settings.telegram_bot_token.get_secret_value().strip()
    config = TelegramSettings()
    config.allowed_users = sorted({*config.allowed_users, *(allow or [])})
    if webhook_url:
        config.webhook_url = webhook_url
    if webhook_listen:
        host, _, port = webhook_listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise fail(f"--webhook-listen {webhook_listen!r}: expected HOST:PORT, for example 127.0.0.1:8443")
        config.webhook_listen, config.webhook_port = host.strip("[]"), int(port)
    if webhook_listen and not config.webhook_url:
        raise fail("--webhook-listen needs the public URL Telegram posts to: --webhook-url or "
                   "STACKMIND_TELEGRAM_WEBHOOK_URL")
    if not config.allowed_users:
        console.print("[yellow]The allowlist is empty: the bot will refuse everyone (and tell each person "
                      "their user id). Allow people with --allow ID or STACKMIND_TELEGRAM_ALLOWED_USERS.[/]")
    chat_config = ChatSettings()
    llm, memory = _load(settings, chat_config)
    setup_logging(logging.INFO, [token], debug=debugging(ctx))
    console.print(f"stackmind bot starting ({'webhook' if config.webhook_url else 'long polling'}); "
                  f"{len(config.allowed_users)} allowed users. Ctrl-C stops it gracefully.")
    try:
        run(token, Conversations(settings, llm, memory=memory, config=chat_config), config)
    finally:
        if memory is not None:
            memory.close()
