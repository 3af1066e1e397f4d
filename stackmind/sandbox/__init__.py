"""The sandbox VM: the only place where code the agent wrote is run.

One interface, two engines::

    sandbox = Sandbox(settings)
    result = sandbox.run(Python("print(17 * 23)"))            # CPython compiled to WASI
    result = sandbox.run(Wasm(b"\\0asm..."), Limits(fuel=10**6))  # raw module bytes or WAT text
    with sandbox.session() as s:                               # one interpreter across runs
        s.run("x = 2"); s.run("print(x + 1)")

Every run is bounded (`Limits`: deadline, fuel, memory, output, file calls, scratch quota), sees
only its scratch folder, and returns a `RunResult` whose `outcome` is one of ok, error, timeout,
out_of_fuel, memory, output_limit, invalid. Nothing a guest does makes `run` raise; a
`SandboxError` means the sandbox itself could not work (say, an unusable cache folder).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stackmind.sandbox.limits import Limits
from stackmind.sandbox.python_engine import (
    Progress,
    PythonEngine,
    PythonSession,
    SandboxError,
    WarmInfo,
    default_prelude,
)
from stackmind.sandbox.result import (
    OUTCOMES,
    BehaviourTrace,
    Outcome,
    RunResult,
    intrinsic_reward,
    shannon_entropy,
)
from stackmind.sandbox.wasm_engine import WasmEngine

if TYPE_CHECKING:
    from stackmind.settings import Settings

__all__ = [
    "OUTCOMES", "BehaviourTrace", "Limits", "Outcome", "Program", "Python", "PythonSession",
    "RunResult", "Sandbox", "SandboxError", "WarmInfo", "Wasm", "intrinsic_reward", "shannon_entropy",
]


@dataclass(frozen=True)
class Python:
    """Python source for the CPython-WASI engine."""

    code: str


@dataclass(frozen=True)
class Wasm:
    """A WebAssembly module: binary bytes, or WAT text (str, or bytes starting with '(')."""

    module: bytes | str


Program = Python | Wasm


class Sandbox:
    def __init__(self, settings: Settings | None = None, limits: Limits | None = None,
                 progress: Progress | None = None, cache_dir: Path | None = None,
                 prelude: Path | None | bool = True) -> None:
        """`prelude`: True (the checkout's sandbox/prelude, when there is one), False (none), or a
        folder of guest-side modules to grant read-only at /prelude, on the guest's sys.path."""
        if cache_dir is None:
            if settings is None:
                from stackmind.settings import Settings

                settings = Settings()
            cache_dir = settings.cache_dir / "sandbox"
        self.limits = limits or Limits()
        self.progress = progress
        folder = default_prelude() if prelude is True else (prelude or None)
        self.python = PythonEngine(cache_dir, folder)
        self.wasm = WasmEngine()

    def warm(self) -> WarmInfo:
        """Make the CPython-WASI module ready: compile it once (minutes) or load it (~0.5 s)."""
        return self.python.warm(self.progress)

    def run(self, program: Program, limits: Limits | None = None,
            files: Mapping[str, bytes | str] | None = None, stdin: bytes = b"") -> RunResult:
        """Run one program in a fresh VM. `files` (path -> content) start in the scratch folder
        (Python engine; a raw module sees no files)."""
        limits = limits or self.limits
        if isinstance(program, Python):
            return self.python.run(program.code, limits, files, stdin, self.progress)
        if isinstance(program, Wasm):
            return self.wasm.run(program.module, limits, stdin)
        raise TypeError(f"run takes a Python or a Wasm program, not {type(program).__name__}")

    def run_python(self, code: str, limits: Limits | None = None,
                   files: Mapping[str, bytes | str] | None = None, stdin: bytes = b"") -> RunResult:
        return self.run(Python(code), limits, files, stdin)

    def run_wasm(self, module: bytes | str, limits: Limits | None = None, stdin: bytes = b"") -> RunResult:
        return self.run(Wasm(module), limits, stdin=stdin)

    def session(self, limits: Limits | None = None,
                files: Mapping[str, bytes | str] | None = None) -> PythonSession:
        """A persistent Python interpreter (an episode's): faster, and its state carries over."""
        return self.python.session(limits or self.limits, files, self.progress)
