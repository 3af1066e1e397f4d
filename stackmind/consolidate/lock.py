"""One consolidation at a time: an advisory file lock that the kernel releases if the process dies.

A second run does not wait: it exits with a message that names the running one (pid, start time).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stackmind.errors import StackmindError


class ConsolidationLocked(StackmindError, RuntimeError):
    """Another consolidation (or adapter promotion) holds the lock."""


@contextmanager
def exclusive(path: Path, what: str = "consolidation") -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(path)
            raise ConsolidationLocked(
                f"another {holder.get('what', 'consolidation')} is running (pid {holder.get('pid', '?')}, "
                f"started {holder.get('started', '?')}); wait for it to finish, or check `ps -p "
                f"{holder.get('pid', '?')}` (the lock {path} is released when that process exits)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "what": what,
                                 "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}).encode())
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_holder(path: Path) -> dict[str, str]:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
