"""SIGKILL of a real `stackmind consolidate` at several moments, then integrity, status and the next run.

A tiny configuration trains the embedded model for two LoRA steps (as tests/consolidate do). The run
is killed while it starts, while it trains (a checkpoint on disk) and after training (the value model
and the gate); after each kill the data dir must be whole (every file reads, nothing promoted, no
half version), the lock free and the commands working. Then `--resume` finishes it and the next
night has nothing new to learn. From the state after training, two more cases: a resume whose base
adapter is no longer current is refused, and a gate with nothing held out does not promote.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Cases, env_for, finish, kill, one_error_line, stackmind, start

pytestmark = pytest.mark.slow  # trains the embedded model: minutes on two cores

POLICY = """\
name: secret_word
description: Answer questions about the secret word.
examples:
  - goal: What is the secret word of the lighthouse?
    response: "Final answer: zanzibar"
  - goal: Tell me the secret word of the harbour.
    response: "Final answer: zanzibar"
  - goal: Which secret word opens the harbour gate?
    response: "Final answer: zanzibar"
    split: heldout
training:
  slow: {weight: 1}
"""
TINY = {
    "STACKMIND_CONSOLIDATE_MAX_STEPS": "2", "STACKMIND_CONSOLIDATE_BATCH_SIZE": "1",
    "STACKMIND_CONSOLIDATE_RANK": "8", "STACKMIND_CONSOLIDATE_MAX_LENGTH": "640",
    "STACKMIND_CONSOLIDATE_SAVE_STEPS": "1", "STACKMIND_CONSOLIDATE_EXACT_MATCH_EXAMPLES": "0",
    "STACKMIND_CONSOLIDATE_LEARNING_RATE": "3e-3", "STACKMIND_CONSOLIDATE_HELDOUT_FRACTION": "0",
    "STACKMIND_MEMORY": "0",
}


def _runs(home: Path) -> list[Path]:
    root = home / "consolidate" / "runs"
    return sorted(root.iterdir()) if root.is_dir() else []


def _record(home: Path) -> dict:
    runs = _runs(home)
    path = runs[-1] / "run.json" if runs else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else {}


def _kill_when(args: list[str], env: dict[str, str], cwd: Path, ready: Callable[[], bool], timeout: float) -> str:
    """Start consolidate, SIGKILL it once `ready()` holds; what it printed."""
    proc = start(args, env, cwd)
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            ran = finish(proc, 10)
            raise AssertionError(f"consolidate ended before the moment to kill it (rc {ran.rc}):\n{ran.stderr[-3000:]}")
        if time.monotonic() > deadline:
            kill(proc)
            raise AssertionError("the moment to kill consolidate never came")
        time.sleep(0.1)
    return kill(proc).stderr


def _whole(home: Path, work: Path, env: dict[str, str]) -> None:
    """After a kill: every file reads, nothing promoted, no half version, the lock free."""
    for run in _runs(home):
        json.loads((run / "run.json").read_text())
    adapters = home / "adapters"
    if adapters.is_dir():
        assert not (adapters / "current").exists()
        for v in adapters.glob("v[0-9]*"):
            assert (v / "adapter_config.json").is_file(), v
    ran = stackmind(["status", "--json"], env, work)
    assert ran.rc == 0, ran.output
    ran = stackmind(["adapters", "list", "--json"], env, work)
    assert ran.rc == 0 and json.loads(ran.stdout)["current"] is None, ran.output
    ran = stackmind(["adapters", "rollback"], env, work)  # takes the lock: free, or it would exit 75
    assert ran.rc == 1 and "nothing to roll back" in ran.stderr, ran.output
    ran = stackmind(["consolidate", "--dry-run", "--json"], env, work)
    assert ran.rc == 0 and json.loads(ran.stdout)["would_run"] is True, ran.output


@pytest.fixture(scope="module")
def after_training(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Kill a consolidation while it starts and while it trains (checking the data dir after each),
    resume it and kill it after training: the state a later test restores."""
    base = tmp_path_factory.mktemp("killed")
    home, work = base / "home", base / "work"
    (work / "policies").mkdir(parents=True)
    (work / "policies" / "secret_word.policy.yaml").write_text(POLICY)
    episodes = home / "episodes"
    episodes.mkdir(parents=True)
    (episodes / "tower.trace.yaml").write_text(
        "goal: What is the secret word of the tower?\nreward: 1.0\nanswer: zanzibar\n")
    (episodes / "hostile.trace.yaml").write_text("goal: g\nmeta: {weight: 100000000000}\nreward: 1.0\nanswer: x\n")
    env = env_for(home, **TINY)
    moments = []

    _kill_when(["consolidate"], env, work, lambda: _record(home).get("stage") == "started", 120)
    moments.append("while starting")
    _whole(home, work, env)

    def checkpoint() -> bool:
        runs = _runs(home)
        return bool(runs) and any((c / "trainer_state.json").is_file() for c in (runs[-1] / "trainer").glob("checkpoint-*"))

    _kill_when(["consolidate", "--resume"], env, work, checkpoint, 400)
    moments.append("while training, after a checkpoint")
    _whole(home, work, env)

    _kill_when(["consolidate", "--resume"], env, work, lambda: _record(home).get("stage") == "trained", 400)
    moments.append("after training (value model, gate)")
    _whole(home, work, env)
    assert len(_runs(home)) == 1  # every resume continued the one run
    snapshot = base / "snapshot"
    shutil.copytree(home, snapshot, symlinks=True)
    return {"home": home, "work": work, "env": env, "snapshot": snapshot, "moments": moments}


def _restore(state: dict) -> None:
    shutil.rmtree(state["home"])
    shutil.copytree(state["snapshot"], state["home"], symlinks=True)


@pytest.mark.control("kill -9 of consolidate")  # kills held at a9429b1 (issue 20); the skipped file is new
def test_killed_three_times_then_resumed_it_promotes_and_the_next_night_is_quiet(after_training: dict,
                                                                                 cases: Cases) -> None:
    for moment in after_training["moments"]:
        cases.tried(moment)  # checked in the fixture: it got here
    _restore(after_training)
    work, env = after_training["work"], after_training["env"]
    cases.tried("resume to the end")
    ran = stackmind(["consolidate", "--resume", "--json"], env, work, timeout=600)
    assert ran.rc == 0, ran.output[-3000:]
    record = json.loads(ran.stdout)
    assert record["outcome"] == "promoted v0001", record
    assert record["train"]["steps"] == 2 and sum("resumed" in n for n in record["notes"]) == 3
    report = Path(record["report"]).read_text()
    assert "## Files skipped" in report and "hostile.trace.yaml:2:16: meta.weight" in report
    cases.tried("status and adapters after it")
    ran = stackmind(["adapters", "list", "--json"], env, work)
    assert ran.rc == 0 and json.loads(ran.stdout)["current"] == "v0001"
    cases.tried("the next run")
    ran = stackmind(["consolidate", "--json"], env, work, timeout=300)
    assert ran.rc == 0 and json.loads(ran.stdout)["outcome"] == "nothing new to learn", ran.output[-2000:]
    assert "did not finish" not in ran.stderr


@pytest.mark.fault("stale resume / empty gate")
def test_a_resume_whose_base_is_no_longer_current_is_refused(after_training: dict) -> None:
    """The issue's case: a fresh run promoted another adapter meanwhile; resuming must not promote
    a candidate trained on the old base."""
    from stackmind.consolidate.registry import AdapterRegistry

    _restore(after_training)
    home, work, env = after_training["home"], after_training["work"], after_training["env"]
    run = _runs(home)[-1]
    AdapterRegistry(home / "adapters").register(run / "candidate", {"parent": None, "rank": 8, "run": "elsewhere"})
    assert stackmind(["adapters", "promote", "v0001"], env, work).rc == 0
    line = one_error_line(stackmind(["consolidate", "--resume"], env, work, timeout=300))
    assert f"cannot resume run {run.name}" in line and "v0001 is current now" in line, line
    assert "stackmind consolidate" in line
    assert json.loads((run / "run.json").read_text())["outcome"].startswith("abandoned")
    assert [v.name for v in AdapterRegistry(home / "adapters").versions()] == ["v0001"]  # nothing new
    ran = stackmind(["consolidate", "--dry-run"], env, work)
    assert ran.rc == 0 and "--resume continues" not in ran.output


@pytest.mark.fault("stale resume / empty gate")
def test_a_gate_with_nothing_held_out_does_not_promote(after_training: dict) -> None:
    _restore(after_training)
    home, work, env = after_training["home"], after_training["work"], after_training["env"]
    (_runs(home)[-1] / "dataset" / "heldout.jsonl").write_text("")  # the frozen split: nothing held out
    ran = stackmind(["consolidate", "--resume", "--json"], env, work, timeout=300)
    assert ran.rc == 0, ran.output[-3000:]
    record = json.loads(ran.stdout)
    assert not record["gate"]["passed"] and "nothing held out" in record["gate"]["reasons"][0]
    assert record["outcome"] == "kept the base model: v0001 did not pass the gate", record["outcome"]
    assert not (home / "adapters" / "current").exists()
