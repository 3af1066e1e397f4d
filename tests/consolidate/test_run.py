from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import stackmind.interfaces.cli_consolidate  # noqa: F401
from stackmind.consolidate import AdapterRegistry, ConsolidateConfig, Hooks, consolidate, consolidate_dir
from stackmind.interfaces._app import app
from stackmind.settings import Settings

runner = CliRunner()


def test_dry_run_shows_the_dataset_and_writes_nothing(settings: Settings, policies_dir: Path, write_episode,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKMIND_CONSOLIDATE_HELDOUT_FRACTION", "0")
    write_episode(settings.episodes_dir, "What is 6 * 7?", 1.0)
    write_episode(settings.episodes_dir, "What is 6 * 9?", 0.0)
    res = runner.invoke(app, ["consolidate", "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)
    assert plan["dataset"]["new_policy"] == 2 and plan["dataset"]["new_episode"] == 1
    assert plan["would_run"] is True
    assert plan["init"] == "fresh adapter, rank 16"
    assert plan["value_model"] == "retrain" and plan["hindsight"] == "hook"
    assert not consolidate_dir(settings).exists()
    res = runner.invoke(app, ["consolidate", "--dry-run"])
    assert res.exit_code == 0 and "would run: yes" in res.stdout and "secret_word" in res.stdout


def test_nothing_new_finishes_without_training(settings: Settings) -> None:
    config = ConsolidateConfig(policies_dirs=[], traces_dirs=[])
    record = consolidate(settings, config, hooks=Hooks())
    assert record["outcome"] == "nothing new to learn"
    assert AdapterRegistry.of(settings).versions() == []
    assert Path(record["report"]).is_file()


def test_rank_must_be_one_vllm_serves(settings: Settings) -> None:
    res = runner.invoke(app, ["consolidate", "--dry-run", "--rank", "12"])
    assert res.exit_code == 1 and "rank 12 is not one vLLM serves" in res.output


class Killed(RuntimeError):
    pass


@pytest.mark.slow
def test_real_consolidation_is_resumable_promotes_and_changes_the_output(
    settings: Settings, config: ConsolidateConfig, write_episode, tmp_path: Path, embedded_llm: Any,
) -> None:
    """A few LoRA steps on the embedded model: killed after training, resumed, gated, promoted,
    converted for llama.cpp, loaded by the default backend, and the model now answers a training prompt
    differently."""
    from stackmind.consolidate import step_examples, step_format
    from stackmind.llm import load_llm

    ep = write_episode(settings.episodes_dir, "What is the secret word of the tower?", 1.0, answer="zanzibar",
                       steps=[])
    config = config.model_copy(update={
        "max_steps": 3, "batch_size": 1, "learning_rate": 3e-3, "rank": 8, "max_length": 640, "save_steps": 1,
        "exact_match_examples": 1, "exact_match_max_tokens": 8})

    def killed(_settings: Settings) -> dict[str, Any]:
        raise Killed("the process died here")

    with pytest.raises(Killed):
        consolidate(settings, config, hooks=Hooks(retrain_value=killed))
    registry = AdapterRegistry.of(settings)
    assert registry.current() is None  # a kill leaves the served adapter as it was
    (run_dir,) = (consolidate_dir(settings) / "runs").iterdir()
    first = json.loads((run_dir / "run.json").read_text())
    assert first["stage"] == "trained" and first["train"]["steps"] == 3

    calibration = {"brier": 0.1, "calibration": {"predicted": [0.2, 0.8], "observed": [0.25, 0.7]}}
    record = consolidate(settings, config, resume=True, hooks=Hooks(retrain_value=lambda s: calibration))
    assert record["run"] == run_dir.name and any("resumed" in n for n in record["notes"])
    assert record["train"] == first["train"]  # not trained again
    gate = record["gate"]
    assert gate["verification"]["changes_output"] and gate["verification"]["max_diff_to_trained"] < 1e-3
    assert gate["candidate"]["loss"] < gate["current"]["loss"], gate
    assert record["outcome"] == "promoted v0001", record
    assert registry.current().name == "v0001"
    assert registry.get("v0001").meta["gate"]["passed"] is True
    for png in ("loss.png", "eval.png", "calibration.png"):
        assert (run_dir / png).is_file()

    # The default (llama.cpp) backend loads the promoted adapter's GGUF, and it changed what the model says.
    assert registry.get("v0001").meta["gguf"] == "adapter.gguf"
    adapted = load_llm(settings)
    assert adapted.backend.adapters()["current"] == str((settings.adapters_dir / "v0001" / "adapter.gguf").resolve())
    prompt = step_examples(ep, step_format(settings, ep), "episode")[0].messages[:-1]
    before = embedded_llm.generate([prompt], max_tokens=8, temperature=0.0).first[0]
    after = adapted.generate([prompt], max_tokens=8, temperature=0.0).first[0]
    assert after != before
    # it learned from the training data (its answer form, or the answer itself)
    assert "final answer" in after.lower() or "zanzibar" in after.lower(), (before, after)

    # Learned examples are not new any more: the next night has nothing to do.
    again = consolidate(settings, config, hooks=Hooks())
    assert again["outcome"] == "nothing new to learn"
    # Nothing was written outside the data dir (the test's cwd is tmp_path).
    assert {p.name for p in tmp_path.iterdir()} <= {"home", "policies", "traces"}
