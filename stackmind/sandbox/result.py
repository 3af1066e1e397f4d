"""What a run returns: `RunResult`, its `Outcome`, and the behaviour trace of byte-level runs."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["ok", "error", "timeout", "out_of_fuel", "memory", "output_limit", "invalid"]
OUTCOMES: tuple[Outcome, ...] = (
    "ok", "error", "timeout", "out_of_fuel", "memory", "output_limit", "invalid",
)


def shannon_entropy(counts: dict[str, int] | Counter[str]) -> float:
    """Entropy in bits of the distribution the counts define; 0.0 for none or one kind."""
    total = sum(c for c in counts.values() if c > 0)
    if total == 0:
        return 0.0
    h = -sum((c / total) * math.log2(c / total) for c in counts.values() if c > 0)
    return h + 0.0  # no -0.0


@dataclass
class BehaviourTrace:
    """What a module did, as counts: ``wasi:<call>`` for each WASI call it made and
    ``export:<name>:<ok|trap>`` for each export the runner called. Its entropy (bits) rewards
    programs whose behaviour is varied (Bytemeditation's intrinsic reward)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def entropy(self) -> float:
        return shannon_entropy(self.counts)

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(sorted(self.counts.items())), "entropy": round(self.entropy, 6)}


def intrinsic_reward(result: RunResult) -> float:
    """Bytemeditation's reward for a byte string run as a module: the entropy (bits) of its
    behaviour trace; 0.0 for bytes that are not a valid module or a run with no trace."""
    if result.outcome == "invalid" or result.trace is None:
        return 0.0
    return result.trace.entropy


@dataclass
class RunResult:
    outcome: Outcome
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    # What stopped the guest, in words ("deadline", "out of fuel", a trap, a validator's message).
    detail: str = ""
    fuel_used: int | None = None
    wall_s: float = 0.0
    engine: str = "python"
    truncated: tuple[str, ...] = ()
    # The scratch folder after the run: guest path -> bytes.
    files: dict[str, bytes] = field(default_factory=dict)
    file_calls: int = 0
    trace: BehaviourTrace | None = None
    # A session that had to start afresh before this run (its state was lost) says why.
    session_restarted: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def summary(self) -> str:
        """One line: outcome, exit status, time, and the reason when it did not end by itself."""
        parts = [self.outcome]
        if self.exit_code is not None:
            parts.append(f"exit {self.exit_code}")
        parts.append(f"{self.wall_s:.3f} s")
        if self.fuel_used is not None:
            parts.append(f"{self.fuel_used:,} fuel")
        if self.detail:
            parts.append(self.detail)
        return ", ".join(parts)

    def observation(self, max_chars: int = 4000) -> str:
        """The text an agent sees: output, errors and how the run ended, cut to max_chars."""
        chunks: list[str] = []
        if self.stdout:
            chunks.append(self.stdout.rstrip("\n"))
        if self.stderr:
            chunks.append("[stderr]\n" + self.stderr.rstrip("\n"))
        if self.outcome != "ok" or not chunks:
            chunks.append(f"[{self.summary()}]")
        if self.session_restarted:
            chunks.append(f"[session restarted: {self.session_restarted}; earlier variables are gone]")
        text = "\n".join(chunks)
        if len(text) > max_chars:
            half = max_chars // 2
            text = text[:half] + f"\n... [{len(text) - max_chars} characters cut] ...\n" + text[-half:]
        return text

    def to_dict(self, with_files: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "detail": self.detail,
            "fuel_used": self.fuel_used,
            "wall_s": round(self.wall_s, 6),
            "engine": self.engine,
            "truncated": list(self.truncated),
            "file_calls": self.file_calls,
            "files": sorted(self.files) if not with_files else {
                k: v.decode("utf-8", "replace") for k, v in sorted(self.files.items())
            },
        }
        if self.trace is not None:
            d["trace"] = self.trace.to_dict()
        if self.session_restarted:
            d["session_restarted"] = self.session_restarted
        return d
