"""Where other parts of stackmind plug into consolidation: four small hooks.

- ``examples(settings, since) -> Iterable[Episode | dict]``: hindsight labels and conclusions made
  since the last consolidation (``since`` is None on the first run), e.g.
  ``stackmind.value.consolidation_examples``.
- ``retrain_value(settings) -> dict``: retrain the value model in the same run; its metrics go in the
  report (a ``"calibration": {"predicted": [...], "observed": [...]}`` entry is drawn as a
  reliability curve), e.g. ``stackmind.value.retrain_for_consolidation``.
- ``checks``: named gate checks ``check(llm) -> score in [0, 1]`` (the Game of 24 slice, the learning
  policies' held-out examples, a family's dev goals); ``margins`` gives a check its own tolerance
  (a family of 5 dev goals: one goal, 0.2) where the config's ``gate_margin`` is too fine for it;
- ``llm_for(adapter_dir | None) -> LLM``: the model the checks run on, with a peft adapter (or none:
  the base model); default the transformers backend (`gate.evaluate`). The command line passes the
  llama.cpp backend with the adapter converted to GGUF, the one the agent runs on, and faster.

Consolidation sits below the parts that plug in: the caller wires them, by import
(`stackmind.learning.hooks.learning_hooks`, which the command line passes). A missing hook is
recorded in the report as skipped, with why; tests pass their own `Hooks`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from stackmind.consolidate.gate import GateCheck, LLMFor
from stackmind.settings import Settings
from stackmind.trace import Episode

ExamplesHook = Callable[[Settings, dt.datetime | None], Iterable[Episode | dict[str, Any]]]
ValueHook = Callable[[Settings], dict[str, Any]]


@dataclass
class Hooks:
    examples: ExamplesHook | None = None
    retrain_value: ValueHook | None = None
    checks: dict[str, GateCheck] = field(default_factory=dict)
    margins: dict[str, float] = field(default_factory=dict)  # check name -> its tolerance
    llm_for: LLMFor | None = None
    missing: dict[str, str] = field(default_factory=dict)  # hook -> why it is not there
