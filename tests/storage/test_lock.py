"""`store.lock(name)`: one holder at a time across threads and processes (a chat's turns in order),
a timeout, independent names, and a lock that dies with its holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fakes.servers import Backend

from stackmind.stack import LockTimeout, Stack
from stackmind.storage import open_store

ROOT = Path(__file__).resolve().parents[2]

TURNS = """
import os, sys, time
from stackmind.settings import Settings
from stackmind.stack import Stack
from stackmind.storage import open_store
store = open_store(Settings())
log = Stack(store, "log")
for turn in range(int(sys.argv[2])):
    with store.lock("chat:42"):
        log.push("observation", f"enter {sys.argv[1]} {turn}")
        time.sleep(0.01)
        log.push("observation", f"leave {sys.argv[1]} {turn}")
store.close()
"""

HOLDER = """
import sys, time
from stackmind.settings import Settings
from stackmind.storage import open_store
store = open_store(Settings())
with store.lock("chat:7"):
    print("held", flush=True)
    time.sleep(600)
"""


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def test_workers_take_turns_on_one_chat(backend: Backend) -> None:
    settings = backend.settings()
    open_store(settings).close()  # migrate first, so the workers race only for the lock
    procs = [subprocess.Popen([sys.executable, "-c", TURNS, f"w{i}", "6"], env=child_env(), stderr=subprocess.PIPE,
                              text=True) for i in range(3)]
    errs = [p.communicate(timeout=180)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-1500:] for e in errs]
    store = open_store(settings)
    try:
        texts = [f.text for f in store.frames("log")]
    finally:
        store.close()
    assert len(texts) == 36
    for enter, leave in zip(texts[::2], texts[1::2], strict=True):  # no turn interleaves another
        assert enter.startswith("enter") and leave == enter.replace("enter", "leave")


def test_timeout_and_independent_names(backend: Backend) -> None:
    store = open_store(backend.settings())
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.lock("run:nightly"):
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(30)
        t0 = time.monotonic()
        with pytest.raises(LockTimeout, match="run:nightly"):
            with store.lock("run:nightly", timeout=0.3):
                pass
        assert 0.25 <= time.monotonic() - t0 < 10
        with store.lock("run:other", timeout=5):  # another name is free
            Stack(store, "x").push("observation", "inside another lock")
    finally:
        release.set()
        t.join()
    with store.lock("run:nightly", timeout=5):  # released when the holder left its block
        pass
    store.close()


def test_a_killed_holder_releases_its_lock(backend: Backend) -> None:
    settings = backend.settings()
    open_store(settings).close()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], env=child_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        store = open_store(settings)
        with pytest.raises(LockTimeout):
            with store.lock("chat:7", timeout=0.3):
                pass
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        with store.lock("chat:7", timeout=30):  # the OS (flock) or PostgreSQL (session gone) dropped it
            pass
        store.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
