"""How the value model learns: after each episode (label, record RPE, online update with replay),
and from scratch (`retrain`, on every stored label, measured on held-out goals).

    outcome = after_episode(settings, episode)      # labels + RPEs stored, a new online version saved
    model, report = retrain(settings)               # full retrain; report.metrics on held-out goals
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stackmind.settings import Settings
from stackmind.trace import Episode
from stackmind.value.hindsight import apply_returns, label_episode
from stackmind.value.labels import Label, load_labels, save_labels
from stackmind.value.metrics import calibration
from stackmind.value.model import (
    FitReport,
    ProgressFn,
    TrainConfig,
    ValueModel,
    ValueModelError,
    current_version,
    label_text,
    split,
)
from stackmind.value.rpe import ReplayBuffer, RPERecord, record_rpe, rpe_records

TRAINABLE = ("return_to_go", "monte_carlo", "relabelled", "verifier")
MAX_REPLAY_POOL = 4000  # the newest labels the replay buffer draws from


def data_summary(train: Sequence[Label], held: Sequence[Label]) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    for lab in train:
        kinds[lab.kind] = kinds.get(lab.kind, 0) + 1
    return {"train": len(train), "eval": len(held), "by_kind": kinds,
            "eval_goals": sorted({lab.goal for lab in held})}


def retrain(settings: Settings, labels: Sequence[Label] | None = None, *, eval_fraction: float = 0.2,
            config: TrainConfig | None = None, progress: ProgressFn | None = None,
            model: ValueModel | None = None) -> tuple[ValueModel, FitReport]:
    """Train a fresh head on all labels (stored ones by default), held-out goals apart; save a version."""
    labels = [lab for lab in (load_labels(settings) if labels is None else labels) if lab.kind in TRAINABLE]
    if not labels:
        raise ValueModelError(f"no labels in {settings.home / 'labels'}: finish episodes with rewards first, "
                              "or bootstrap from Game of 24 states (`stackmind value train --game24 CSV`)")
    train, held = split(labels, eval_fraction, seed=(config or TrainConfig()).seed)
    model = model or ValueModel()
    report = model.fit(train, eval_labels=held, config=config, progress=progress)
    model.save(settings, kind="retrain", data={**data_summary(train, held), "calibration": report.calibration},
               metrics=report.metrics, history=report.history)
    return model, report


@dataclass
class EpisodeLearning:
    """What learning from one finished episode produced."""

    labels: list[Label] = field(default_factory=list)
    rpe: list[RPERecord] = field(default_factory=list)
    version: str | None = None  # the online version saved, if the model was updated
    metrics: dict[str, Any] = field(default_factory=dict)


def after_episode(settings: Settings, episode: Episode, *, model: ValueModel | None = None,
                  source: str = "verifier", scorer: str = "", replay: int = 64, epochs: int = 5,
                  seed: int = 0) -> EpisodeLearning:
    """Label a finished episode, store labels and RPEs, and update the value model online.

    The update trains a few low-rate epochs on the new labels plus a replay sample of older ones,
    drawn high-|RPE| first (the error of the current model on them). It needs a trained model (the
    current version, or ``model``); without one, labels and RPEs are still stored for `retrain`.
    """
    labels = label_episode(episode, source=source)
    out = EpisodeLearning(labels=labels)
    if not labels:
        return out
    apply_returns(episode, labels)
    older = [lab for lab in load_labels(settings) if lab.kind in TRAINABLE][-MAX_REPLAY_POOL:]
    save_labels(settings, labels)
    out.rpe = rpe_records(labels, scorer=scorer)
    record_rpe(settings, out.rpe)
    if model is None:
        if current_version(settings) is None:
            return out
        model = ValueModel.load(settings)
    new = [lab for lab in labels if lab.kind in TRAINABLE]
    eval_goals = set(model.meta.get("data", {}).get("eval_goals", []))
    new = [lab for lab in new if lab.goal not in eval_goals]
    pool = [lab for lab in older if lab.goal not in eval_goals]
    if not new:
        return out
    batch = list(new)
    if pool and replay:
        buffer = ReplayBuffer(pool)
        buffer.reprioritize(np.array([lab.target for lab in pool]) - model.predict(pool))
        batch += buffer.sample(min(replay, len(pool)), random.Random(seed))
    fit = model.update(batch, epochs=epochs, seed=seed)
    held = [lab for lab in older if lab.goal in eval_goals]
    metrics = calibration([lab.target for lab in held], model.predict(held)).to_dict() if held else {}
    data = {**model.meta.get("data", {}), "online": {"new": len(new), "replay": len(batch) - len(new),
                                                     "episode": episode.id}}
    model.save(settings, kind="online", data=data, metrics=metrics or model.meta.get("metrics", {}),
               history=fit.history)
    out.version, out.metrics = model.version, metrics
    return out


@dataclass
class Reassessment:
    episode: str
    goal: str
    before: float  # the mean value the search gave the chosen path's scored steps
    after: float  # the current model's mean value for the same steps
    steps: int
    reward: float | None

    @property
    def moved(self) -> float:
        return self.after - self.before


def reassess(model: ValueModel, episodes: Sequence[Episode]) -> list[Reassessment]:
    """Re-score finished episodes' chosen paths with ``model``; largest |move| first."""
    out: list[Reassessment] = []
    for ep in episodes:
        scored = [(k, s) for k, s in enumerate(ep.steps)
                  if s.value is not None and s.meta.get("outcome") not in ("success", "failure")]
        if not scored:
            continue
        thoughts = [s.thought for s in ep.steps]
        texts = [label_text(Label(ep.goal, thoughts[:k], s.thought, 0.0, "return_to_go", "reassessment"))
                 for k, s in scored]
        after = model.predict_texts(texts)
        before = [float(s.value) for _, s in scored]
        out.append(Reassessment(ep.id, ep.goal, float(np.mean(before)), float(np.mean(after)), len(scored),
                                ep.reward))
    return sorted(out, key=lambda r: abs(r.moved), reverse=True)
