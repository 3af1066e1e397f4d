"""Consolidation: the day's experience becomes weights (MISSION.md, "Consolidation").

    record = consolidate(settings, hooks=learning_hooks(settings, config))  # dataset -> LoRA -> value -> gate -> promote
    AdapterRegistry.of(settings).versions()              # v0001, v0002, ... with lineage and metrics

Parts, each readable on its own: `dataset` (what is trained on), `train` (trl + peft), `gate`
(candidate vs current), `registry` (versions, atomic promotion), `serving` (vLLM hot-load),
`hooks` (where the value model, hindsight labeller and policies plug in), `report`, `lock`.
docs/consolidate.md shows the nightly setup.
"""

from stackmind.consolidate.config import VLLM_LORA_RANKS, ConsolidateConfig
from stackmind.consolidate.dataset import Dataset, Example, build_dataset, step_examples, step_format
from stackmind.consolidate.gate import AdapterVerificationError, GateResult, Scores, decide, evaluate
from stackmind.consolidate.hooks import Hooks
from stackmind.consolidate.lock import ConsolidationLocked
from stackmind.consolidate.registry import AdapterRegistry, AdapterVersion, RegistryError, served_adapter
from stackmind.consolidate.report import last_report
from stackmind.consolidate.run import consolidate, consolidate_dir, unfinished_run
from stackmind.consolidate.serving import HotLoadError, hot_load, vllm_serve_command

__all__ = [
    "VLLM_LORA_RANKS", "AdapterRegistry", "AdapterVerificationError", "AdapterVersion", "ConsolidateConfig",
    "ConsolidationLocked", "Dataset", "Example", "GateResult", "Hooks", "HotLoadError", "RegistryError",
    "Scores", "build_dataset", "consolidate", "consolidate_dir", "decide", "step_examples", "step_format",
    "evaluate", "hot_load", "last_report", "served_adapter", "unfinished_run", "vllm_serve_command",
]
