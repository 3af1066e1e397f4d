"""What the learning package hands to nightly consolidation: the gate's policy check.

`stackmind consolidate` (the command line, above both) wires these into `consolidate.run`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from stackmind.consolidate.config import ConsolidateConfig
from stackmind.consolidate.gate import game24_check
from stackmind.consolidate.hooks import Hooks
from stackmind.learning.grounding import AgentTrial, HeldoutTask, final_answer
from stackmind.learning.trials import matches
from stackmind.llm import LLM
from stackmind.llm.llamacpp import with_peft_adapter
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

    by_policy: dict[str, list[tuple[Any, Any, Any]]] = {}
    for case in cases:
        by_policy.setdefault(case[0].name, []).append(case)

    def check(llm: Any) -> float:
        ok = 0
        for group in by_policy.values():  # a policy's examples at once (their steps share batches)
            pushed, _bare, _tokens = AgentTrial(settings, llm).run(
                [HeldoutTask(ex.prompt(), ex.answer or "", "contains") for _p, ex, _m in group], group[0][0],
                bare=False)
            ok += sum(matches(m, final_answer(reply), ex.answer, ex.goal)
                      for (_p, ex, m), reply in zip(group, pushed, strict=True))
        return ok / len(cases)

    return {f"policy tests ({len(cases)} held-out examples)": check}


def learning_hooks(settings: Settings, config: ConsolidateConfig) -> Hooks:
    """What a nightly consolidation plugs in (the command line passes these): the hindsight
    labeller's examples and the value model's retraining (`stackmind.value`), the Game of 24 check when
    a puzzle file is configured, and the learning policies' held-out examples run through the agent;
    on the llama.cpp backend the checks run there (the backend the agent runs on), not on transformers."""
    hooks = Hooks(examples=consolidation_examples, retrain_value=retrain_for_consolidation)
    if settings.backend == "llamacpp":
        hooks.llm_for = llamacpp_checks(settings)
    if config.game24_csv is not None:
        try:
            hooks.checks["game24"] = game24_check(config.game24_csv, config.game24_range)
        except Exception as e:  # a missing puzzle file must not stop consolidation
            hooks.missing["game24"] = f"{type(e).__name__}: {e}"
    else:
        hooks.missing["game24"] = "no puzzle file configured (STACKMIND_CONSOLIDATE_GAME24_CSV)"
    hooks.checks.update(consolidation_checks(settings))
    return hooks


def llamacpp_checks(settings: Settings) -> Callable[[Path | None], LLM]:
    """The gate's model for an adapter: llama.cpp with the adapter converted to GGUF; the transformers
    backend where it cannot be converted."""

    def llm_for(adapter: Path | None) -> LLM:
        from stackmind.llm.lora_gguf import AdapterConversionError

        try:
            return LLM(with_peft_adapter(settings, adapter))
        except AdapterConversionError:
            from stackmind.llm.embedded import ensure_model
            from stackmind.llm.transformers import TransformersBackend

            return LLM(TransformersBackend(settings.model_path or ensure_model(settings), adapter=adapter))

    return llm_for
