"""SIGKILL of a real `stackmind run`, and two runs on one named stack at once.

The model is a scripted OpenAI-compatible server on localhost (step-format replies, each held back a
little), so the moments to kill at are exact: after the first step was saved, and while the second
step's request is in flight. After each kill the episode so far reads back (status ``running``, its
steps), `stackmind status` works, and the next run on the same stack answers on a clean stack: the
killed run's frames are gone and its episode is marked ``interrupted``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from conftest import env_for, finish, kill, stackmind, start

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes.openai_server import ScriptedOpenAI  # noqa: E402

from stackmind.storage import SQLiteStackStore  # noqa: E402
from stackmind.trace import Episode  # noqa: E402

STEPS = ["Thought: I will compute it.\nAction: @python(print(6 * 7))",
         "Thought: The observation is the answer.",
         "Final answer: 42"]
GOAL = "What is 6 * 7? Answer with the number."


def _episodes(home: Path) -> list[Episode]:
    return [Episode.load(p) for p in sorted((home / "episodes").glob("*.trace.yaml"))]


def _env(home: Path, server: ScriptedOpenAI) -> dict[str, str]:
    return env_for(home, STACKMIND_BACKEND="openai", STACKMIND_OPENAI_BASE_URL=server.url,
                   STACKMIND_MEMORY="0", STACKMIND_DEMOS="0",
                   STACKMIND_LEARN="0", STACKMIND_POLICIES="0")


def _wait(what: str, ready, proc, timeout: float = 120) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            ran = finish(proc, 10)
            raise AssertionError(f"the run ended before {what} (rc {ran.rc}):\n{ran.stderr[-3000:]}")
        assert time.monotonic() < deadline, f"{what} never came"
        time.sleep(0.05)


@pytest.mark.fault("kill -9 of run")
@pytest.mark.parametrize("moment", ["after the first step", "while a step is in flight"])
def test_a_killed_run_keeps_its_steps_and_the_next_run_is_clean(tmp_path: Path, moment: str) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    with ScriptedOpenAI(STEPS, delay=0.3) as server:
        env = _env(home, server)
        proc = start(["run", GOAL, "--stack", "shared", "--max-steps", "4"], env, work)
        if moment == "after the first step":
            _wait("the first step on disk", lambda: any(len(e.steps) >= 1 for e in _episodes(home)), proc)
        else:
            _wait("the second request", lambda: len(server.requests) >= 2, proc)
        kill(proc)

        (killed,) = _episodes(home)
        assert killed.meta["status"] == "running" and killed.answer is None
        assert len(killed.steps) >= 1 and killed.steps[0].action == "@python(print(6 * 7))"
        assert killed.steps[0].observation.strip() == "42"  # the step's result was kept with it
        frames = SQLiteStackStore(home / "stackmind.db").frames("shared")
        assert any(f.provenance.get("episode") == killed.id for f in frames)  # what the kill left behind

        status = stackmind(["status", "--json"], env, work)
        assert status.rc == 0, status.stderr
        assert json.loads(status.stdout)["episodes"] == 1

        server.replies = ["Final answer: 42"]
        server.requests.clear()
        again = stackmind(["run", GOAL, "--stack", "shared", "--json"], env, work)
    assert again.rc == 0, again.stderr[-3000:]
    result = json.loads(again.stdout)
    assert result["answer"] == "42"
    assert Episode.load(home / "episodes" / f"{killed.id}.trace.yaml").meta["status"] == "interrupted"
    frames = SQLiteStackStore(home / "stackmind.db").frames("shared")
    assert not any(f.provenance.get("episode") == killed.id for f in frames), "the killed run haunts the stack"
    (prompt,) = [r["messages"] for r in server.requests]
    assert sum("Observation: 42" in m["content"] for m in prompt) == 0  # the killed run's steps are not shown


@pytest.mark.fault("concurrent runs on one stack")
def test_two_runs_on_one_stack_take_turns(tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    goals = ["What is 2 + 2? Answer with the number.", "What is 3 + 3? Answer with the number."]
    with ScriptedOpenAI(["Final answer: 4"], delay=1.0) as server:
        env = _env(home, server)
        procs = [start(["run", g, "--stack", "shared", "--json"], env, work) for g in goals]
        ran = [finish(p, 120) for p in procs]
        prompts = [r["messages"] for r in server.requests]
    assert all(r.rc == 0 for r in ran), [r.stderr[-2000:] for r in ran]
    assert len(prompts) == 2
    for prompt in prompts:
        text = "\n".join(m["content"] for m in prompt)
        current = text.rsplit("Current goal:", 1)[1]
        mine = [g for g in goals if g in current]
        assert len(mine) == 1, current  # each run is prompted with its own goal
        other = next(g for g in goals if g not in mine)
        # the other run's goal is there only as a finished run (goal and conclusion), never as a live one
        assert text.count(other) <= 1
    frames = SQLiteStackStore(home / "stackmind.db").frames("shared")
    assert [f.kind for f in frames] == ["goal", "conclusion", "goal", "conclusion"]
