"""What a consolidation run may do: dataset mix, LoRA shape, training budget, gate margin.

Read from ``STACKMIND_CONSOLIDATE_*`` environment variables (e.g. ``STACKMIND_CONSOLIDATE_RANK=32``),
a ``.env`` file, or keyword arguments; defaults suit a nightly run of the embedded model on CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# vLLM serves LoRA adapters of these ranks (its --max-lora-rank choices).
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


class ConsolidateConfig(BaseSettings):
    # Every number is bounded and finite: a typo in .env cannot make a night's run endless.
    model_config = SettingsConfigDict(env_prefix="STACKMIND_CONSOLIDATE_", env_file=".env", extra="ignore",
                                      allow_inf_nan=False)

    # ---- dataset ---------------------------------------------------------------------------------
    min_reward: float = Field(1.0, description="Episodes with at least this reward are successful trajectories.")
    replay_ratio: float = Field(0.5, ge=0, le=100, description="Replayed older examples per new example.")
    heldout_fraction: float = Field(0.15, ge=0, lt=1, description="Share of prompts held out (by hash).")
    max_train_examples: int = Field(2000, ge=1, le=1_000_000, description="Cap on training examples (new ones first).")
    traces_dirs: list[Path] = Field(default_factory=lambda: [Path("traces")],
                                    description="Folders of human-guided traces (relative to the cwd).")
    policies_dirs: list[Path] = Field(default_factory=lambda: [Path("policies")],
                                      description="Folders of learning policies whose `slow` parts are trained.")

    # ---- LoRA and training -----------------------------------------------------------------------
    rank: int = Field(16, description="LoRA rank; one vLLM accepts (8, 16, 32, 64, ...).")
    alpha: int | None = Field(None, description="LoRA alpha; default 2 x rank.")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"
    init: Literal["continue", "fresh"] = Field(
        "continue", description="continue the promoted adapter, or start a fresh one.")
    learning_rate: float = Field(1e-4, gt=0, le=1)  # low: new training erases old skills less (MISSION.md)
    epochs: float = Field(1.0, gt=0, le=100)
    max_steps: int = Field(-1, ge=-1, le=1_000_000, description="Stop after this many optimizer steps (-1: epochs decide).")
    batch_size: int = Field(2, ge=1, le=1024)
    grad_accum: int = Field(1, ge=1, le=1024)
    max_length: int = Field(2048, ge=16, le=131_072)  # tokens of prompt + step: a step's prompt holds the view
    save_steps: int = Field(20, ge=1, description="Checkpoint every N steps (resume starts from the last).")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"

    # ---- gate --------------------------------------------------------------------------------------
    gate_margin: float = Field(
        0.02, ge=0, le=1, description="Candidate may be this much worse and still pass: relative for loss, "
        "absolute for accuracies.")
    exact_match_examples: int = Field(8, ge=0, le=10_000, description="Held-out examples answered greedily for exact match.")
    exact_match_max_tokens: int = Field(96, ge=1, le=4096)
    game24_csv: Path | None = Field(None, description="Game of 24 puzzles (a 'Puzzles' column) for the gate.")
    game24_range: str = "0:10"

    # ---- after the run -----------------------------------------------------------------------------
    synthesis: bool = Field(False, description="End with a policy-synthesis round (docs/synthesis.md): "
                            "re-measure the agent's own policies, then write new ones.")

    @field_validator("rank")
    @classmethod
    def _vllm_rank(cls, v: int) -> int:
        if v not in VLLM_LORA_RANKS:
            raise ValueError(f"rank {v} is not one vLLM serves; choose one of {', '.join(map(str, VLLM_LORA_RANKS))}")
        return v

    @property
    def lora_alpha(self) -> int:
        return self.alpha if self.alpha is not None else 2 * self.rank
