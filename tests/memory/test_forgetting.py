from __future__ import annotations

import pytest

from stackmind.memory import DecayPolicy, RecallRanking
from stackmind.memory.forgetting import DAY

NOW = 1_700_000_000.0


def test_recency_halves_every_half_life() -> None:
    p = DecayPolicy(half_life_days=10)
    assert p.recency(NOW, NOW) == 1.0
    assert p.recency(NOW - 10 * DAY, NOW) == pytest.approx(0.5)
    assert p.recency(NOW - 30 * DAY, NOW) == pytest.approx(0.125)
    assert p.recency(NOW + DAY, NOW) == 1.0  # a clock skew never makes a memory fresher than new


def test_retention_is_value_times_recency_times_use() -> None:
    p = DecayPolicy(half_life_days=10, use_weight=1.0)
    base = p.retention(0.8, 0, NOW - 10 * DAY, NOW)
    assert base == pytest.approx(0.4)
    assert p.retention(0.8, 3, NOW - 10 * DAY, NOW) > base  # use keeps a memory alive
    assert p.retention(0.4, 0, NOW - 10 * DAY, NOW) == pytest.approx(base / 2)
    assert p.retention(7.0, 0, NOW, NOW) == 1.0 and p.retention(-2.0, 0, NOW, NOW) == 0.0  # clamped


def test_forgetting_spares_the_young_and_the_valuable() -> None:
    p = DecayPolicy(half_life_days=30, threshold=0.05, grace_days=1)
    assert not p.should_forget(0.01, 0, created=NOW - 3600, last_used=NOW - 3600, now=NOW)  # in grace
    assert p.should_forget(0.01, 0, created=NOW - 2 * DAY, last_used=NOW - 2 * DAY, now=NOW)
    old = NOW - 60 * DAY  # recency 0.25
    assert p.should_forget(0.1, 0, old, old, NOW)
    assert not p.should_forget(0.9, 0, old, old, NOW)
    assert not p.should_forget(0.15, 20, old, old, NOW)  # 0.0375 x 2.52: often used, kept


def test_ranking_lets_value_break_near_ties_only() -> None:
    r = RecallRanking(value_weight=0.2, recency_weight=0.0)
    assert r.score(0.60, 1.0, 1.0) > r.score(0.62, 0.1, 1.0)
    assert r.score(0.60, 1.0, 1.0) < r.score(0.90, 0.0, 1.0)
    assert r.fetch(2) == 20 and r.fetch(10) == 40
