"""Calibration and ranking of predicted values against achieved returns: Brier, ECE, AUC, a picture.

Targets may be fractional (Monte-Carlo labels); AUC and the reliability diagram read a target of at
least 0.5 as a success. AUC is the Mann-Whitney statistic with ties counted half, and its standard
error is Hanley & McNeil's, which `stackmind.value.select` uses to decide whether a measured AUC is
trustworthy on the held-out set it was measured on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


def brier(y: Sequence[float], p: Sequence[float]) -> float:
    y_, p_ = np.asarray(y, float), np.asarray(p, float)
    return float(np.mean((p_ - y_) ** 2)) if len(y_) else float("nan")


def reliability(y: Sequence[float], p: Sequence[float], bins: int = 10) -> tuple[list[float], list[float], list[int]]:
    """Per non-empty probability bin: the mean prediction, the mean outcome and the count."""
    y_, p_ = np.asarray(y, float), np.asarray(p, float)
    idx = np.minimum((p_ * bins).astype(int), bins - 1)
    predicted, observed, counts = [], [], []
    for b in range(bins):
        m = idx == b
        if m.any():
            predicted.append(float(p_[m].mean()))
            observed.append(float(y_[m].mean()))
            counts.append(int(m.sum()))
    return predicted, observed, counts


def ece(y: Sequence[float], p: Sequence[float], bins: int = 10) -> float:
    """Expected calibration error: the count-weighted gap between mean prediction and mean outcome per bin."""
    if not len(y):
        return float("nan")
    predicted, observed, counts = reliability(y, p, bins)
    return float(sum(n * abs(a - b) for a, b, n in zip(predicted, observed, counts, strict=True)) / len(y))


def auc(y: Sequence[float], p: Sequence[float]) -> float:
    """Probability that a success is ranked above a failure (ties half); nan with one class only."""
    y_ = np.asarray(y, float) >= 0.5
    p_ = np.asarray(p, float)
    pos, neg = int(y_.sum()), int((~y_).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(p_, kind="mergesort")
    ranks = np.empty(len(p_), float)
    sorted_p = p_[order]
    i = 0
    while i < len(p_):  # average ranks over ties
        j = i
        while j + 1 < len(p_) and sorted_p[j + 1] == sorted_p[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y_].sum() - pos * (pos + 1) / 2) / (pos * neg))


def auc_stderr(a: float, pos: int, neg: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUC measured on ``pos`` successes and ``neg`` failures."""
    if pos == 0 or neg == 0 or math.isnan(a):
        return float("inf")
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (pos - 1) * (q1 - a * a) + (neg - 1) * (q2 - a * a)) / (pos * neg)
    return math.sqrt(max(var, 0.0))


@dataclass
class Calibration:
    n: int
    positives: int
    brier: float
    brier_base: float  # Brier of always predicting the held-out base rate (what "no skill" scores)
    ece: float
    auc: float
    auc_stderr: float
    mean_predicted: float
    mean_target: float

    @property
    def brier_skill(self) -> float:
        """1 - brier / brier_base: above 0 when the predictions beat the base rate."""
        return 1 - self.brier / self.brier_base if self.brier_base > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        d = {k: (round(v, 4) if isinstance(v, float) and not math.isnan(v) and not math.isinf(v) else v)
             for k, v in asdict(self).items()}
        d["brier_skill"] = round(self.brier_skill, 4) if not math.isnan(self.brier_skill) else None
        return {k: (None if isinstance(v, float) and (math.isnan(v) or math.isinf(v)) else v) for k, v in d.items()}


def calibration(y: Sequence[float], p: Sequence[float], bins: int = 10) -> Calibration:
    y_, p_ = np.asarray(y, float), np.asarray(p, float)
    pos = int((y_ >= 0.5).sum())
    a = auc(y_, p_)
    base = float(y_.mean()) if len(y_) else float("nan")
    return Calibration(
        n=len(y_), positives=pos, brier=brier(y_, p_), brier_base=brier(y_, np.full(len(y_), base)),
        ece=ece(y_, p_, bins), auc=a, auc_stderr=auc_stderr(a, pos, len(y_) - pos),
        mean_predicted=float(p_.mean()) if len(p_) else float("nan"), mean_target=base,
    )


def reliability_diagram(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: Path,
                        bins: int = 10, title: str = "Reliability") -> Path:
    """A PNG with one reliability curve per series (name -> (targets, predictions)) and their counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hx) = plt.subplots(2, 1, figsize=(5.5, 6.5), height_ratios=(3, 1), sharex=True)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect")
    edges = np.linspace(0, 1, bins + 1)
    for name, (y, p) in series.items():
        y_, p_ = np.asarray(y, float), np.asarray(p, float)
        xs, ys, _ = reliability(y_, p_, bins)
        c = calibration(y_, p_, bins)
        ax.plot(xs, ys, marker="o", label=f"{name} (Brier {c.brier:.3f}, ECE {c.ece:.3f}, AUC {c.auc:.3f})")
        hx.hist(p_, bins=edges, alpha=0.5, label=name)
    ax.set_ylabel("achieved (fraction reaching reward)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    hx.set_xlabel("predicted value")
    hx.set_ylabel("count")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
