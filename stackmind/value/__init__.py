"""The value model, the hindsight labeller and reward-prediction error.

    model, report = retrain(settings)              # MiniLM + a small torch head, held-out metrics
    scorer = default_scorer(settings, llm, task)   # the model when measurements earn it, else LLMJudge
    after_episode(settings, episode)               # labels, RPEs, an online update with replay
    load_labels(settings)                          # the labelled text consolidation reads
"""

from __future__ import annotations

from stackmind.value.consolidation import consolidation_examples, retrain_for_consolidation
from stackmind.value.hindsight import conclude, label_episode, relabel_game24
from stackmind.value.labels import LABEL_KINDS, Label, LabelError, load_labels, save_labels
from stackmind.value.learn import EpisodeLearning, Reassessment, after_episode, reassess, retrain
from stackmind.value.metrics import Calibration, calibration, reliability_diagram
from stackmind.value.model import (
    Encoder,
    MiniLMEncoder,
    TrainConfig,
    ValueModel,
    ValueModelError,
    current_version,
    split,
    versions,
)
from stackmind.value.rpe import ReplayBuffer, RPERecord, load_rpe
from stackmind.value.select import SwitchCriteria, choose_scorer, default_scorer, trust

__all__ = [
    "LABEL_KINDS", "Calibration", "Encoder", "EpisodeLearning", "Label", "LabelError", "MiniLMEncoder",
    "RPERecord", "Reassessment", "ReplayBuffer", "SwitchCriteria", "TrainConfig", "ValueModel",
    "ValueModelError", "after_episode", "calibration", "choose_scorer", "conclude", "consolidation_examples",
    "current_version", "default_scorer", "label_episode", "load_labels", "load_rpe", "reassess", "relabel_game24",
    "reliability_diagram", "retrain", "retrain_for_consolidation", "save_labels", "split", "trust", "versions",
]
