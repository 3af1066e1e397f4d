"""Embedded mode is owned by one process; server mode talks to a real `chroma run` on localhost."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stackmind.memory import Memory, MemoryLockedError, MemoryServerError
from stackmind.settings import Settings

SECOND_PROCESS = """
import sys
from stackmind.memory import Memory, MemoryLockedError
from stackmind.settings import Settings
try:
    m = Memory(Settings())
except MemoryLockedError as e:
    print("LOCKED:", e)
    sys.exit(3)
print("RECALLED:", m.recall("who holds the lock", owner="alice", k=1)[0].text)
m.close()
"""


def _second_process(timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", SECOND_PROCESS], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_a_second_process_gets_a_clear_error_then_its_turn(settings: Settings) -> None:
    first = Memory(settings)
    first.store("The first process held the lock", owner="alice")
    try:
        t0 = time.monotonic()
        blocked = _second_process()
        assert blocked.returncode == 3, blocked.stderr[-2000:]
        assert f"in use by process {os.getpid()}" in blocked.stdout
        assert "STACKMIND_CHROMA_URL" in blocked.stdout
        assert time.monotonic() - t0 < 60  # an error, not chroma's second-opener hang
    finally:
        first.close()
    after = _second_process()
    assert after.returncode == 0, after.stderr[-2000:]
    assert "RECALLED: The first process held the lock" in after.stdout


def test_a_second_memory_in_one_process_is_refused(memory: Memory, settings: Settings) -> None:
    with pytest.raises(MemoryLockedError, match="this process"):
        Memory(settings)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("chroma")
    if exe is None:
        pytest.fail("the `chroma` command (from the chromadb package) is not on PATH")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "chroma.log", "w+")
    proc = subprocess.Popen([exe, "run", "--path", str(tmp_path / "server-data"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"chroma run exited with {proc.returncode}: {log.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("chroma run did not answer its heartbeat within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.server
def test_server_mode_shares_one_store_and_keeps_owners_apart(
    chroma_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKMIND_CHROMA_URL", chroma_server)
    settings = Settings()
    a, b = Memory(settings), Memory(settings)  # no lock in server mode: both open at once
    try:
        assert a.mode == "server" and a.location == chroma_server
        a.store("Alice's flight leaves at 7:40 from gate B12", owner="alice", value=0.9)
        b.store("Bob's flight leaves at 7:45 from gate B14", owner="bob")
        got = b.recall("when does my flight leave", owner="alice", k=5)
        assert [r.text for r in got] == ["Alice's flight leaves at 7:40 from gate B12"]
        assert [r.owner for r in a.recall("Bob's flight gate B14", owner="bob", k=5)] == ["bob"]
        assert a.stats().owners == {"alice": 1, "bob": 1}
        assert a.compact() == 2  # the rebuild-and-rename swap works over HTTP too
        assert b.recall("flight", owner="bob", k=5)[0].text.startswith("Bob's flight")
        assert len(a.forget(now=time.time() + 400 * 86400).removed) == 2
        assert b.count() == 0
    finally:
        a.close()
        b.close()
    # The trace log stays in the local data dir.
    assert (settings.memory_dir / "trace.jsonl").is_file()


def test_an_unreachable_server_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKMIND_CHROMA_URL", f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(MemoryServerError, match="cannot reach the chroma server"):
        Memory(Settings())
    monkeypatch.setenv("STACKMIND_CHROMA_URL", "ftp://example")
    with pytest.raises(MemoryServerError, match="not an http"):
        Memory(Settings())
