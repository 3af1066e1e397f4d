"""Where episodes live: one interface (`EpisodeStore`), a folder of trace files or a database.

The agent saves an episode again after every step, so `save` is one atomic write: a temporary file
renamed over the trace (`FileEpisodeStore`), or one upsert (`PostgresEpisodeStore`). Whatever the
store, an episode is its YAML trace text (docs/trace-format.md): ``stackmind episodes export DIR``
writes a database's episodes as ``<id>.trace.yaml`` files for a person to read and correct, and
``import DIR`` puts corrected ones back.

``since`` (in `episodes` and `ids`) compares with the time an episode was last saved or rated, so a
consolidation run that asks for what changed since the last one also gets old episodes rated since.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

import filelock

from stackmind.errors import StackmindError
from stackmind.trace import Episode, TraceError

Since = float | dt.datetime | None
SUFFIX = ".trace.yaml"


class EpisodeNotFound(StackmindError, FileNotFoundError):
    """No episode with that id in the store (a FileNotFoundError, as a missing trace file was)."""


class EpisodeStore(Protocol):
    """Storage for episodes. Every method is durable when it returns."""

    location: str  # where, for people: a folder, or the database (password masked)

    def save(self, episode: Episode) -> str: ...  # returns where(episode.id)
    def where(self, episode_id: str) -> str: ...  # a file path, or the database's label#episodes/<id>
    def load(self, episode_id: str) -> Episode: ...
    def episodes(self, since: Since = None, problems: list[str] | None = None) -> Iterator[Episode]: ...
    def ids(self, since: Since = None) -> list[str]: ...
    def rate(self, episode_id: str, reward: float, *, by: str) -> Episode: ...
    def close(self) -> None: ...
    def __enter__(self) -> EpisodeStore: ...
    def __exit__(self, *exc: object) -> None: ...


def check_episode_id(episode_id: str) -> str:
    if not isinstance(episode_id, str) or not episode_id or len(episode_id) > 64 \
            or any(c in episode_id for c in "/\\.\x00") or episode_id != episode_id.strip():
        raise TraceError(f"not an episode id: {episode_id!r} (ids look like 20260101-120000-abc123)")
    return episode_id


def since_seconds(since: Since) -> float | None:
    if since is None:
        return None
    if isinstance(since, dt.datetime):
        return (since if since.tzinfo else since.replace(tzinfo=dt.UTC)).timestamp()
    return float(since)


def apply_rating(episode: Episode, reward: float, by: str, at: float) -> Episode:
    """A user's rating on an episode: its reward, and the feedback log in ``meta.feedback``."""
    episode.reward = float(reward)
    feedback = list(episode.meta.get("feedback", []))
    feedback.append({"reward": float(reward), "by": by, "at": round(at, 3)})
    episode.meta["feedback"] = feedback
    return episode


class FileEpisodeStore:
    """Episodes as ``<id>.trace.yaml`` files in one folder (``settings.episodes_dir``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.location = str(self.directory)

    def path(self, episode_id: str) -> Path:
        return self.directory / f"{check_episode_id(episode_id)}{SUFFIX}"

    def where(self, episode_id: str) -> str:
        return str(self.path(episode_id))

    def save(self, episode: Episode) -> str:
        path = self.path(episode.id)
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, episode.to_text())
        return str(path)

    def load(self, episode_id: str) -> Episode:
        path = self.path(episode_id)
        if not path.is_file():
            raise EpisodeNotFound(f"no episode {episode_id!r} in {self.directory}")
        return _read_fast(path)

    def _paths(self, since: Since) -> list[Path]:
        if not self.directory.is_dir():
            return []
        cutoff = since_seconds(since)
        paths = sorted(self.directory.glob(f"*{SUFFIX}"))
        if cutoff is None:
            return paths
        out = []
        for p in paths:
            try:
                if p.stat().st_mtime >= cutoff:
                    out.append(p)
            except FileNotFoundError:  # removed while we listed
                continue
        return out

    def ids(self, since: Since = None) -> list[str]:
        return [p.name[: -len(SUFFIX)] for p in self._paths(since)]

    def episodes(self, since: Since = None, problems: list[str] | None = None) -> Iterator[Episode]:
        for path in self._paths(since):
            try:
                yield _read_fast(path)
            except FileNotFoundError:  # removed while we listed
                continue
            except TraceError as e:
                if problems is None:
                    raise
                problems.append(str(e))

    def rate(self, episode_id: str, reward: float, *, by: str) -> Episode:
        with self._episode_lock(episode_id):
            episode = apply_rating(self.load(episode_id), reward, by, time.time())
            self.save(episode)
        return episode

    def _episode_lock(self, episode_id: str) -> AbstractContextManager[object]:
        folder = self.directory / ".locks"
        folder.mkdir(parents=True, exist_ok=True)
        return filelock.FileLock(folder / f"{check_episode_id(episode_id)}.lock", thread_local=False)

    def close(self) -> None:
        pass

    def __enter__(self) -> FileEpisodeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_fast(path: Path) -> Episode:
    """A trace the store wrote, parsed with libyaml (as the database store does): the same checks and
    file:line errors as `Episode.load`, about 20x quicker on big traces."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise TraceError(f"not UTF-8 text (byte {e.start}): save the file as UTF-8", path) from e
    return Episode.from_text(text, path, fast=True)


def _write_atomic(path: Path, text: str) -> None:
    """A temporary file in the same folder, flushed to disk, renamed over ``path``: a reader sees
    the old trace or the new one, never half of one, and two writers never share a temporary."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_episodes(store: EpisodeStore, directory: Path, since: Since = None) -> list[Path]:
    """Write the store's episodes to ``directory`` as ``<id>.trace.yaml`` (existing files replaced)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for episode in store.episodes(since):
        path = directory / f"{check_episode_id(episode.id)}{SUFFIX}"
        _write_atomic(path, episode.to_text())
        written.append(path)
    return written


def read_trace_files(paths: Iterable[Path], problems: list[str]) -> Iterator[Episode]:
    """Episodes from trace files; one that does not parse is reported (file:line) in ``problems``."""
    for path in paths:
        try:
            yield Episode.load(path)
        except TraceError as e:
            problems.append(str(e))


def import_episodes(store: EpisodeStore, directory: Path) -> tuple[list[str], list[str], list[str]]:
    """Save every ``*.trace.yaml`` in ``directory`` into the store, replacing an episode of the same id.

    Returns (new ids, replaced ids, problems); a file that does not parse is reported, not saved."""
    known = set(store.ids())
    new, replaced, problems = [], [], []
    for episode in read_trace_files(sorted(Path(directory).glob(f"*{SUFFIX}")), problems):
        try:
            check_episode_id(episode.id)
        except TraceError as e:
            problems.append(f"{directory}/{episode.id}: {e}")
            continue
        store.save(episode)
        (replaced if episode.id in known else new).append(episode.id)
    return new, replaced, problems
