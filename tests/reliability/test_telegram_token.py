"""The Telegram token never appears in what `stackmind telegram` prints, whatever goes wrong.

At a9429b1 a rejected token was printed in full (``InvalidToken: The token `123456:...` was rejected``)
and an unreachable server printed three chained tracebacks. The bot runs as a real process against
the fake Bot API server (tests/fakes/telegram_server.py); the model is a scripted server.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Cases, env_for, one_error_line, stackmind
from fakes.openai_server import ScriptedOpenAI
from fakes.telegram_server import FakeTelegram

TOKEN = "987654321:AAE-wrong-Secret_token-0123456789abcdef"


def _env(home: Path, base_url: str, token: str = TOKEN, **extra: str) -> dict[str, str]:
    values = dict(STACKMIND_BACKEND="openai", STACKMIND_OPENAI_BASE_URL="http://127.0.0.1:9/v1",
                  STACKMIND_CHAT_MEMORY="0", STACKMIND_TELEGRAM_BASE_URL=base_url,
                  STACKMIND_TELEGRAM_BASE_FILE_URL=base_url.replace("/bot", "/file/bot"), TELEGRAM_BOT_TOKEN=token)
    return env_for(home, **{**values, **extra})


def _no_token(text: str, token: str = TOKEN) -> None:
    secret = token.split(":", 1)[1]
    assert token not in text and secret not in text and secret[:12] not in text, text[-3000:]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.fault("Telegram token exposure")
@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_a_rejected_token_is_one_line_without_the_token(debug: bool, home: Path, work: Path) -> None:
    with FakeTelegram() as fake:  # it knows another token: ours is refused with 401
        ran = stackmind([*(["--debug"] if debug else []), "telegram", "--allow", "1"], _env(home, fake.base_url),
                        work, timeout=90)
    _no_token(ran.output)
    if debug:
        assert ran.rc == 1 and "Traceback" in ran.stderr and "InvalidToken" in ran.stderr  # redacted, not hidden
    else:
        line = one_error_line(ran)
        assert "refused the bot token" in line and "TELEGRAM_BOT_TOKEN" in line, line


@pytest.mark.fault("Telegram token exposure")
@pytest.mark.parametrize("where", ["closed-port", "never-answers"])
def test_an_unreachable_bot_api_is_one_line_without_the_token(where: str, home: Path, work: Path,
                                                              cases: Cases) -> None:
    with ScriptedOpenAI(mode="hang") as silent:
        url = f"http://127.0.0.1:{_closed_port()}/bot" if where == "closed-port" else silent.url[:-3] + "/bot"
        for debug in (False, True):
            cases.tried(f"{where}{' --debug' if debug else ''}")
            t0 = time.monotonic()
            ran = stackmind([*(["--debug"] if debug else []), "telegram", "--allow", "1"], _env(home, url), work,
                            timeout=120)
            assert time.monotonic() - t0 < 60
            _no_token(ran.output)
            if not debug:
                line = one_error_line(ran)
                assert "cannot reach the Telegram Bot API" in line and url in line, line
                assert ran.stderr.count("Traceback") == 0


@pytest.mark.fault("Telegram token exposure")
def test_a_running_bot_logs_nothing_of_its_token(home: Path, work: Path) -> None:
    """Long polling with --debug (every traceback kept), stopped with SIGTERM: the token never shows,
    though every request URL carries it."""
    with FakeTelegram(token=TOKEN) as fake, ScriptedOpenAI(["Final answer: Hello!"]) as model:
        env = _env(home, fake.base_url, STACKMIND_OPENAI_BASE_URL=model.url)
        log = work / "bot.log"
        with log.open("w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "stackmind.interfaces.cli", "--debug", "telegram",
                                     "--allow", "1"], env=env, cwd=work, stdout=err, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 90
                while "long polling" not in log.read_text() and time.monotonic() < deadline:
                    assert proc.poll() is None, log.read_text()[-3000:]
                    time.sleep(0.2)
                fake.send_text(1, "hi")
                fake.wait_for(lambda: any("Hello" in m.text for m in fake.sent), timeout=30)
            finally:
                proc.terminate()
                proc.wait(60)
    text = log.read_text()
    assert "long polling" in text
    _no_token(text)


@pytest.mark.fault("Telegram token exposure")
def test_a_secret_in_a_settings_error_is_redacted(home: Path, work: Path) -> None:
    """The one error printer redacts every secret it knows, even when the message quotes it."""
    ran = stackmind(["status"], env_for(home, TELEGRAM_BOT_TOKEN=TOKEN, STACKMIND_MAX_STEPS=TOKEN), work)
    line = one_error_line(ran)
    assert "STACKMIND_MAX_STEPS" in line and "<secret>" in line
    _no_token(ran.output)
