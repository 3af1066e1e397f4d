"""The hooks other parts give consolidation: hindsight conclusions, the value retrain, the policy check."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SECRET_POLICY

from stackmind.consolidate import ConsolidateConfig
from stackmind.learning.hooks import consolidation_checks, learning_hooks
from stackmind.settings import Settings
from stackmind.value import (
    Label,
    TrainConfig,
    consolidation_examples,
    current_version,
    load_labels,
    retrain_for_consolidation,
    save_labels,
)
from stackmind.value.game24_states import dataset, random_puzzles


def test_learning_hooks_wire_every_part(settings: Settings, config: ConsolidateConfig) -> None:
    hooks = learning_hooks(settings, config)
    assert hooks.examples is consolidation_examples
    assert hooks.retrain_value is retrain_for_consolidation
    assert any(name.startswith("policy tests") for name in hooks.checks)  # the starter library's held-out examples
    assert set(hooks.missing) == {"game24"}  # no puzzle file configured


def test_conclusions_since_the_last_run_become_examples(settings: Settings) -> None:
    import datetime as dt

    old = Label(goal="Make 24 from 1 2 3 4", stack=[], thought="Make 24 from 1 2 3 4 Steps: 1 * 2 * 3 * 4. Answer: 24",
                target=1.0, kind="conclusion", source="verifier", meta={"answer": "1 * 2 * 3 * 4"},
                created="2026-01-01T00:00:00+00:00")
    new = Label(goal="Make 18 from 4 9 10 13", stack=[], thought="Make 18 from 4 9 10 13 Steps: 13 - 9; 10 - 4",
                target=1.0, kind="conclusion", source="verifier",
                meta={"answer": "(13 - 9) * (10 - 4) - 6", "relabelled": True})
    step = Label(goal="Make 18 from 4 9 10 13", stack=[], thought="13 - 9 = 4", target=1.0, kind="relabelled",
                 source="verifier")
    save_labels(settings, [old, new, step])
    all_ = list(consolidation_examples(settings, None))
    assert [e["id"] for e in all_] == [old.id, new.id]  # conclusions only, not the step labels
    since = list(consolidation_examples(settings, dt.datetime(2026, 6, 1, tzinfo=dt.UTC)))
    assert [e["id"] for e in since] == [new.id]
    (ex,) = since
    assert ex["prompt"] == new.goal and ex["source"] == "relabelled conclusion"
    assert ex["response"].startswith("Steps: 13 - 9; 10 - 4") and ex["response"].endswith("Final answer: (13 - 9) * (10 - 4) - 6")


def test_value_retrain_needs_labels_then_promotes_only_a_better_model(settings: Settings) -> None:
    assert "skipped" in retrain_for_consolidation(settings)
    labels = dataset(random_puzzles(30, seed=3), per_depth=4, seed=1)
    save_labels(settings, labels)
    first = retrain_for_consolidation(settings)
    assert first["promoted"] and current_version(settings) == first["version"] == "v0001"
    assert first["metrics"]["n"] == first["eval"] > 0
    assert len(first["calibration"]["predicted"]) == len(first["calibration"]["observed"]) > 0
    # An untrained head (no epochs) is measured against the current model on the same held-out goals:
    # it is worse there, so it is saved but not made current.
    second = retrain_for_consolidation(settings, TrainConfig(epochs=0))
    assert second["version"] == "v0002" and second["previous"] == "v0001"
    assert second["metrics"]["brier"] > second["previous_metrics"]["brier"]
    assert not second["promoted"] and current_version(settings) == "v0001"


@pytest.mark.slow
def test_policy_check_answers_held_out_examples_with_the_policy_pushed(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedded_llm) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)  # no ./policies: the library is the home's
    (settings.home / "policies").mkdir()
    (settings.home / "policies" / "secret.policy.yaml").write_text(SECRET_POLICY)
    checks = consolidation_checks(settings)
    assert list(checks) == ["policy tests (1 held-out examples)"]
    (check,) = checks.values()
    # The held-out question is answered from the pushed examples (the word is nowhere else). From a
    # cold cache: llama.cpp's greedy text can differ with what earlier tests left cached (docs/llm.md).
    embedded_llm.backend.clear_cache()
    assert check(embedded_llm) == 1.0


def test_value_retrain_labels_episodes_that_no_label_names(settings: Settings) -> None:
    from stackmind.trace import Episode, Step

    for i in range(6):
        Episode(goal=f"What is {i} + {i}?", steps=[Step(thought=f"{i} + {i} = {2 * i}", value=0.5)],
                answer=str(2 * i), reward=1.0 if i % 2 else 0.0).save(settings.episodes_dir)
    out = retrain_for_consolidation(settings)
    assert out["labelled_now"] > 0 and "skipped" in out  # too few to train on, but labelled and kept
    assert out["labelled_now"] == len([lab for lab in load_labels(settings)])
    assert retrain_for_consolidation(settings)["labelled_now"] == 0  # labelled once only


def test_hindsight_examples_reach_the_dataset_in_the_step_format(settings: Settings, config: ConsolidateConfig) -> None:
    from stackmind.consolidate import Hooks, consolidate

    given = [{"prompt": "Make 24 from 4 6 1 1", "response": "Steps: 4 * 6 = 24. Final answer: 4 * 6 * 1 * 1",
              "source": "relabelled conclusion", "id": "x1"}]
    plan = consolidate(settings, config, dry_run=True, hooks=Hooks(examples=lambda s, since: given))
    assert not [p for p in plan["problems"] if "hindsight" in p], plan["problems"]
    assert plan["dataset"]["new_hindsight"] == 1, plan["dataset"]
    (ex,) = [e for e in plan["examples"] if e["source"] == "hindsight"]
    assert ex["target"].endswith("Final answer: 4 * 6 * 1 * 1") and "Current goal: Make 24" in ex["prompt"]
