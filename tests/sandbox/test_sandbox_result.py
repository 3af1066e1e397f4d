"""Outcomes, observations and the behaviour trace's entropy."""

from __future__ import annotations

import math

import pytest

from stackmind.sandbox import BehaviourTrace, Limits, RunResult, shannon_entropy


@pytest.mark.parametrize(("counts", "bits"), [
    ({}, 0.0),
    ({"a": 5}, 0.0),
    ({"a": 1, "b": 1}, 1.0),
    ({"a": 1, "b": 1, "c": 1, "d": 1}, 2.0),
    ({"a": 3, "b": 1}, -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))),
])
def test_shannon_entropy(counts: dict[str, int], bits: float) -> None:
    assert shannon_entropy(counts) == pytest.approx(bits)


def test_trace_counts_and_dict() -> None:
    t = BehaviourTrace()
    t.add("wasi:fd_write")
    t.add("wasi:fd_write")
    t.add("export:f:ok")
    assert t.total == 3
    assert t.to_dict()["counts"] == {"export:f:ok": 1, "wasi:fd_write": 2}
    assert 0.9 < t.entropy < 0.92


def test_observation_says_how_a_run_ended_and_cuts_long_output() -> None:
    r = RunResult("timeout", stdout="x" * 10_000, detail="deadline of 1 s", wall_s=1.0)
    text = r.observation(max_chars=500)
    assert len(text) < 600 and "characters cut" in text and "timeout" in text
    assert RunResult("ok", stdout="391\n").observation() == "391"


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        Limits(deadline_s=0)
    with pytest.raises(ValueError):
        Limits(memory_bytes=1)
    with pytest.raises(ValueError):
        Limits(bogus=1)  # type: ignore[call-arg]
