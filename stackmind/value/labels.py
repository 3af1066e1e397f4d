"""Labelled experience: the record the hindsight labeller writes and consolidation reads.

One `Label` says: in this goal, after these thoughts (the stack), this candidate thought led to this
return (``target``, in [0, 1]). ``kind`` says how hindsight knew it (see docs/value.md):

- ``return_to_go``: a node on the chosen path of an episode that ended with a reward;
- ``monte_carlo``: an explored node off that path, valued by the fraction of its finished
  descendants that reached reward (``meta.finals`` of them);
- ``relabelled``: a failed episode's path, relabelled with the goal it did reach (target 1);
- ``conclusion``: the successful path compressed into a short text (``thought``), for fine-tuning;
- ``verifier``: a state labelled exactly by a task's verifier (e.g. the Game of 24 solver).

Records are JSON lines under ``settings.home / "labels"``, one file per UTC day, appended; nothing
rewrites them. With ``STACKMIND_DATABASE_URL`` set they go to the database's ``labels`` table instead,
so that every host sees them. `load_labels` reads them back, oldest first.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from stackmind.errors import StackmindError
from stackmind.settings import Settings
from stackmind.storage import PostgresEpisodeStore

LABEL_KINDS = ("return_to_go", "monte_carlo", "relabelled", "conclusion", "verifier")


class LabelError(StackmindError, ValueError):
    """A label file line that cannot be read, with file:line and what to do."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class Label:
    goal: str
    stack: list[str]  # the thoughts above the goal before ``thought``
    thought: str  # the candidate thought valued (for a conclusion: the conclusion's text)
    target: float  # the return hindsight assigns, in [0, 1]
    kind: str  # one of LABEL_KINDS
    source: str  # what gave the reward: verifier, tests, user, reassessment, game24-solver, ...
    episode: str | None = None  # the episode id it came from
    node: int | None = None  # the search-tree node, when there was a tree
    predicted: float | None = None  # the value the search predicted for it, when it was scored
    weight: float = 1.0
    meta: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=_now)
    id: str = field(default_factory=lambda: secrets.token_hex(6))

    @property
    def rpe(self) -> float | None:
        """Reward-prediction error: achieved minus predicted (None when it was never scored)."""
        return None if self.predicted is None else self.target - self.predicted

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Label:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def labels_dir(settings: Settings) -> Path:
    return settings.home / "labels"


def save_labels(settings: Settings, labels: Iterable[Label]) -> Path | None:
    """Append labels to today's JSONL file; returns the file (None when there was nothing to write,
    or when they went to the database)."""
    labels = list(labels)
    if settings.database_url is not None:
        if labels:
            with PostgresEpisodeStore(settings.database_url.get_secret_value(), label=settings.database_label,
                                      pool_size=1) as store:
                store.add_labels([lab.to_dict() for lab in labels])
        return None
    rows = [json.dumps(lab.to_dict(), ensure_ascii=False) for lab in labels]
    if not rows:
        return None
    directory = labels_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{dt.datetime.now(dt.UTC):%Y-%m-%d}.jsonl"
    with path.open("a", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")
    return path


def read_label_file(path: Path) -> list[Label]:
    out: list[Label] = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            out.append(Label.from_dict(data))
        except (json.JSONDecodeError, TypeError) as e:
            raise LabelError(f"{path}:{i}: not a label record ({e}); fix or delete that line") from e
    return out


def load_labels(settings: Settings, *, kinds: Sequence[str] | None = None, since: str | None = None) -> list[Label]:
    """Every stored label, oldest first; ``kinds`` filters by kind, ``since`` by ``created`` (ISO time)."""
    if settings.database_url is not None:
        with PostgresEpisodeStore(settings.database_url.get_secret_value(), label=settings.database_label,
                                  pool_size=1) as store:
            out = [Label.from_dict(r) for r in store.labels()]
    else:
        directory = labels_dir(settings)
        if not directory.is_dir():
            return []
        out = [lab for p in sorted(directory.glob("*.jsonl")) for lab in read_label_file(p)]
    if kinds is not None:
        unknown = set(kinds) - set(LABEL_KINDS)
        if unknown:
            raise LabelError(f"unknown label kind(s) {', '.join(sorted(unknown))}; known: {', '.join(LABEL_KINDS)}")
        out = [lab for lab in out if lab.kind in kinds]
    if since is not None:
        out = [lab for lab in out if lab.created >= since]
    return out
