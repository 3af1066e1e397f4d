"""Reward-prediction error: what the search predicted for a step against what hindsight says it achieved.

Every scored step of a finished episode gets an `RPERecord` (JSON lines in
``settings.home / "value" / "rpe.jsonl"``). `ReplayBuffer` samples labelled experience with
priority ``|RPE| + eps`` (without replacement, Efraimidis-Spirakis keys), so the surprises come
first when the model is updated.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stackmind.settings import Settings
from stackmind.value.labels import Label


@dataclass
class RPERecord:
    episode: str | None
    node: int | None
    goal: str
    thought: str
    predicted: float
    achieved: float
    kind: str  # the label kind that gave ``achieved``
    scorer: str = ""  # who predicted: the value model's version, or "llm-judge"
    created: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    @property
    def rpe(self) -> float:
        return self.achieved - self.predicted

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rpe": round(self.rpe, 6)}


def rpe_path(settings: Settings) -> Path:
    return settings.home / "value" / "rpe.jsonl"


def rpe_records(labels: Iterable[Label], scorer: str = "") -> list[RPERecord]:
    """One record per label whose state the search scored (final states are the verifier's: none)."""
    return [RPERecord(lab.episode, lab.node, lab.goal, lab.thought, float(lab.predicted), float(lab.target),
                      lab.kind, scorer)
            for lab in labels if lab.predicted is not None and lab.kind in ("return_to_go", "monte_carlo")]


def record_rpe(settings: Settings, records: Sequence[RPERecord]) -> None:
    if not records:
        return
    path = rpe_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records))


def load_rpe(settings: Settings, last: int | None = None) -> list[RPERecord]:
    path = rpe_path(settings)
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[-last:] if last else rows
    return [RPERecord(**{k: v for k, v in r.items() if k != "rpe"}) for r in rows]


class ReplayBuffer:
    """Labels with priorities; `sample` draws high-|RPE| first (priority-proportional, no repeats)."""

    def __init__(self, labels: Sequence[Label] = (), *, eps: float = 0.02, alpha: float = 1.0) -> None:
        self.eps = eps
        self.alpha = alpha
        self.items: list[Label] = []
        self.priorities: list[float] = []
        self.extend(labels)

    def __len__(self) -> int:
        return len(self.items)

    def extend(self, labels: Iterable[Label], errors: Iterable[float] | None = None) -> None:
        """Add labels; their priority is |error| when given, else |label.rpe|, else the buffer's mean."""
        labels = list(labels)
        errs = list(errors) if errors is not None else [lab.rpe for lab in labels]
        default = (sum(self.priorities) / len(self.priorities)) if self.priorities else 1.0
        for lab, e in zip(labels, errs, strict=True):
            self.items.append(lab)
            self.priorities.append(abs(e) + self.eps if e is not None else default)

    def reprioritize(self, errors: Sequence[float]) -> None:
        """New priorities from current errors (e.g. target - the current model's prediction)."""
        if len(errors) != len(self.items):
            raise ValueError(f"{len(errors)} errors for {len(self.items)} items")
        self.priorities = [abs(e) + self.eps for e in errors]

    def sample(self, k: int, rng: random.Random | None = None) -> list[Label]:
        """``k`` distinct labels, each drawn with probability proportional to priority**alpha."""
        rng = rng or random.Random(0)
        keys = [rng.random() ** (1.0 / (p ** self.alpha)) for p in self.priorities]
        order = sorted(range(len(self.items)), key=lambda i: keys[i], reverse=True)
        return [self.items[i] for i in order[:k]]
