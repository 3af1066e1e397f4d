"""Consolidation's LoRA never adapts the tied embeddings (they would not transfer to llama.cpp)."""

from __future__ import annotations

from typing import Any

import pytest

from stackmind.consolidate.config import ConsolidateConfig
from stackmind.consolidate.train import TargetModulesError, check_targets, lora_config
from stackmind.errors import StackmindError

PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def tiny_qwen2(tied: bool) -> Any:
    """A two-block Qwen2 with random weights: the embedded model's module names, in milliseconds."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=tied)
    return Qwen2ForCausalLM(config)


@pytest.mark.parametrize("tied", [True, False])
def test_all_linear_adapts_the_projections_only(tied: bool) -> None:
    from peft import get_peft_model

    model = get_peft_model(tiny_qwen2(tied), lora_config(ConsolidateConfig(rank=8)))
    adapted = check_targets(model)
    assert {name.rsplit(".", 1)[-1] for name in adapted} == PROJECTIONS
    assert len(adapted) == 2 * len(PROJECTIONS)


@pytest.mark.parametrize("targets", [["q_proj", "lm_head"], ["embed_tokens", "v_proj"]])
def test_naming_an_embedding_in_target_modules_is_refused(targets: list[str]) -> None:
    with pytest.raises(TargetModulesError, match="tied embeddings are never adapted") as info:
        lora_config(ConsolidateConfig(rank=8, target_modules=targets))
    assert isinstance(info.value, StackmindError)


def test_a_continued_adapter_on_the_output_layer_is_refused() -> None:
    from peft import LoraConfig, get_peft_model

    # an adapter made elsewhere (consolidation continues whatever is promoted)
    model = get_peft_model(tiny_qwen2(False), LoraConfig(r=8, target_modules=["q_proj", "lm_head"]))
    with pytest.raises(TargetModulesError, match=r"adapts base_model\.model\.lm_head"):
        check_targets(model)
