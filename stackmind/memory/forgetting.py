"""How memories fade and how recall ranks them: pure functions of a memory's metadata.

A memory's *retention* is ``value x recency x use``:

- ``value`` is the frame's learned value, clamped to [0, 1];
- ``recency`` halves every ``half_life_days`` since the memory was last used (stored or recalled);
- ``use`` grows with how often it was recalled: ``1 + use_weight * ln(1 + uses)``.

`Memory.forget` writes every memory's retention back (a fading memory ranks lower) and drops from
the index those below ``threshold`` once they are older than ``grace_days``; the trace log keeps
them. Recall ranks candidates by similarity plus weighted value and recency (`RecallRanking`).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

DAY = 86400.0


class DecayPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    half_life_days: float = Field(30.0, gt=0)
    threshold: float = Field(0.05, ge=0)
    grace_days: float = Field(1.0, ge=0)  # never forget something younger than this
    use_weight: float = Field(0.5, ge=0)

    def recency(self, last_used: float, now: float) -> float:
        age = max(0.0, now - last_used)
        return 0.5 ** (age / (self.half_life_days * DAY))

    def use_factor(self, uses: int) -> float:
        return 1.0 + self.use_weight * math.log1p(max(0, uses))

    def retention(self, value: float, uses: int, last_used: float, now: float) -> float:
        return min(1.0, max(0.0, value)) * self.recency(last_used, now) * self.use_factor(uses)

    def should_forget(self, value: float, uses: int, created: float, last_used: float, now: float) -> bool:
        if now - created < self.grace_days * DAY:
            return False
        return self.retention(value, uses, last_used, now) < self.threshold


class RecallRanking(BaseModel):
    """``score = similarity + value_weight * value + recency_weight * recency``.

    Similarity (cosine, about 0.1 to 0.9 for MiniLM) dominates; value and recency break near-ties
    and lift what proved useful. ``candidates`` x k nearest neighbours are fetched and re-ranked.
    """

    model_config = ConfigDict(frozen=True)

    value_weight: float = Field(0.2, ge=0)
    recency_weight: float = Field(0.05, ge=0)
    candidates: int = Field(4, ge=1)
    min_candidates: int = Field(20, ge=1)

    def score(self, similarity: float, value: float, recency: float) -> float:
        return similarity + self.value_weight * min(1.0, max(0.0, value)) + self.recency_weight * recency

    def fetch(self, k: int) -> int:
        return max(k * self.candidates, self.min_candidates)
