"""A promoted peft LoRA adapter (safetensors) as a GGUF LoRA adapter that llama.cpp loads.

peft saves ``adapter_config.json`` and ``adapter_model.safetensors`` with tensors named
``base_model.model.<hf module>.lora_A.weight`` (shape ``r x in``) and ``...lora_B.weight``
(``out x r``). llama.cpp wants the GGUF name of the module's weight with ``.lora_a`` / ``.lora_b``
appended (``blk.3.attn_q.weight.lora_a``), the same row-major data (ggml lists dimensions the other way
round, so ``r x in`` reads as ``ne = [in, r]``, which is what it checks), and three metadata keys:
``general.type = adapter``, ``adapter.type = lora`` and ``adapter.lora.alpha``.

Scale. peft multiplies ``B @ A`` by ``lora_alpha / r`` (``lora_alpha / sqrt(r)`` with ``use_rslora``);
llama.cpp multiplies it by ``alpha / r`` with ``r`` read from each tensor, and by 1 when alpha is 0.
So the GGUF alpha is ``lora_alpha`` (``lora_alpha * sqrt(r)`` with rslora), and a peft alpha of 0
is refused rather than written (llama.cpp would read it as scale 1).

Nothing is dropped quietly: a tensor that is not a LoRA A/B pair of a module llama.cpp patches
stops the conversion, and so do adapters that llama.cpp cannot reproduce (DoRA, LoRA biases,
per-module ranks or alphas, initialisations that modify the base weights, the tied embeddings).
The file is written to a temporary name and renamed, so a reader never sees half an adapter.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackmind.llm.base import LLMError

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
GGUF_NAME = "adapter.gguf"  # the converted adapter, next to the peft files of a version
PEFT_PREFIX = "base_model.model."
# The tied embeddings: llama.cpp patches them differently (and peft saves them as lora_embedding_A/B).
EMBEDDING_MODULES = ("embed_tokens", "lm_head")
# peft initialisations that change the base weights; their adapters only fit the changed base.
BASE_CHANGING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")
_TENSOR = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])\.weight$")


class AdapterConversionError(LLMError, ValueError):
    """A peft adapter that cannot become an equal GGUF adapter; the message says why and what to do."""


@dataclass(frozen=True)
class LoraShape:
    """What `convert_adapter` wrote: enough to check it against the peft side."""

    path: Path
    rank: int
    alpha: float  # the GGUF alpha (llama.cpp scale = alpha / rank)
    scale: float  # peft's scaling, which llama.cpp reproduces
    tensors: dict[str, str]  # peft tensor name -> GGUF tensor name


def read_peft_config(peft_dir: Path) -> dict[str, Any]:
    path = peft_dir / CONFIG_NAME
    if not path.is_file():
        raise AdapterConversionError(f"{peft_dir} is not a peft adapter folder: {CONFIG_NAME} is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise AdapterConversionError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e


def peft_scale(config: dict[str, Any], where: str = CONFIG_NAME) -> tuple[int, float, float]:
    """``(rank, peft scaling, GGUF alpha)`` for an adapter config, or why it cannot be converted."""
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type != "LORA":
        raise AdapterConversionError(f"{where}: peft_type is {peft_type or 'missing'}; only LORA adapters "
                                     "can become a llama.cpp LoRA adapter")
    # peft's LoRA variants and extras; each changes the forward pass beyond "W + scale * B @ A".
    unsupported = {
        "use_dora": "DoRA (a learned magnitude per output)",
        "use_bdlora": "block-diagonal LoRA",
        "kasa_config": "KaSA (learned singular values)",
        "monteclora_config": "MonteCLoRA (sampled adapters)",
        "velora_config": "VeLoRA",
        "arrow_config": "Arrow routing between adapters",
        "alora_invocation_tokens": "activated LoRA (aLoRA)",
        "lora_bias": "a trained bias on lora_B",
        "use_qalora": "QA-LoRA pooling",
        "fan_in_fan_out": "fan_in_fan_out (Conv1D weights, transposed)",
        "layer_replication": "layer replication",
        "trainable_token_indices": "trainable token embeddings",
        "modules_to_save": "fully trained modules (modules_to_save)",
        "target_parameters": "LoRA on bare parameters (target_parameters)",
        "rank_pattern": "per-module ranks (rank_pattern)",
        "alpha_pattern": "per-module alphas (alpha_pattern)",
    }
    for key, what in unsupported.items():
        if config.get(key):
            raise AdapterConversionError(f"{where}: {key} is set ({what}); llama.cpp's LoRA adapters cannot "
                                         f"express it: train without {key}")
    init = config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(BASE_CHANGING_INITS):
        raise AdapterConversionError(
            f"{where}: init_lora_weights={init!r} changes the base weights, so the adapter only fits that changed "
            "base; save it with peft's path_initial_model_for_weight_conversion (a plain LoRA) and convert that")
    targets = config.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else list(targets)
    tied = [t for t in targets if any(re.search(rf"(^|\.){m}$", t) for m in EMBEDDING_MODULES)]
    if tied:
        raise AdapterConversionError(
            f"{where}: target_modules includes {', '.join(sorted(tied))}: the tied embeddings must be left out "
            "of target_modules (train with exclude_modules=['embed_tokens', 'lm_head'])")
    rank = int(config.get("r", 0))
    alpha = float(config.get("lora_alpha", 0))
    if rank <= 0:
        raise AdapterConversionError(f"{where}: r is {rank}; a LoRA adapter needs a positive rank")
    if alpha == 0:
        raise AdapterConversionError(f"{where}: lora_alpha is 0, so peft scales the adapter to nothing; "
                                     "llama.cpp would read alpha 0 as scale 1. Nothing to convert")
    if config.get("use_rslora"):  # peft: alpha / sqrt(r); llama.cpp: gguf_alpha / r
        return rank, alpha / math.sqrt(rank), alpha * math.sqrt(rank)
    return rank, alpha / rank, alpha


def gguf_tensor_names(names: list[str], arch: str, n_blocks: int | None = None) -> dict[str, str]:
    """Map every peft tensor name to its GGUF LoRA name; refuse any that has none."""
    import gguf

    archs = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}
    if arch not in archs:
        raise AdapterConversionError(f"unknown GGUF architecture {arch!r}; the base model's "
                                     "general.architecture names it (e.g. qwen2, llama)")
    blocks = [int(m) for n in names for m in re.findall(r"\.layers\.(\d+)\.", n)]
    n_blocks = n_blocks if n_blocks is not None else max(blocks, default=-1) + 1
    name_map = gguf.get_tensor_name_map(archs[arch], n_blocks)
    out: dict[str, str] = {}
    problems: list[str] = []
    for name in names:
        match = _TENSOR.match(name.removeprefix(PEFT_PREFIX))
        if match is None:
            why = ("LoRA on an embedding; leave embed_tokens and lm_head out of target_modules"
                   if ".lora_embedding_" in name else "not a lora_A/lora_B weight")
            problems.append(f"{name}: {why}")
            continue
        module = match["module"]
        if any(module == m or module.endswith("." + m) for m in EMBEDDING_MODULES):
            problems.append(f"{name}: LoRA on the tied embeddings ({module}); leave it out of target_modules")
            continue
        base = name_map.get_name(module)
        if base is None:
            problems.append(f"{name}: module {module} has no {arch} GGUF tensor")
            continue
        out[name] = f"{base}.weight.lora_{match['ab'].lower()}"
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise AdapterConversionError(f"{len(problems)} adapter tensor(s) cannot be converted (none is dropped): "
                                     f"{shown}")
    return out


def convert_adapter(peft_dir: Path, out: Path | None = None, *, arch: str = "qwen2",
                    n_blocks: int | None = None) -> LoraShape:
    """Write the peft adapter in ``peft_dir`` as a GGUF LoRA adapter at ``out`` (atomically; default
    ``peft_dir/adapter.gguf``).

    ``arch`` is the base model's GGUF architecture; ``n_blocks`` its block count (default: from the
    tensor names). Raises `AdapterConversionError` for anything llama.cpp could not reproduce exactly.
    """
    out = out if out is not None else peft_dir / GGUF_NAME
    import gguf
    import numpy as np

    config = read_peft_config(peft_dir)
    rank, scale, alpha = peft_scale(config, str(peft_dir / CONFIG_NAME))
    weights = peft_dir / WEIGHTS_NAME
    if not weights.is_file():
        raise AdapterConversionError(f"{peft_dir}: {WEIGHTS_NAME} is missing (adapter saved as .bin? re-save "
                                     "it with save_pretrained(safe_serialization=True))")
    tensors = _load_float32(weights)
    if not tensors:
        raise AdapterConversionError(f"{weights}: no tensors")
    names = gguf_tensor_names(sorted(tensors), arch, n_blocks)
    _check_pairs(tensors, names, rank, weights)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        writer = gguf.GGUFWriter(tmp, arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_string(gguf.Keys.General.NAME, peft_dir.name)
        for peft_name in sorted(names, key=names.__getitem__):
            writer.add_tensor(names[peft_name], np.ascontiguousarray(tensors[peft_name], dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return LoraShape(out, rank, alpha, scale, names)


def _load_float32(path: Path) -> dict[str, Any]:
    """The adapter's tensors as float32 numpy arrays (through torch: numpy has no bfloat16)."""
    import torch
    from safetensors.torch import load_file

    return {k: v.to(torch.float32).numpy() for k, v in load_file(str(path)).items()}


def _check_pairs(tensors: dict[str, Any], names: dict[str, str], rank: int, path: Path) -> None:
    """Every module has both halves, of rank ``rank``, with matching inner dimensions."""
    modules: dict[str, dict[str, Any]] = {}
    for name, array in tensors.items():
        match = _TENSOR.match(name.removeprefix(PEFT_PREFIX))
        assert match is not None  # gguf_tensor_names refused anything else
        modules.setdefault(match["module"], {})[match["ab"]] = array
    for module, pair in modules.items():
        if set(pair) != {"A", "B"}:
            missing = ({"A", "B"} - set(pair)).pop()
            raise AdapterConversionError(f"{path}: {module} has no lora_{missing} tensor")
        a, b = pair["A"], pair["B"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != rank or b.shape[1] != rank:
            raise AdapterConversionError(f"{path}: {module} has lora_A {a.shape} and lora_B {b.shape}; "
                                         f"expected (r={rank}, in) and (out, r={rank}) as adapter_config.json says")
    dupes = len(names) - len(set(names.values()))
    if dupes:
        raise AdapterConversionError(f"{path}: {dupes} tensor(s) map to the same GGUF name")
