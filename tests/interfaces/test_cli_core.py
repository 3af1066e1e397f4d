"""`stackmind run`, `status` and `stack show` as a person runs them: real processes, real model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stackmind.trace import Episode

STACKMIND = [sys.executable, "-m", "stackmind.interfaces.cli"]


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*STACKMIND, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"stackmind {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


@pytest.mark.slow
def test_run_then_status_and_stack_show() -> None:
    proc = cli("run", "What is 17 * 23? Answer with the number.", "--json")
    result = json.loads(proc.stdout)
    assert result["answer"] and result["steps"] >= 1
    assert result["usage"]["calls"] >= 1 and result["usage"]["completion_tokens"] > 0
    episode = Episode.load(result["episode"])
    assert episode.goal.startswith("What is 17 * 23") and episode.answer == result["answer"]
    assert episode.steps[0].view and "[goal] What is 17 * 23" in episode.steps[0].view

    status = json.loads(cli("status", "--json").stdout)
    assert status["stacks"] == {result["stack"]: len(json.loads(cli("stack", "show", result["stack"], "--json").stdout)["frames"])}
    assert status["episodes"] == 1 and status["embedded_model_cached"] is True

    plain = cli("stack", "show").stdout
    # One line a frame, kind in its own column (not the render's "[goal] ..." markup).
    assert re.search(r"(?m)^\s*#\d+\s+goal\s+v=1\.00\s+\d+ tok\s+What is 17 \* 23", plain), plain


def test_status_on_an_empty_home() -> None:
    out = cli("status").stdout
    assert "stacks     0" in out and "backend    llamacpp" in out


def test_stack_show_errors_are_actionable() -> None:
    proc = cli("stack", "show", "nope", check=False)
    assert proc.returncode == 1 and "stackmind run" in proc.stderr and "Traceback" not in proc.stderr


def test_openai_backend_down_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STACKMIND_BACKEND", "openai")
    monkeypatch.setenv("STACKMIND_OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("STACKMIND_OPENAI_RETRIES", "0")
    proc = cli("run", "hello", check=False)
    assert proc.returncode == 1 and "did not answer" in proc.stderr and "Traceback" not in proc.stderr
