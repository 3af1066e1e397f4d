"""`stackmind learn`: one real, tiny round on the embedded model, and the report's arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stackmind.agent import Agent
from stackmind.consolidate import ConsolidateConfig, Dataset, Scores, consolidate_dir, decide
from stackmind.interfaces.cli import app
from stackmind.learning.cycle import LearnConfig, curve, format_curve, learn, learn_dir
from stackmind.settings import Settings
from stackmind.storage import read_stored_episodes

DOUBLE_POLICY = """\
name: double
description: Double a number by computing it.
examples:
  - goal: What is 21 doubled? Answer with the number.
    response: "Final answer: 42"
    answer: "42"
  - goal: What is 300 doubled? Answer with the number.
    response: "Final answer: 600"
    answer: "600"
    match: {kind: numeric}
    split: heldout
training:
  slow: {weight: 1}
"""


def test_a_check_with_its_own_margin_tolerates_one_dev_goal() -> None:
    cur, cand = Scores(checks={"dev lists (5 goals)": 0.6}), Scores(checks={"dev lists (5 goals)": 0.4})
    assert decide(cur, cand, 0.02, {"dev lists (5 goals)": 0.2 + 1e-9})[0]
    assert not decide(cur, Scores(checks={"dev lists (5 goals)": 0.2}), 0.02, {"dev lists (5 goals)": 0.2 + 1e-9})[0]
    assert not decide(cur, cand, 0.02)[0]  # without it, the config's margin


def test_the_curve_gives_each_familys_change_from_round_zero() -> None:
    def measured(a: float, b: float) -> dict:
        return {"families": {"lists": {"success": a}, "dates": {"success": b}}}
    report = {"config": {"families": ["lists", "dates"]},
              "rounds": [{"round": 0, "adapter": None, "heldout": measured(0.2, 0.5)},
                         {"round": 1, "adapter": "v0001", "heldout": measured(0.4, 0.4667)}]}
    c = curve(report)
    assert c["gain_points"] == {"lists": [0.0, 20.0], "dates": [0.0, -3.3]}
    assert c["adapters"] == [None, "v0001"]
    text = format_curve({**report, "curve": c})
    assert "+20.0 points" in text and "-3.3 points" in text and "v0001" in text


@pytest.mark.slow
def test_one_tiny_round_trains_on_the_step_format_gates_promotes_and_the_next_run_uses_it(
    settings: Settings, tmp_path: Path,
) -> None:
    """Round 0 measures, round 1 practises (verified episodes, hindsight labels), consolidates on the
    prompts the agent saw, gates on a dev goal through the agent, promotes, and measures again with
    the promoted adapter loaded; rerunning resumes (nothing is done twice)."""
    config = LearnConfig(families=["arithmetic"], train_goals=2, attempts=1, dev_goals=1, heldout_goals=1,
                         concurrency=2, train_minutes=10)
    cconfig = ConsolidateConfig(max_steps=2, batch_size=1, learning_rate=3e-4, rank=8, init="fresh",
                                max_length=1536, exact_match_examples=0, policies_dirs=[], traces_dirs=[])
    # A one-policy library (the gate runs each policy's held-out examples through the agent: the
    # starter library's would take minutes here).
    (settings.home / "policies").mkdir(parents=True)
    (settings.home / "policies" / "double.policy.yaml").write_text(DOUBLE_POLICY)
    lines: list[str] = []
    report = learn(settings, config, consolidate_config=cconfig, progress=lines.append)

    r0, r1 = report["rounds"]
    assert r0["adapter"] is None and r0["heldout"]["families"]["arithmetic"]["goals"] == 1
    assert r0["heldout"]["adapter_files"] == []
    assert r1["practice"]["attempts"] == 2 and r1["practice"]["labels"] > 0
    assert "value" in r1["heldout"]  # the value model on the held-out states (too few labels here to train one)

    # Practice wrote ordinary episodes with the verifier's reward, in the agent's data dir.
    episodes, _ = read_stored_episodes(settings)
    practised = [e for e in episodes if str(e.meta.get("goal_id", "")).startswith("arithmetic-train-")]
    assert len(practised) == 2 and all(e.reward in (0.0, 1.0) for e in practised)
    # each step carries the value it was given as it ran (the baseline of its reward-prediction error)
    assert all(s.value is not None and 0.0 <= s.value <= 1.0 for e in practised for s in e.steps)
    # synthesis ran on the practice episodes (two are too few to cluster: nothing written)
    assert r1["synthesis"]["episodes"] >= 2 and r1["synthesis"]["written"] == 0, r1["synthesis"]
    assert not any("heldout" in str(e.meta.get("goal_id")) for e in episodes)  # measured elsewhere

    # The LoRA trained on exactly what the agent was prompted with: the system prompt of its step
    # format and the stack view it saw, then the step it took.
    run_dir = consolidate_dir(settings) / "runs" / r1["consolidate"]["run"]
    dataset = Dataset.load(run_dir / "dataset")
    fmt = Agent.from_settings(settings.model_copy(update={"memory": False})).step_format()
    solved = [e for e in practised if e.reward == 1.0]
    trained = [ex for ex in dataset.train if ex.source == "episode"]
    assert trained and {ex.origin for ex in trained} == {e.id for e in solved}
    for ex in trained:
        ep = next(e for e in solved if e.id == ex.origin)
        assert ex.prompt in [fmt.messages(s.view, ep.goal) for s in ep.steps], ex.prompt
        i = [fmt.messages(s.view, ep.goal) for s in ep.steps].index(ex.prompt)
        assert ex.target == fmt.completion(fmt.parse(ep.steps[i].thought))  # the step it took there

    gate = r1["consolidate"]["gate"]
    assert r1["consolidate"]["train"]["steps"] == 2
    assert set(gate["candidate"]["checks"]) == {"dev arithmetic (1 goals)", "policy tests (1 held-out examples)"}, gate
    assert gate["passed"] and r1["consolidate"]["outcome"] == "promoted v0001", r1["consolidate"]
    assert r1["adapter"] == "v0001"
    # the next run loads it: round 1 was measured on the promoted adapter's GGUF
    assert r1["heldout"]["adapter_files"] == [str((settings.adapters_dir / "v0001" / "adapter.gguf").resolve())]
    assert Path(report["png"]).is_file()
    saved = json.loads((learn_dir(settings) / "learn.json").read_text())
    assert saved["curve"]["adapters"] == [None, "v0001"]

    # A rerun resumes: every stage is recorded, nothing is practised or trained again.
    again = learn(settings, config, consolidate_config=cconfig)
    assert again["rounds"] == report["rounds"]
    assert len(read_stored_episodes(settings)[0]) == len(episodes)
    result = CliRunner().invoke(app, ["learn", "--report"])
    assert result.exit_code == 0, result.output
    assert "arithmetic" in result.output and "v0001" in result.output
