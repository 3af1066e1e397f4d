"""Helpers of the sandbox tests: the corpus reader, scratch-file generators, host-state probes."""

from __future__ import annotations

import io
import os
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "sandbox" / "corpus"
CANARY_VAR = "STACKMIND_HOSTILE_CANARY"
CANARY_VALUE = "stackmind-canary-7d1f"
_HEADER = re.compile(r"^(?:#|;;)\s*(expect|absent|stdout|files):\s*(.*?)\s*$")


@dataclass
class CorpusProgram:
    path: Path
    expect: set[str]
    absent: list[str] = field(default_factory=list)
    stdout: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # scratch name -> generator name

    @property
    def is_wasm(self) -> bool:
        return self.path.suffix == ".wat"

    @property
    def source(self) -> str:
        return self.path.read_text(encoding="utf-8")


def load_corpus(kind: str) -> list[CorpusProgram]:
    programs = []
    for path in sorted((CORPUS / kind).iterdir()):
        if path.suffix not in (".py", ".wat"):
            continue
        prog = CorpusProgram(path, set())
        for line in path.read_text(encoding="utf-8").splitlines():
            m = _HEADER.match(line)
            if not m:
                if line.startswith(("#", ";;")):
                    continue
                break
            key, value = m.groups()
            if key == "expect":
                prog.expect = set(value.split("|"))
            elif key == "absent":
                prog.absent.append(value)
            elif key == "stdout":
                prog.stdout = value
            else:
                name, _, gen = value.partition("=")
                prog.files[name] = gen
        assert prog.expect, f"{path}: no '# expect:' header"
        programs.append(prog)
    return programs


def _zlib_bomb() -> bytes:
    """512 MiB of zeros deflated to about half a megabyte."""
    comp = zlib.compressobj(9)
    zeros = bytes(1 << 20)
    return b"".join(comp.compress(zeros) for _ in range(512)) + comp.flush()


def _zip_bomb() -> bytes:
    """A zip of eight 32 MiB members of zeros: 256 MiB unpacked from a few hundred KB."""
    buf = io.BytesIO()
    member = bytes(32 << 20)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for i in range(8):
            z.writestr(f"part{i}.bin", member)
    return buf.getvalue()


GENERATORS = {"zlib-bomb": _zlib_bomb, "zip-bomb": _zip_bomb}


# --- the host's state, to check a guest left it alone ------------------------------------------

def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child_pids() -> set[int]:
    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids |= {int(p) for p in (task / "children").read_text().split()}
        except OSError:
            pass
    return pids


def tree_state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under folder with its size and mtime."""
    out = {}
    for p in folder.rglob("*"):
        try:
            st = p.lstat()
        except OSError:
            continue
        out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out
