"""The value model with the real MiniLM embedder: training, checkpoints, the scorer hook, online learning."""

from __future__ import annotations

import json

import numpy as np
import pytest
from value_doubles import Game24Rules

from stackmind.llm.base import LLM
from stackmind.search import Budget, LLMJudge, Scorer, solve
from stackmind.settings import Settings
from stackmind.tasks.game24 import Game24
from stackmind.value import (
    TrainConfig,
    ValueModel,
    ValueModelError,
    after_episode,
    choose_scorer,
    current_version,
    load_labels,
    load_rpe,
    reassess,
    retrain,
    save_labels,
    versions,
)
from stackmind.value.game24_states import dataset, random_puzzles
from stackmind.value.metrics import auc


@pytest.fixture(scope="module")
def g24_labels():  # noqa: ANN201
    return dataset(random_puzzles(36, seed=5), per_depth=6, seed=1)


def test_train_save_reload_gives_the_same_scores(settings: Settings, g24_labels) -> None:  # noqa: ANN001
    model, report = retrain(settings, g24_labels, config=TrainConfig(epochs=15))
    assert report.train > 0 and report.eval > 0 and len(report.history) == 15
    assert report.history[-1]["train_loss"] < report.history[0]["train_loss"]
    version = current_version(settings)
    assert version == model.version == "v0001"
    meta = json.loads((settings.home / "value" / version / "meta.json").read_text())
    assert meta["data"]["train"] == report.train and meta["metrics"]["n"] == report.eval
    game = Game24([4, 9, 10, 13])
    states = game.children(game.root(), ["13 - 9 = 4 (left: 4 4 10)\n10 + 4 = 14 (left: 9 13 14)"])
    assert len(states) == 2
    again = ValueModel.load(settings)
    a, b = model.score(game.goal, states), again.score(game.goal, states)
    assert a == b and all(0.0 <= v <= 1.0 for v in a)
    assert isinstance(again, Scorer)
    # A fresh, untrained head scores differently: the reload really carried the weights.
    assert ValueModel(again.encoder, seed=123).score(game.goal, states) != a


def test_corrupt_checkpoint_is_refused(settings: Settings, g24_labels) -> None:  # noqa: ANN001
    retrain(settings, g24_labels[:60], config=TrainConfig(epochs=1))
    weights = settings.home / "value" / "v0001" / "head.pt"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(ValueModelError, match="sha256"):
        ValueModel.load(settings)


def test_platt_scaling_is_fitted_on_goals_set_aside_and_saved(settings: Settings) -> None:
    import hashlib

    import torch

    labels = dataset(random_puzzles(80, seed=11), per_depth=4, seed=2)
    model, report = retrain(settings, labels, config=TrainConfig(epochs=12))
    cal = report.calibration
    assert cal["fitted"] and cal["goals"] >= 8 and cal["labels"] >= 64 and cal["scale"] > 0
    # The epoch kept is the one with the lowest loss on the goals set aside, and those goals were not trained on.
    losses = [row["calibration_loss"] for row in report.history]
    assert report.train + cal["labels"] + report.eval == len(labels)
    assert min(losses) <= losses[-1]
    head = model.head
    assert (head.scale.item(), head.shift.item()) != (1.0, 0.0)
    meta = json.loads((settings.home / "value" / model.version / "meta.json").read_text())
    assert meta["data"]["calibration"]["scale"] == cal["scale"]
    game = Game24([4, 9, 10, 13])
    states = game.children(game.root(), ["13 - 9 = 4 (left: 4 4 10)\n10 + 4 = 14 (left: 9 13 14)"])
    again = ValueModel.load(settings)
    assert again.score(game.goal, states) == model.score(game.goal, states)
    # A head saved before Platt scaling existed (no scale/shift) still loads, as the identity map.
    weights = settings.home / "value" / model.version / "head.pt"
    state = {k: v for k, v in torch.load(weights, weights_only=True).items() if k not in ("scale", "shift")}
    torch.save(state, weights)
    meta["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (settings.home / "value" / model.version / "meta.json").write_text(json.dumps(meta))
    old = ValueModel.load(settings)
    assert (old.head.scale.item(), old.head.shift.item()) == (1.0, 0.0)


@pytest.mark.slow
def test_learned_model_ranks_held_out_puzzles(settings: Settings) -> None:
    puzzles = random_puzzles(160, seed=99)
    train = dataset(puzzles[:130], per_depth=8, seed=1)
    model, report = retrain(settings, train, config=TrainConfig(epochs=30))
    test = dataset(puzzles[130:], per_depth=8, seed=2)
    seen = {lab.goal for lab in train}
    test = [lab for lab in test if lab.goal not in seen]
    p = model.predict(test)
    assert auc([lab.target for lab in test], p) > 0.65


def test_no_model_falls_back_to_the_llm_judge(settings: Settings) -> None:
    llm = LLM(Game24Rules())
    scorer, why = choose_scorer(settings, llm, Game24([4, 9, 10, 13]))
    assert isinstance(scorer, LLMJudge) and "no value model" in why


def test_after_episode_labels_records_rpe_and_updates_online(settings: Settings, g24_labels) -> None:  # noqa: ANN001
    save_labels(settings, g24_labels)  # older experience for the replay buffer
    model, _ = retrain(settings, config=TrainConfig(epochs=10))
    result = solve(Game24([4, 9, 10, 13]), LLM(Game24Rules(wrong=True)), strategy="bfs", beam=3,
                   budget=Budget(llm_calls=40), stop_on_success=False)
    episode = result.to_episode()
    before = model.predict_texts(["probe"])
    learned = after_episode(settings, episode, scorer="llm-judge")
    assert learned.labels and learned.version == "v0002" and current_version(settings) == "v0002"
    assert all(s.reward is not None for s in episode.steps)  # returns-to-go written into the trace
    rpes = load_rpe(settings)
    assert rpes and len(rpes) == len(learned.rpe)
    # The judge was wrong on purpose: its surprises are large.
    assert max(abs(r.rpe) for r in rpes) >= 0.9
    assert {lab.episode for lab in load_labels(settings)} >= {episode.id}
    updated = ValueModel.load(settings)
    assert not np.allclose(updated.predict_texts(["probe"]), before)
    meta = versions(settings)[-1]
    assert meta["kind"] == "online" and meta["parent"] == "v0001" and meta["data"]["online"]["replay"] > 0
    moved = reassess(updated, [episode])
    assert moved and moved[0].episode == episode.id and moved[0].steps >= 1


def test_search_switches_on_measured_metrics(settings: Settings) -> None:
    from stackmind.value.metrics import calibration

    llm, game = LLM(Game24Rules()), Game24([4, 9, 10, 13])
    good = calibration([0] * 150 + [1] * 50, [0.05] * 150 + [0.95] * 50).to_dict()
    ValueModel().save(settings, kind="retrain", metrics=good)
    scorer, why = choose_scorer(settings, llm, game)
    assert isinstance(scorer, ValueModel) and scorer.version == "v0001", why
    few = calibration([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8]).to_dict()  # as good, but measured on four labels
    ValueModel().save(settings, kind="retrain", metrics=few)
    scorer, why = choose_scorer(settings, llm, game)
    assert isinstance(scorer, LLMJudge) and "v0002 not trusted" in why
