"""The value model: (goal, rendered stack, candidate thought) -> the return it predicts, in [0, 1].

An `Encoder` turns example texts into vectors; a small torch head (`ValueHead`, an MLP) maps a vector
to a logit. The default encoder is the project's offline MiniLM embedder
(`stackmind.embedder`), so the head trains in seconds on a CPU. A bigger model
plugs in as another `Encoder` (e.g. a transformers model on a GPU) or as any object with the same
``score`` / ``predict`` methods. `ValueModel.score` is the search's `Scorer` hook: one batch per call.

Checkpoints are versioned folders under ``settings.home / "value"`` (``v0001``, ``v0002``, ...),
each with the head's weights, their sha256 and metadata (data sizes, held-out metrics, training
curve, parent version); the file ``current`` names the one in use. Nothing is ever deleted; loading
verifies the checksum, so a checkpoint that did not save is an error, not a silent no-op.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from stackmind.embedder import embed
from stackmind.errors import StackmindError
from stackmind.settings import Settings
from stackmind.tasks.base import State
from stackmind.value.labels import Label
from stackmind.value.metrics import calibration

if TYPE_CHECKING:
    import torch
    from torch import nn

MAX_STACK_LINES = 12  # the head sees the goal, the last thoughts of the stack and the candidate


class ValueModelError(StackmindError, RuntimeError):
    """A value checkpoint that is missing, corrupt or made for another encoder."""


def example_text(goal: str, stack: Sequence[str], thought: str) -> str:
    """The text a value model reads: the goal, the stack (latest thoughts) and the candidate thought."""
    lines = list(stack)[-MAX_STACK_LINES:]
    return "\n".join([f"Goal: {goal}", *lines, f"Next: {thought}"])


def label_text(label: Label) -> str:
    return example_text(label.goal, label.stack, label.thought)


def state_text(goal: str, state: State) -> str:
    thoughts = list(state.thoughts)
    return example_text(goal, thoughts[:-1], thoughts[-1] if thoughts else "(start)")


@runtime_checkable
class Encoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class MiniLMEncoder:
    """The bundled MiniLM sentence embedder (384-d, unit length), with a per-instance text cache."""

    name = "minilm"
    dim = 384

    def __init__(self, batch_size: int = 64, max_cache: int = 50_000) -> None:
        self.max_cache = max_cache
        self.batch_size = batch_size
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            if len(self._cache) + len(todo) > self.max_cache:
                self._cache.clear()  # a long-lived agent: start over rather than grow without bound

            vecs = embed(todo, self.batch_size)
            for t, v in zip(todo, vecs, strict=True):
                self._cache[t] = np.asarray(v, dtype=np.float32)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._cache[t] for t in texts])


def value_head(dim: int, hidden: int = 256, dropout: float = 0.1) -> nn.Module:
    """An MLP giving a logit, then a fixed affine map (Platt scaling) fitted on held-out goals.
    (torch is imported here, not with the module: a command that never scores starts seconds sooner.)"""
    import torch
    from torch import nn

    class ValueHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))
            self.register_buffer("scale", torch.tensor(1.0))
            self.register_buffer("shift", torch.tensor(0.0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x).squeeze(-1) * self.scale + self.shift

    return ValueHead()


@dataclass
class TrainConfig:
    epochs: int = 40
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 64
    seed: int = 0
    # Goals kept aside (never trained on) to pick the best epoch and to fit the Platt scaling that
    # makes the probabilities calibrated; 0 turns both off. Used only with enough goals and labels.
    calibrate: float = 0.15
    min_calibration_goals: int = 8
    min_calibration_labels: int = 64


@dataclass
class FitReport:
    """What one fit did: the per-epoch curve and the held-out metrics at the end."""

    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    train: int = 0
    eval: int = 0
    seconds: float = 0.0
    calibration: dict[str, Any] = field(default_factory=dict)  # the Platt map and the labels it came from


ProgressFn = Callable[[int, int, dict[str, float]], None]


class ValueModel:
    """Encoder + head. ``score`` is the `Scorer` hook; ``fit`` and ``update`` train the head."""

    def __init__(self, encoder: Encoder | None = None, *, hidden: int = 256, seed: int = 0) -> None:
        self.encoder: Encoder = encoder if encoder is not None else MiniLMEncoder()
        import torch

        self.hidden = hidden
        torch.manual_seed(seed)
        self.head = value_head(self.encoder.dim, hidden)
        self.head.eval()
        self.meta: dict[str, Any] = {}
        self.version: str | None = None

    # ---- predicting --------------------------------------------------------------------------
    def predict_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros(0, np.float32)
        x = torch.from_numpy(self.encoder.encode(texts))
        self.head.eval()
        with torch.no_grad():
            return torch.sigmoid(self.head(x)).numpy().astype(np.float64)

    def predict(self, labels: Sequence[Label]) -> np.ndarray:
        return self.predict_texts([label_text(lab) for lab in labels])

    def score(self, goal: str, states: Sequence[State]) -> list[float]:
        """Values in [0, 1] for ``states`` under ``goal``, in one batch (the search's Scorer hook)."""
        return [float(v) for v in self.predict_texts([state_text(goal, s) for s in states])]

    # ---- training ----------------------------------------------------------------------------
    def fit(self, labels: Sequence[Label], *, eval_labels: Sequence[Label] = (), config: TrainConfig | None = None,
            progress: ProgressFn | None = None) -> FitReport:
        """Train the head on ``labels`` (targets may be fractional; weights count), measuring on ``eval_labels``."""
        import time

        import torch
        from torch import nn

        cfg = config or TrainConfig()
        t0 = time.perf_counter()
        train = [lab for lab in labels if lab.kind != "conclusion"]
        if not train:
            raise ValueModelError("no labels to train on: run episodes with rewards, or train on Game of 24 states")
        cal: list[Label] = []
        if cfg.calibrate > 0:
            rest, aside = split(train, eval_fraction=cfg.calibrate, seed=cfg.seed)
            if (len({lab.goal for lab in aside}) >= cfg.min_calibration_goals
                    and len(aside) >= cfg.min_calibration_labels and rest):
                train, cal = rest, aside
        x, y, w = self._tensors(train)
        if cal:
            cal_x, cal_y, cal_w = self._tensors(cal)
            best: tuple[float, dict[str, torch.Tensor]] | None = None
        ev = [lab for lab in eval_labels if lab.kind != "conclusion"]
        ev_x = self.encoder.encode([label_text(lab) for lab in ev]) if ev else None
        ev_y = np.array([lab.target for lab in ev], float)
        gen = torch.Generator().manual_seed(cfg.seed)
        opt = torch.optim.AdamW(self.head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        report = FitReport(train=len(train), eval=len(ev))
        for epoch in range(cfg.epochs):
            self.head.train()
            perm = torch.randperm(len(train), generator=gen)
            total = 0.0
            for i in range(0, len(train), cfg.batch_size):
                b = perm[i:i + cfg.batch_size]
                loss = (nn.functional.binary_cross_entropy_with_logits(self.head(x[b]), y[b], reduction="none")
                        * w[b]).sum() / w[b].sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(b)
            row = {"epoch": epoch + 1, "train_loss": total / len(train)}
            if cal:
                self.head.eval()
                with torch.no_grad():
                    cal_loss = float((nn.functional.binary_cross_entropy_with_logits(
                        self.head(cal_x), cal_y, reduction="none") * cal_w).sum() / cal_w.sum())
                row["calibration_loss"] = cal_loss
                if best is None or cal_loss < best[0]:
                    best = (cal_loss, {k: v.clone() for k, v in self.head.state_dict().items()})
            if ev_x is not None:
                self.head.eval()
                with torch.no_grad():
                    p = torch.sigmoid(self.head(torch.from_numpy(ev_x))).numpy()
                eps = 1e-6
                row["eval_loss"] = float(-np.mean(ev_y * np.log(p + eps) + (1 - ev_y) * np.log(1 - p + eps)))
                row["eval_brier"] = float(np.mean((p - ev_y) ** 2))
            report.history.append(row)
            if progress is not None:
                progress(epoch + 1, cfg.epochs, row)
        self.head.eval()
        if cal and best is not None:  # (no epochs: nothing to pick or calibrate)
            self.head.load_state_dict(best[1])
            report.calibration = self._platt(cal_x, cal_y, cal_w)
            report.calibration.update(labels=len(cal), goals=len({lab.goal for lab in cal}))
        if ev:
            report.metrics = calibration(ev_y, self.predict_texts([label_text(lab) for lab in ev])).to_dict()
        report.seconds = time.perf_counter() - t0
        return report

    def _tensors(self, labels: Sequence[Label]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encoded texts, targets clipped to [0, 1], and weights."""
        import torch

        x = torch.from_numpy(self.encoder.encode([label_text(lab) for lab in labels]))
        y = torch.tensor([min(1.0, max(0.0, lab.target)) for lab in labels], dtype=torch.float32)
        w = torch.tensor([lab.weight for lab in labels], dtype=torch.float32)
        return x, y, w

    def _platt(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> dict[str, Any]:
        """Fit the head's final affine map (Platt scaling) on labels it was not trained on."""
        import torch
        from torch import nn

        with torch.no_grad():
            raw = (self.head(x) - self.head.shift) / self.head.scale  # the logits before the map
        a = torch.ones((), requires_grad=True)
        b = torch.zeros((), requires_grad=True)
        opt = torch.optim.LBFGS([a, b], lr=0.5, max_iter=100)

        def loss() -> torch.Tensor:
            opt.zero_grad()
            out = (nn.functional.binary_cross_entropy_with_logits(raw * a + b, y, reduction="none") * w).sum() / w.sum()
            out.backward()
            return out

        opt.step(loss)
        scale, shift = float(a.detach()), float(b.detach())
        if not (np.isfinite(scale) and np.isfinite(shift)) or scale <= 0:  # degenerate: keep the identity
            return {"scale": 1.0, "shift": 0.0, "fitted": False}
        self.head.scale.fill_(self.head.scale.item() * scale)
        self.head.shift.fill_(self.head.shift.item() * scale + shift)
        return {"scale": round(scale, 4), "shift": round(shift, 4), "fitted": True}

    def update(self, labels: Sequence[Label], *, epochs: int = 5, lr: float = 3e-4, seed: int = 0) -> FitReport:
        """An online step: a few low-rate epochs on new labels (mixed with replay by the caller)."""
        return self.fit(labels, config=TrainConfig(epochs=epochs, lr=lr, seed=seed))

    # ---- checkpoints -------------------------------------------------------------------------
    def save(self, settings: Settings, *, kind: str, data: dict[str, Any] | None = None,
             metrics: dict[str, Any] | None = None, history: list[dict[str, float]] | None = None,
             make_current: bool = True) -> Path:
        """Write a new version folder; verify it reads back; optionally point ``current`` at it."""
        import torch

        root = value_dir(settings)
        root.mkdir(parents=True, exist_ok=True)
        number = 1 + max((int(p.name[1:]) for p in root.glob("v[0-9]*") if p.name[1:].isdigit()), default=0)
        version = f"v{number:04d}"
        tmp = root / f".{version}.tmp"
        tmp.mkdir()
        weights = tmp / "head.pt"
        torch.save(self.head.state_dict(), weights)
        meta = {
            "version": version, "kind": kind, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "parent": self.version, "encoder": {"name": self.encoder.name, "dim": self.encoder.dim},
            "hidden": self.hidden, "sha256": _sha256(weights), "data": data or {}, "metrics": metrics or {},
            "history": history or [],
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        final = root / version
        tmp.rename(final)
        check = ValueModel.load(settings, version, encoder=self.encoder)
        probe = torch.zeros(1, self.encoder.dim)
        with torch.no_grad():
            if not torch.equal(check.head(probe), self.head(probe)):
                raise ValueModelError(f"{final}: the saved weights do not reproduce the model; disk full?")
        self.version, self.meta = version, meta
        if make_current:
            set_current(settings, version)
        return final

    @classmethod
    def load(cls, settings: Settings, version: str | None = None, *, encoder: Encoder | None = None) -> ValueModel:
        """A saved version (default: the current one), its weights checked against their sha256."""
        import torch

        version = version or current_version(settings)
        if version is None:
            raise ValueModelError(f"no value model in {value_dir(settings)}: train one with `stackmind value train`")
        folder = value_dir(settings) / version
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            raise ValueModelError(f"{folder}: no such value model version (see `stackmind value show`)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        weights = folder / "head.pt"
        if not weights.is_file() or _sha256(weights) != meta["sha256"]:
            raise ValueModelError(f"{weights}: missing or does not match its sha256; use another version")
        enc = encoder if encoder is not None else MiniLMEncoder()
        if enc.name != meta["encoder"]["name"] or enc.dim != meta["encoder"]["dim"]:
            raise ValueModelError(f"{folder} was trained on encoder {meta['encoder']}, not {enc.name}/{enc.dim}")
        model = cls(enc, hidden=int(meta["hidden"]))
        state = torch.load(weights, map_location="cpu", weights_only=True)
        missing, unexpected = model.head.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"scale", "shift"}:  # a head saved before Platt scaling lacks only those
            raise ValueModelError(f"{weights}: not a value head of this shape (missing {missing}, "
                                  f"unexpected {unexpected})")
        model.head.eval()
        model.version, model.meta = version, meta
        return model


def value_dir(settings: Settings) -> Path:
    return settings.home / "value"


def current_version(settings: Settings) -> str | None:
    path = value_dir(settings) / "current"
    return path.read_text(encoding="utf-8").strip() or None if path.is_file() else None


def set_current(settings: Settings, version: str) -> None:
    """Point ``current`` at a version, atomically (write a temp file, rename it over)."""
    if not (value_dir(settings) / version / "meta.json").is_file():
        raise ValueModelError(f"no value model version {version} in {value_dir(settings)}")
    tmp = value_dir(settings) / "current.tmp"
    tmp.write_text(version + "\n", encoding="utf-8")
    tmp.replace(value_dir(settings) / "current")


def versions(settings: Settings) -> list[dict[str, Any]]:
    """Metadata of every saved version, oldest first."""
    root = value_dir(settings)
    out = []
    for p in sorted(root.glob("v[0-9]*")):
        meta = p / "meta.json"
        if meta.is_file():
            out.append(json.loads(meta.read_text(encoding="utf-8")))
    return out


def split(labels: Sequence[Label], eval_fraction: float = 0.2, seed: int = 0) -> tuple[list[Label], list[Label]]:
    """Train / held-out split by goal (all labels of one goal on one side), so held-out goals are unseen."""
    goals = sorted({lab.goal for lab in labels})
    rng = random.Random(seed)
    rng.shuffle(goals)
    n_eval = max(1, round(len(goals) * eval_fraction)) if len(goals) > 1 else 0
    held = set(goals[:n_eval])
    return [lab for lab in labels if lab.goal not in held], [lab for lab in labels if lab.goal in held]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
