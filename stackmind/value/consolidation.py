"""What the value part gives `stackmind consolidate` (its hooks, see `stackmind.consolidate.hooks`).

- `consolidation_examples`: the hindsight conclusions made since the last consolidation, as
  prompt/response pairs to fine-tune on: the successful paths compressed, and the relabelled ones
  (a failed Game of 24 episode that made 18 is a worked solution of "make 18").
- `retrain_for_consolidation`: first labels the episodes no label names yet (a benchmark's or an
  imported episode never went through `after_episode`), then a fresh value model on every stored label,
  measured on held-out goals
  against the current model on the same goals; it becomes current only when its Brier score is not
  worse, so a night with few or odd labels cannot make the search's scorer worse.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from stackmind.settings import Settings
from stackmind.storage import read_stored_episodes
from stackmind.value.hindsight import label_episode
from stackmind.value.labels import Label, load_labels, save_labels
from stackmind.value.learn import TRAINABLE, data_summary
from stackmind.value.metrics import calibration, reliability
from stackmind.value.model import (
    TrainConfig,
    ValueModel,
    ValueModelError,
    current_version,
    set_current,
    split,
)
from stackmind.value.rpe import record_rpe, rpe_records

MIN_LABELS = 32  # fewer stored labels than this: the value model is left as it is
MIN_GOALS = 4


def consolidation_examples(settings: Settings, since: dt.datetime | None) -> Iterator[dict[str, Any]]:
    """Conclusions labelled after ``since`` (all of them when None), as ``{"prompt", "response"}``."""
    for lab in load_labels(settings, kinds=["conclusion"]):
        if since is not None and dt.datetime.fromisoformat(lab.created) <= since:
            continue
        if lab.target < 1.0:
            continue
        text = lab.thought.strip()
        body = text[len(lab.goal.strip()):].strip() if text.startswith(lab.goal.strip()) else text
        answer = lab.meta.get("answer")
        response = f"{body}\nFinal answer: {answer}" if answer and "Answer:" not in body else body
        yield {"prompt": lab.goal, "response": response, "id": lab.id,
               "source": "relabelled conclusion" if lab.meta.get("relabelled") else "conclusion"}


def label_unlabelled(settings: Settings) -> int:
    """Hindsight labels (and RPEs) for the episodes with a reward that no stored label names; how many."""
    seen = {lab.episode for lab in load_labels(settings)}
    new: list[Label] = []
    episodes, _ = read_stored_episodes(settings)  # consolidation's dataset step reports unreadable ones
    for episode in episodes:
        if episode.id not in seen:
            new += label_episode(episode)
    save_labels(settings, new)
    record_rpe(settings, rpe_records(new))
    return len(new)


def retrain_for_consolidation(settings: Settings, config: TrainConfig | None = None) -> dict[str, Any]:
    """Label what is unlabelled, retrain on all stored labels; make the result current only if it is
    not worse than the current one."""
    labelled = label_unlabelled(settings)
    labels = [lab for lab in load_labels(settings) if lab.kind in TRAINABLE]
    goals = {lab.goal for lab in labels}
    if len(labels) < MIN_LABELS or len(goals) < MIN_GOALS:
        return {"skipped": f"{len(labels)} labels over {len(goals)} goals; retraining needs at least "
                           f"{MIN_LABELS} labels over {MIN_GOALS} goals", "labelled_now": labelled}
    cfg = config or TrainConfig()
    train, held = split(labels, 0.2, seed=cfg.seed)
    model = ValueModel(seed=cfg.seed)
    report = model.fit(train, eval_labels=held, config=cfg)
    y = [lab.target for lab in held]
    p_new = [float(v) for v in model.predict(held)]
    new = calibration(y, p_new)
    before = None
    previous = current_version(settings)
    if previous is not None:
        try:
            before = calibration(y, list(ValueModel.load(settings, encoder=model.encoder).predict(held)))
        except ValueModelError:
            before = None  # an unreadable current model is replaced
    better = before is None or new.brier <= before.brier
    model.save(settings, kind="consolidate", data={**data_summary(train, held), "calibration": report.calibration},
               metrics=new.to_dict(), history=report.history, make_current=False)
    if better:
        set_current(settings, model.version)  # type: ignore[arg-type]
    predicted, observed, _ = reliability(y, p_new)
    return {
        "version": model.version, "promoted": better, "previous": previous, "labelled_now": labelled,
        "train": report.train, "eval": report.eval, "seconds": round(report.seconds, 1),
        "metrics": new.to_dict(), "previous_metrics": before.to_dict() if before else None,
        "calibration": {"predicted": [round(v, 4) for v in predicted], "observed": [round(v, 4) for v in observed]},
    }
