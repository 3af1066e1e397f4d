"""What the learning package hands to nightly consolidation: the gate's policy check.

`stackmind consolidate` (the command line, above both) wires these into `consolidate.run`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stackmind.consolidate.config import ConsolidateConfig
from stackmind.consolidate.gate import game24_check
from stackmind.consolidate.hooks import Hooks
from stackmind.learning.grounding import AgentTrial, HeldoutTask, final_answer
from stackmind.learning.trials import matches
from stackmind.policies.library import default_policy_dirs, load_lenient
from stackmind.settings import Settings
from stackmind.value import consolidation_examples, retrain_for_consolidation


def consolidation_checks(settings: Settings) -> dict[str, Callable[[Any], float]]:
    """The gate's policy check: every held-out example of the library's policies, run through the
    agent's loop with its policy pushed, scored by its matcher (judge matchers are left out: the gate
    compares two models, and a judge would be one of them)."""
    library, _ = load_lenient(default_policy_dirs(settings.home))
    cases = [(policy, ex, m) for policy in library for ex in policy.examples
             if ex.split == "heldout" and (m := policy.matcher_for(ex)) is not None and m.kind != "judge"]
    if not cases:
        return {}

    def check(llm: Any) -> float:
        ok = 0
        for policy, ex, m in cases:
            pushed, _bare, _tokens = AgentTrial(settings, llm).run([HeldoutTask(ex.prompt(), ex.answer or "",
                                                                              "contains")], policy)
            ok += matches(m, final_answer(pushed[0]), ex.answer, ex.goal)
        return ok / len(cases)

    return {f"policy tests ({len(cases)} held-out examples)": check}


def learning_hooks(settings: Settings, config: ConsolidateConfig) -> Hooks:
    """What a nightly consolidation plugs in (the command line passes these): the hindsight
    labeller's examples and the value model's retraining (`stackmind.value`), the Game of 24 check when
    a puzzle file is configured, and the learning policies' held-out examples run through the agent."""
    hooks = Hooks(examples=consolidation_examples, retrain_value=retrain_for_consolidation)
    if config.game24_csv is not None:
        try:
            hooks.checks["game24"] = game24_check(config.game24_csv, config.game24_range)
        except Exception as e:  # a missing puzzle file must not stop consolidation
            hooks.missing["game24"] = f"{type(e).__name__}: {e}"
    else:
        hooks.missing["game24"] = "no puzzle file configured (STACKMIND_CONSOLIDATE_GAME24_CSV)"
    hooks.checks.update(consolidation_checks(settings))
    return hooks
