"""Which scorer the search uses: the learned value model when its held-out measurements earn it, else
the LLM judgement.

The switch is measured, not counted: the current checkpoint's metrics (on goals it never trained
on) must show a ranking that is better than ``min_auc`` with 95% confidence (AUC minus 1.96
Hanley-McNeil standard errors; few held-out labels give a wide interval and fail this), a Brier
score better than predicting the base rate, and an ECE no larger than ``max_ece``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stackmind.llm.base import LLM
from stackmind.search.scorer import LLMJudge, Scorer
from stackmind.settings import Settings
from stackmind.tasks.base import Task
from stackmind.value.model import ValueModel, ValueModelError


@dataclass(frozen=True)
class SwitchCriteria:
    min_auc: float = 0.6
    max_ece: float = 0.1
    min_brier_skill: float = 0.0


def trust(metrics: dict[str, Any], criteria: SwitchCriteria = SwitchCriteria()) -> tuple[bool, str]:
    """Whether held-out metrics earn the learned model the search, and why (or why not)."""
    auc, se = metrics.get("auc"), metrics.get("auc_stderr")
    ece, skill = metrics.get("ece"), metrics.get("brier_skill")
    if auc is None or se is None:
        return False, "no held-out AUC (too few labels, or only one outcome among them)"
    low = auc - 1.96 * se
    if low <= criteria.min_auc:
        return False, f"held-out AUC {auc:.3f} ± {1.96 * se:.3f} is not surely above {criteria.min_auc}"
    if skill is None or skill <= criteria.min_brier_skill:
        return False, f"held-out Brier does not beat the base rate (skill {skill})"
    if ece is None or ece > criteria.max_ece:
        return False, f"held-out ECE {ece} is above {criteria.max_ece}"
    return True, f"held-out AUC {auc:.3f} (95% low {low:.3f}), Brier skill {skill:.3f}, ECE {ece:.3f}"


def choose_scorer(settings: Settings, llm: LLM, task: Task | None = None, *,
                  criteria: SwitchCriteria = SwitchCriteria()) -> tuple[Scorer, str]:
    """The scorer for a search, with the reason it was chosen."""
    try:
        model = ValueModel.load(settings)
    except ValueModelError as e:
        return LLMJudge(llm, task, seed=settings.seed), f"LLM judge: {e}"
    ok, why = trust(model.meta.get("metrics", {}), criteria)
    if ok:
        return model, f"value model {model.version}: {why}"
    return LLMJudge(llm, task, seed=settings.seed), f"LLM judge (value model {model.version} not trusted: {why})"


def default_scorer(settings: Settings, llm: LLM, task: Task | None = None) -> Scorer:
    """The learned value model when measurements earn it, else the LLM judgement."""
    return choose_scorer(settings, llm, task)[0]
