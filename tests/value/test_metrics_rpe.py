"""Calibration metrics against brute force, and the prioritized replay buffer."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from stackmind.value.labels import Label
from stackmind.value.metrics import auc, brier, calibration, ece, reliability_diagram
from stackmind.value.rpe import ReplayBuffer, load_rpe, record_rpe, rpe_records
from stackmind.value.select import trust


def _pairwise_auc(y: list[float], p: list[float]) -> float:
    pairs = [(a, b) for (a, ya), (b, yb) in itertools.product(zip(p, y, strict=True), repeat=2) if ya and not yb]
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)


def test_auc_matches_pairwise_count_with_ties() -> None:
    rng = random.Random(3)
    y = [float(rng.random() < 0.3) for _ in range(60)]
    p = [round(rng.random(), 1) for _ in range(60)]  # many ties
    assert auc(y, p) == pytest.approx(_pairwise_auc(y, p))
    assert np.isnan(auc([1, 1], [0.2, 0.3]))


def test_brier_and_ece() -> None:
    assert brier([1, 0], [0.8, 0.4]) == pytest.approx((0.04 + 0.16) / 2)
    # Two bins: predictions 0.1 (outcomes 0,0) and 0.9 (outcomes 1,0): gaps 0.1 and 0.4.
    assert ece([0, 0, 1, 0], [0.1, 0.1, 0.9, 0.9], bins=10) == pytest.approx((2 * 0.1 + 2 * 0.4) / 4)
    c = calibration([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert c.auc == 1.0 and c.brier_skill > 0.5 and c.positives == 2


def test_trust_is_a_measured_switch() -> None:
    good = calibration([0] * 150 + [1] * 50, [0.05] * 150 + [0.95] * 50).to_dict()
    ok, why = trust(good)
    assert ok, why
    tiny = calibration([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8]).to_dict()  # perfect, but on four labels
    assert not trust(tiny)[0]
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(float)
    noise = calibration(y, rng.random(400)).to_dict()  # many labels, no skill
    assert not trust(noise)[0]
    overconfident = calibration([0] * 150 + [1] * 50, [0.45] * 150 + [1.0] * 50).to_dict()
    assert not trust(overconfident)[0]


def test_reliability_png(tmp_path) -> None:  # noqa: ANN001
    path = reliability_diagram({"m": ([0, 1, 1, 0], [0.2, 0.7, 0.9, 0.4])}, tmp_path / "r.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _lab(i: int, predicted: float | None, target: float) -> Label:
    return Label(goal=f"g{i}", stack=[], thought=f"t{i}", target=target, kind="return_to_go", source="tests",
                 predicted=predicted, node=i)


def test_replay_samples_high_rpe_first() -> None:
    labels = [_lab(i, 0.5, 0.5) for i in range(50)] + [_lab(100 + i, 0.0, 1.0) for i in range(5)]
    buf = ReplayBuffer(labels, eps=0.01)
    firsts = [buf.sample(5, random.Random(s)) for s in range(20)]
    surprising = sum(lab.node >= 100 for draw in firsts for lab in draw)
    assert surprising >= 0.8 * 100  # 5 of 55 items, yet most of every draw
    draw = buf.sample(55, random.Random(1))
    assert len({lab.node for lab in draw}) == 55  # no repeats


def test_rpe_records_round_trip(settings) -> None:  # noqa: ANN001
    labels = [_lab(1, 0.2, 1.0), _lab(2, None, 1.0), _lab(3, 0.9, 0.0)]
    recs = rpe_records(labels, scorer="llm-judge")
    assert [round(r.rpe, 3) for r in recs] == [0.8, -0.9]
    record_rpe(settings, recs)
    back = load_rpe(settings)
    assert [(r.node, r.predicted, r.achieved) for r in back] == [(1, 0.2, 1.0), (3, 0.9, 0.0)]
    assert len(load_rpe(settings, last=1)) == 1
