"""Where other parts of stackmind plug into consolidation: four small hooks.

- ``examples(settings, since) -> Iterable[Episode | dict]``: hindsight labels and conclusions made
  since the last consolidation (``since`` is None on the first run). Looked up as
  ``stackmind.value.consolidation_examples``.
- ``retrain_value(settings) -> dict``: retrain the value model in the same run; its metrics go in the
  report (a ``"calibration": {"predicted": [...], "observed": [...]}`` entry is drawn as a
  reliability curve). Looked up as ``stackmind.value.retrain_for_consolidation``.
- ``checks``: named gate checks ``check(llm) -> score in [0, 1]``; the Game of 24 slice is added
  when ``game24_csv`` is configured, and any ``stackmind.policies.consolidation_checks(settings)``
  (a dict of checks) is merged in.

A missing hook is recorded in the report as skipped, with why; tests pass their own `Hooks`.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from stackmind.consolidate.config import ConsolidateConfig
from stackmind.consolidate.gate import GateCheck, game24_check
from stackmind.settings import Settings
from stackmind.trace import Episode

ExamplesHook = Callable[[Settings, dt.datetime | None], Iterable[Episode | dict[str, Any]]]
ValueHook = Callable[[Settings], dict[str, Any]]


@dataclass
class Hooks:
    examples: ExamplesHook | None = None
    retrain_value: ValueHook | None = None
    checks: dict[str, GateCheck] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # hook -> why it is not there


def discover(settings: Settings, config: ConsolidateConfig) -> Hooks:
    """The hooks the installed parts of stackmind provide."""
    hooks = Hooks()
    hooks.examples = _find("stackmind.value", "consolidation_examples", hooks.missing, "hindsight examples")
    hooks.retrain_value = _find("stackmind.value", "retrain_for_consolidation", hooks.missing, "value model")
    if config.game24_csv is not None:
        try:
            hooks.checks["game24"] = game24_check(config.game24_csv, config.game24_range)
        except Exception as e:  # a missing puzzle file must not stop consolidation
            hooks.missing["game24"] = f"{type(e).__name__}: {e}"
    else:
        hooks.missing["game24"] = "no puzzle file configured (STACKMIND_CONSOLIDATE_GAME24_CSV)"
    policy_checks = _find("stackmind.learning.hooks", "consolidation_checks", hooks.missing, "policy tests")
    if policy_checks is not None:
        hooks.checks.update(policy_checks(settings))
    return hooks


def _find(module: str, name: str, missing: dict[str, str], what: str) -> Any:
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        missing[what] = f"{module} cannot be imported ({e})"
        return None
    fn = getattr(mod, name, None)
    if fn is None:
        missing[what] = f"{module}.{name} does not exist yet"
    return fn
