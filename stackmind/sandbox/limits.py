"""What one run may use: time, instructions, memory, output, files.

The defaults suit an agent's `@python(...)` call: 10 s of wall time, 256 MiB of guest memory, 1 MiB
of output per stream, at most 10,000 file operations and 64 MiB in the scratch folder. Every limit
is enforced by the VM (wasmtime epochs, fuel and memory limits; the runner's output and file
counters), never by trusting the guest.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MiB = 1 << 20


class Limits(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Wall-clock seconds; past them the run ends with outcome "timeout".
    deadline_s: float = Field(10.0, gt=0, le=3600)
    # WebAssembly instructions (wasmtime fuel); past them the run ends with "out_of_fuel".
    # The default is generous (CPython-WASI spends about 1e9 a second here), so the deadline
    # usually stops a runaway first; lower it for a deterministic, machine-independent bound.
    fuel: int = Field(100_000_000_000, ge=1, le=2**62)
    # Guest linear memory in bytes; an allocation past it fails (MemoryError in Python).
    memory_bytes: int = Field(256 * MiB, ge=MiB, le=4096 * MiB)
    # Bytes kept per stream (stdout, stderr); the rest are dropped: outcome "output_limit".
    output_bytes: int = Field(1 * MiB, ge=0, le=256 * MiB)
    # File operations on the scratch folder (open, read, write, list, ...), per run.
    file_calls: int = Field(10_000, ge=0, le=10_000_000)
    # Bytes the scratch folder may hold in all, and how many files and folders.
    scratch_bytes: int = Field(64 * MiB, ge=0, le=1024 * MiB)
    scratch_entries: int = Field(4096, ge=1, le=1_000_000)
    # Files open at once inside the guest.
    open_files: int = Field(256, ge=8, le=4096)

    def describe(self) -> str:
        return (
            f"{self.deadline_s:g} s, {self.fuel:.3g} fuel, {self.memory_bytes // MiB} MiB memory, "
            f"{self.output_bytes} B output, {self.file_calls} file calls, "
            f"{self.scratch_bytes // MiB} MiB scratch"
        )
