"""Degrade, don't fail: a memory folder that cannot open is left out with a warning, in `run`, `chat`
and the Telegram bot alike (at a9429b1 `stackmind run` crashed with chroma's InternalError).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Cases, env_for, stackmind
from fakes.openai_server import ScriptedOpenAI
from fakes.telegram_server import FakeTelegram

CORRUPTIONS = {
    "random-bytes": lambda: os.urandom(20_000),
    "text": lambda: b"not a database\n" * 1000,
    "empty-header": lambda: b"SQLite format 3\x00" + b"\x00" * 4000,
}


def _corrupt(home: Path, how: str) -> None:
    chroma = home / "memory" / "chroma"
    chroma.mkdir(parents=True)
    (chroma / "chroma.sqlite3").write_bytes(CORRUPTIONS[how]())


@pytest.mark.fault("corrupt memory store")
@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_run_goes_on_without_memory(how: str, home: Path, work: Path) -> None:
    _corrupt(home, how)
    with ScriptedOpenAI(["Final answer: 4"]) as server:
        env = env_for(home, STACKMIND_BACKEND="openai", STACKMIND_OPENAI_BASE_URL=server.url, STACKMIND_POLICIES="0")
        ran = stackmind(["run", "What is 2 + 2?"], env, work, timeout=120)
    assert ran.rc == 0 and "Traceback" not in ran.output, ran.output[-3000:]
    assert ran.stdout.strip().splitlines()[0] == "4"
    assert "long-term memory is off for this run" in ran.stderr and "move the folder aside" in ran.stderr
    assert len(list((home / "episodes").glob("*.trace.yaml"))) == 1


@pytest.mark.control("corrupt memory store")  # chat (and so the bot) already did at a9429b1
def test_chat_goes_on_without_memory(home: Path, work: Path) -> None:
    _corrupt(home, "random-bytes")
    with ScriptedOpenAI(["Final answer: Hello there."]) as server:
        env = env_for(home, STACKMIND_BACKEND="openai", STACKMIND_OPENAI_BASE_URL=server.url)
        ran = stackmind(["chat"], env, work, timeout=120, stdin="hello\n/quit\n")
    assert ran.rc == 0 and "Traceback" not in ran.output, ran.output[-3000:]
    assert "long-term memory is unavailable" in ran.stderr and "Hello there." in ran.stdout


@pytest.mark.control("corrupt memory store")
def test_the_bot_goes_on_without_memory(home: Path, work: Path, cases: Cases) -> None:
    _corrupt(home, "random-bytes")
    token = "123456:TEST-token-abcdef"
    with FakeTelegram(token=token) as fake, ScriptedOpenAI(["Final answer: Hello from the bot."]) as model:
        env = env_for(home, STACKMIND_BACKEND="openai", STACKMIND_OPENAI_BASE_URL=model.url,
                      STACKMIND_TELEGRAM_BASE_URL=fake.base_url, TELEGRAM_BOT_TOKEN=token)
        log = work / "bot.log"
        with log.open("w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "stackmind.interfaces.cli", "telegram", "--allow", "7"],
                                    env=env, cwd=work, stdout=err, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 90
                while "long polling" not in log.read_text() and time.monotonic() < deadline:
                    assert proc.poll() is None, log.read_text()[-3000:]
                    time.sleep(0.2)
                cases.tried("the bot starts")
                assert "long-term memory is unavailable" in log.read_text()
                cases.tried("the bot answers")
                fake.send_text(7, "hi")
                fake.wait_for(lambda: any("Hello from the bot" in m.text for m in fake.sent), timeout=60)
            finally:
                proc.terminate()
                rc = proc.wait(60)
    assert rc == 0 and "Traceback" not in log.read_text(), log.read_text()[-3000:]
