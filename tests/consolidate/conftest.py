"""Helpers for consolidation tests: tiny episodes and policies written into a test's folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackmind.consolidate import ConsolidateConfig
from stackmind.trace import Episode, Step

SECRET_POLICY = """\
name: secret_word
description: Answer questions about the secret word.
examples:
  - goal: What is the secret word of the lighthouse?
    response: "Final answer: zanzibar"
    answer: zanzibar
  - goal: Tell me the secret word of the harbour.
    response: "Final answer: zanzibar"
    answer: zanzibar
  - goal: Which secret word opens the harbour gate?
    response: "Final answer: zanzibar"
    answer: zanzibar
    match: {kind: contains}
    split: heldout
training:
  slow: {weight: 2}
"""


def _write_episode(directory: Path, goal: str, reward: float | None, answer: str = "42", kind: str = "episode",
                  steps: list[Step] | None = None) -> Episode:
    ep = Episode(goal=goal, answer=answer, reward=reward, kind=kind,
                 steps=steps if steps is not None else [Step(thought=f"Final answer: {answer}")])
    ep.save(directory)
    return ep


@pytest.fixture
def write_episode():  # noqa: ANN201
    """Write a small episode into a folder: ``write_episode(dir, goal, reward, ...)``."""
    return _write_episode


@pytest.fixture
def policies_dir(tmp_path: Path) -> Path:
    d = tmp_path / "policies"
    d.mkdir()
    (d / "secret_word.policy.yaml").write_text(SECRET_POLICY)
    return d


@pytest.fixture
def config(policies_dir: Path, tmp_path: Path) -> ConsolidateConfig:
    return ConsolidateConfig(policies_dirs=[policies_dir], traces_dirs=[tmp_path / "traces"], heldout_fraction=0.0)
