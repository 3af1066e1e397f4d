"""convert_adapter on small synthetic peft adapters: names, layout, alpha, and every refusal."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stackmind.errors import StackmindError
from stackmind.llm.lora_gguf import AdapterConversionError, convert_adapter

HIDDEN, KV, FFN, RANK = 16, 4, 24, 4
SHAPES = {"self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.k_proj": (HIDDEN, KV),
          "self_attn.v_proj": (HIDDEN, KV), "self_attn.o_proj": (HIDDEN, HIDDEN),
          "mlp.gate_proj": (HIDDEN, FFN), "mlp.up_proj": (HIDDEN, FFN), "mlp.down_proj": (FFN, HIDDEN)}


def peft_config(**overrides: Any) -> dict[str, Any]:
    config = {"peft_type": "LORA", "r": RANK, "lora_alpha": 8, "use_rslora": False, "use_dora": False,
              "fan_in_fan_out": False, "bias": "none", "lora_bias": False, "init_lora_weights": True,
              "rank_pattern": {}, "alpha_pattern": {}, "modules_to_save": None,
              "target_modules": sorted(m.split(".")[1] for m in SHAPES), "task_type": "CAUSAL_LM"}
    return config | overrides


def peft_tensors(n_blocks: int = 2, rank: int = RANK) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for block in range(n_blocks):
        for module, (d_in, d_out) in SHAPES.items():
            key = f"base_model.model.model.layers.{block}.{module}"
            out[f"{key}.lora_A.weight"] = rng.standard_normal((rank, d_in)).astype(np.float32)
            out[f"{key}.lora_B.weight"] = rng.standard_normal((d_out, rank)).astype(np.float32)
    return out


def write_adapter(folder: Path, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


def read_gguf(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    import gguf

    reader = gguf.GGUFReader(path)
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    return fields, {t.name: t for t in reader.tensors}


def test_names_layout_and_metadata(tmp_path: Path) -> None:
    tensors = peft_tensors()
    shape = convert_adapter(write_adapter(tmp_path / "a", peft_config(), tensors), tmp_path / "a.gguf")
    fields, written = read_gguf(shape.path)
    assert fields["general.architecture"] == "qwen2"
    assert fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == 8.0
    assert (shape.rank, shape.alpha, shape.scale) == (RANK, 8.0, 2.0)
    gguf_names = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
                  "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
    expected = {f"base_model.model.model.layers.{b}.{m}.lora_{h}.weight":
                f"blk.{b}.{gguf_names[m.split('.')[1]]}.weight.lora_{h.lower()}"
                for b in range(2) for m in SHAPES for h in "AB"}
    assert shape.tensors == expected
    assert set(written) == set(expected.values())
    for peft_name, gguf_name in expected.items():
        t = written[gguf_name]
        # the same row-major data; ggml lists the dimensions the other way round (ne = [in, r] for A)
        np.testing.assert_array_equal(np.asarray(t.data), tensors[peft_name])
        assert list(t.shape) == list(reversed(tensors[peft_name].shape))
        assert t.tensor_type.name == "F32"


def test_rslora_alpha_gives_peft_scale(tmp_path: Path) -> None:
    folder = write_adapter(tmp_path / "a", peft_config(use_rslora=True, lora_alpha=8), peft_tensors())
    shape = convert_adapter(folder, tmp_path / "a.gguf")
    fields, _ = read_gguf(shape.path)
    # llama.cpp scales by alpha / r; peft with rslora by lora_alpha / sqrt(r)
    assert fields["adapter.lora.alpha"] / RANK == pytest.approx(8 / math.sqrt(RANK))
    assert shape.scale == pytest.approx(8 / math.sqrt(RANK))


def test_bfloat16_adapter(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    tensors = {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in peft_tensors(1).items()}
    folder = write_adapter(tmp_path / "a", peft_config(), {})
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    _, written = read_gguf(convert_adapter(folder, tmp_path / "a.gguf").path)
    name = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    np.testing.assert_array_equal(np.asarray(written["blk.0.attn_q.weight.lora_a"].data),
                                  tensors[name].to(torch.float32).numpy())


@pytest.mark.parametrize(("overrides", "message"), [
    ({"use_dora": True}, "use_dora is set"),
    ({"peft_type": "IA3"}, "only LORA adapters"),
    ({"lora_bias": True}, "lora_bias is set"),
    ({"fan_in_fan_out": True}, "fan_in_fan_out is set"),
    ({"modules_to_save": ["score"]}, "modules_to_save is set"),
    ({"rank_pattern": {"q_proj": 8}}, "rank_pattern is set"),
    ({"alpha_pattern": {"q_proj": 2}}, "alpha_pattern is set"),
    ({"init_lora_weights": "pissa_niter_4"}, "changes the base weights"),
    ({"lora_alpha": 0}, "lora_alpha is 0"),
    ({"target_modules": ["q_proj", "embed_tokens"]}, "tied embeddings must be left out of target_modules"),
    ({"target_modules": ["q_proj", "lm_head"]}, "tied embeddings must be left out of target_modules"),
])
def test_refuses_what_llama_cpp_cannot_reproduce(tmp_path: Path, overrides: dict[str, Any], message: str) -> None:
    folder = write_adapter(tmp_path / "a", peft_config(**overrides), peft_tensors(1))
    with pytest.raises(AdapterConversionError, match=message):
        convert_adapter(folder, tmp_path / "a.gguf")
    assert not (tmp_path / "a.gguf").exists()


@pytest.mark.parametrize(("extra", "message"), [
    ("base_model.model.model.embed_tokens.lora_embedding_A", "LoRA on an embedding"),
    ("base_model.model.lm_head.lora_A.weight", "LoRA on the tied embeddings"),
    ("base_model.model.model.layers.0.input_layernorm.weight", "not a lora_A/lora_B weight"),
    ("base_model.model.model.layers.0.self_attn.rotary.lora_A.weight", "has no qwen2 GGUF tensor"),
])
def test_never_drops_a_tensor(tmp_path: Path, extra: str, message: str) -> None:
    tensors = peft_tensors(1) | {extra: np.zeros((RANK, HIDDEN), np.float32)}
    folder = write_adapter(tmp_path / "a", peft_config(), tensors)
    with pytest.raises(AdapterConversionError, match=f"1 adapter tensor.*{message}"):
        convert_adapter(folder, tmp_path / "a.gguf")


def test_refuses_half_a_pair_and_a_wrong_rank(tmp_path: Path) -> None:
    tensors = peft_tensors(1)
    del tensors["base_model.model.model.layers.0.mlp.up_proj.lora_B.weight"]
    with pytest.raises(AdapterConversionError, match="mlp.up_proj has no lora_B"):
        convert_adapter(write_adapter(tmp_path / "a", peft_config(), tensors), tmp_path / "a.gguf")
    with pytest.raises(AdapterConversionError, match=r"expected \(r=8, in\)"):
        convert_adapter(write_adapter(tmp_path / "b", peft_config(r=8), peft_tensors(1)), tmp_path / "b.gguf")


def test_errors_are_stackmind_errors_and_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(StackmindError, match="adapter_config.json is missing"):
        convert_adapter(tmp_path, tmp_path / "a.gguf")
    (tmp_path / "adapter_config.json").write_text("{\n  'r': 8\n}")
    with pytest.raises(AdapterConversionError, match=r"adapter_config.json:2: not valid JSON"):
        convert_adapter(tmp_path, tmp_path / "a.gguf")
    (tmp_path / "adapter_config.json").write_text(json.dumps(peft_config()))
    with pytest.raises(AdapterConversionError, match="safe_serialization=True"):
        convert_adapter(tmp_path, tmp_path / "a.gguf")
    with pytest.raises(AdapterConversionError, match="unknown GGUF architecture 'qwen9'"):
        convert_adapter(write_adapter(tmp_path / "b", peft_config(), peft_tensors(1)), tmp_path / "b.gguf",
                        arch="qwen9")


def test_default_output_sits_next_to_the_peft_files(tmp_path: Path) -> None:
    folder = write_adapter(tmp_path / "v0001", peft_config(), peft_tensors(1))
    assert convert_adapter(folder).path == folder / "adapter.gguf"
    assert (folder / "adapter.gguf").is_file()


def test_a_failed_conversion_leaves_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "a.gguf"
    convert_adapter(write_adapter(tmp_path / "good", peft_config(), peft_tensors(1)), out)
    before = out.read_bytes()
    bad = peft_tensors(1) | {"base_model.model.model.norm.weight": np.ones(HIDDEN, np.float32)}
    with pytest.raises(AdapterConversionError):
        convert_adapter(write_adapter(tmp_path / "bad", peft_config(), bad), out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gguf", "bad", "good"]
