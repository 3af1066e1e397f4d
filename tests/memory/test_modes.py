"""Embedded mode is owned by one process; server mode talks to a real `chroma run` on localhost
(the session's, tests/conftest.py), shared by processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes.servers import ChromaServer, free_port

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


@pytest.mark.single_mode
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


@pytest.mark.single_mode
def test_a_second_memory_in_one_process_is_refused(memory: Memory, settings: Settings) -> None:
    with pytest.raises(MemoryLockedError, match="this process"):
        Memory(settings)


@pytest.mark.server
@pytest.mark.single_mode
def test_server_mode_shares_one_store_and_keeps_owners_apart(
    chroma_server: ChromaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKMIND_CHROMA_URL", chroma_server.url)
    monkeypatch.setenv("STACKMIND_CHROMA_DATABASE", "test-shares-one-store")
    settings = Settings()
    a, b = Memory(settings), Memory(settings)  # no lock in server mode: both open at once
    try:
        assert a.mode == "server" and a.location == f"{chroma_server.url} (test-shares-one-store)"
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


CHILD_STORES = """
import sys
from stackmind.memory import Memory
from stackmind.settings import Settings
with Memory(Settings()) as m:
    m.store_batch([(f"user-{i % 3}", f"child {sys.argv[1]} note {i} for user-{i % 3}") for i in range(30)])
print("stored")
"""


@pytest.mark.server
@pytest.mark.single_mode
def test_processes_share_the_server_and_owners_stay_apart(chroma_server: ChromaServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKMIND_CHROMA_URL", chroma_server.url)
    monkeypatch.setenv("STACKMIND_CHROMA_DATABASE", "test-processes-share")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD_STORES, str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    with Memory(Settings()) as m:
        assert m.count() == 60 and m.stats().owners == {"user-0": 20, "user-1": 20, "user-2": 20}
        for owner in ("user-0", "user-1", "user-2"):
            got = m.recall(f"note for {owner}", owner=owner, k=20, touch=False)
            assert len(got) == 20 and all(r.text.endswith(f"for {owner}") for r in got)


@pytest.mark.single_mode
def test_an_unreachable_server_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKMIND_CHROMA_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(MemoryServerError, match="cannot reach the chroma server"):
        Memory(Settings())
    monkeypatch.setenv("STACKMIND_CHROMA_URL", "ftp://example")
    with pytest.raises(MemoryServerError, match="not an http"):
        Memory(Settings())


def test_losing_the_race_to_create_the_database_is_fine() -> None:
    """Two processes starting together on a new server database both find it missing; the one whose
    create fails because the other made it meanwhile goes on (seen in CI as one child failing)."""
    from chromadb.errors import NotFoundError

    from stackmind.memory.store import _ensure_database

    class RacedAdmin:
        def __init__(self) -> None:
            self.exists = False
            self.gets = 0

        def get_database(self, name: str) -> None:
            self.gets += 1
            if not self.exists:
                self.exists = True  # the other process creates it just after this look
                raise NotFoundError(name)

        def create_database(self, name: str) -> None:
            raise ValueError(f"database {name} already exists")

    admin = RacedAdmin()
    _ensure_database(admin, "db")
    assert admin.gets == 2

    class Broken(RacedAdmin):
        def get_database(self, name: str) -> None:
            raise NotFoundError(name)

    with pytest.raises(NotFoundError):  # created by no one: the error is not swallowed
        _ensure_database(Broken(), "db")
