"""LoRA supervised fine-tuning with trl's SFTTrainer and peft.

Rows are prompt-completion pairs in the step format (the messages a step was shown, the reply it
should give): the loss is on the completion only (trl's ``completion_only_loss``). The run continues the promoted adapter or starts a fresh
one, on the GPU when there is one, writes TensorBoard logs and checkpoints into the run folder
(a killed run resumes from its last checkpoint), and stops cleanly at the time budget.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stackmind.consolidate.config import ConsolidateConfig
from stackmind.errors import StackmindError

ProgressFn = Callable[[str], None]
PROBE_TOKENS = 64  # logits kept from the probe prompt to check that the saved adapter is the trained one
# Never adapted: in small models the input embeddings are tied to the output layer, and an adapter on
# either would not transfer faithfully to a llama.cpp GGUF adapter (stackmind/llm/lora_gguf.py refuses
# it). peft's "all-linear" already leaves the output layer out; naming both here keeps that true for
# any target_modules setting.
EXCLUDED_MODULES = ("embed_tokens", "lm_head")


class TargetModulesError(StackmindError, ValueError):
    """The LoRA adapter would adapt a module that must be left alone (the embeddings)."""


class TrainingDataError(StackmindError, ValueError):
    """Nothing to train on: every example is longer than the configured maximum length."""


@dataclass
class TrainResult:
    adapter_dir: Path
    steps: int
    examples: int  # training rows seen (rows x epochs actually run)
    seconds: float
    log: list[dict[str, Any]] = field(default_factory=list)
    stopped_by_budget: bool = False
    init: str = "fresh"  # fresh | continue:<version path>
    rank: int = 16
    device: str = "cpu"

    @property
    def examples_per_hour(self) -> float:
        return self.examples / self.seconds * 3600 if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"adapter_dir": str(self.adapter_dir), "steps": self.steps, "examples": self.examples,
                "seconds": round(self.seconds, 2), "examples_per_hour": round(self.examples_per_hour, 1),
                "stopped_by_budget": self.stopped_by_budget, "init": self.init, "rank": self.rank,
                "device": self.device, "log": self.log}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainResult:
        return cls(Path(d["adapter_dir"]), d["steps"], d["examples"], d["seconds"], d.get("log", []),
                   d.get("stopped_by_budget", False), d.get("init", "fresh"), d.get("rank", 16), d.get("device", "cpu"))


def pick_device(wanted: str = "auto") -> str:
    import torch

    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return wanted


def load_base(model_dir: Path, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).to(device)
    return model, tokenizer


def train_lora(
    model_dir: Path,
    rows: list[dict[str, Any]],
    run_dir: Path,
    config: ConsolidateConfig,
    *,
    current_adapter: Path | None = None,
    deadline: float | None = None,
    probe: list[dict[str, str]] | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train a candidate adapter on ``rows`` (``{"prompt": [...], "completion": [...]}``); save it to
    ``run_dir/candidate``.

    ``deadline`` (a `time.monotonic` value) stops training at the next step and still saves. A run
    killed midway resumes from ``run_dir/trainer/checkpoint-*``. ``probe`` (chat messages) records
    the trained model's logits so the saved adapter can be checked after reloading.
    """
    from datasets import Dataset as HFDataset
    from peft import PeftModel
    from trl import SFTConfig, SFTTrainer

    device = pick_device(config.device)
    t0 = time.perf_counter()
    model, tokenizer = load_base(model_dir, device)
    init = "fresh"
    peft_config = None
    rank = config.rank
    if current_adapter is not None and config.init == "continue":
        model = PeftModel.from_pretrained(model, str(current_adapter), is_trainable=True)
        init = f"continue:{current_adapter.name}"
        rank = int(model.peft_config["default"].r)
    else:
        peft_config = lora_config(config)
    examples, too_long = tokenized_rows(rows, tokenizer, config.max_length)
    if too_long and progress:
        progress(f"{too_long} example(s) longer than max_length {config.max_length} tokens left out "
                 "(STACKMIND_CONSOLIDATE_MAX_LENGTH)")
    trainer_dir = run_dir / "trainer"
    args = SFTConfig(
        output_dir=str(trainer_dir),
        completion_only_loss=True,
        max_length=config.max_length,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=0,
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        report_to=["tensorboard"],
        seed=config.seed,
        use_cpu=device == "cpu",
        bf16=device == "cuda",
        activation_checkpointing=False,  # a 0.5B model fits; checkpointing would only slow CPU training
        dataloader_num_workers=0,
        disable_tqdm=True,  # our own progress line instead
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=HFDataset.from_list(examples),
                         processing_class=tokenizer, peft_config=peft_config,
                         callbacks=[_progress_class()(progress, deadline)])
    from transformers import PrinterCallback

    check_targets(trainer.model)
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
    last = _last_checkpoint(trainer_dir)
    if last is not None and progress:
        progress(f"resuming training from {last.name}")
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    state = trainer.state
    stopped = deadline is not None and time.monotonic() >= deadline and state.global_step < state.max_steps
    out = run_dir / "candidate"
    tmp = run_dir / ".candidate.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.model.save_pretrained(str(tmp))
    if probe is not None:
        logits = probe_logits(trainer.model, tokenizer, probe)
        (tmp / "probe.json").write_text(json.dumps({"messages": probe, **logits}))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    rows_seen = state.global_step * config.batch_size * config.grad_accum
    if config.max_steps <= 0:
        rows_seen = min(rows_seen, int(len(examples) * config.epochs))
    log = [{k: v for k, v in e.items() if isinstance(v, int | float)} for e in state.log_history]
    # Training time proper (without loading the model), for the examples/hour figure.
    train_seconds = next((e["train_runtime"] for e in reversed(log) if "train_runtime" in e), None)
    return TrainResult(out, state.global_step, int(rows_seen), train_seconds or time.perf_counter() - t0, log,
                       stopped, init, rank, device)


def tokenized_rows(rows: list[dict[str, Any]], tokenizer: Any,
                   max_length: int) -> tuple[list[dict[str, list[int]]], int]:
    """The rows as token ids with a completion mask (1 on the completion's tokens, the loss's), as
    trl would tokenize them, keeping those that fit in ``max_length`` tokens; and how many did not.
    Cut to fit, a row would lose its completion (what is learned): trl truncates the end. Done here,
    not by trl: `datasets` fingerprints a map whose arguments hold the tokenizer by pickling its
    whole vocabulary (building the trainer on 8 rows: 4.6 s that way, 0.9 s this way, 2 cores)."""
    def ids(messages: list[dict[str, str]], **kw: Any) -> list[int]:
        out = tokenizer.apply_chat_template(messages, tokenize=True, **kw)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    kept, lengths = [], []
    for row in rows:
        prompt = ids(row["prompt"], add_generation_prompt=True)
        full = ids([*row["prompt"], *row["completion"]])
        lengths.append(len(full))
        if len(full) > max_length:
            continue
        at = next((i for i, (a, b) in enumerate(zip(prompt, full, strict=False)) if a != b), min(len(prompt), len(full)))
        kept.append({"input_ids": full, "completion_mask": [0] * at + [1] * (len(full) - at)})
    if rows and not kept:
        raise TrainingDataError(
            f"every one of the {len(rows)} training examples is longer than max_length {max_length} tokens "
            f"(the shortest is {min(lengths)}): raise STACKMIND_CONSOLIDATE_MAX_LENGTH")
    return kept, len(rows) - len(kept)


def lora_config(config: ConsolidateConfig) -> Any:
    """The peft `LoraConfig` of a fresh adapter: the configured shape, never the embeddings."""
    from peft import LoraConfig

    targets = config.target_modules
    named = [targets] if isinstance(targets, str) else list(targets)
    bad = [t for t in named if t in EXCLUDED_MODULES]
    if bad:
        raise TargetModulesError(
            f"target_modules includes {', '.join(bad)}: the tied embeddings are never adapted (the adapter "
            "would not transfer to llama.cpp); leave them out of STACKMIND_CONSOLIDATE_TARGET_MODULES")
    return LoraConfig(r=config.rank, lora_alpha=config.lora_alpha, lora_dropout=config.dropout,
                      target_modules=targets, exclude_modules=list(EXCLUDED_MODULES), task_type="CAUSAL_LM")


def check_targets(model: Any) -> list[str]:
    """The names of the modules that carry LoRA weights; refuses an adapter on the embeddings
    (a continued adapter brings its own target_modules, so this looks at the model itself)."""
    adapted = [name for name, module in model.named_modules()
               if len(getattr(module, "lora_A", {})) or len(getattr(module, "lora_embedding_A", {}))]
    bad = [name for name in adapted if name.rsplit(".", 1)[-1] in EXCLUDED_MODULES]
    if bad:
        raise TargetModulesError(
            f"the adapter adapts {', '.join(bad)}: the tied embeddings are never adapted (the adapter would not "
            "transfer to llama.cpp); start a fresh one (STACKMIND_CONSOLIDATE_INIT=fresh) without them")
    return adapted


def probe_logits(model: Any, tokenizer: Any, messages: list[dict[str, str]],
                 indices: list[int] | None = None) -> dict[str, list[float] | list[int]]:
    """Next-token logits after a prompt: the top PROBE_TOKENS ids (or the given ``indices``) and values."""
    import torch

    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        logits = model(input_ids=enc["input_ids"].to(model.device)).logits[0, -1].float().cpu()
    if was_training:
        model.train()
    ids = indices if indices is not None else sorted(torch.topk(logits, PROBE_TOKENS).indices.tolist())
    return {"indices": list(ids), "values": [float(logits[i]) for i in ids]}


def _last_checkpoint(trainer_dir: Path) -> Path | None:
    if not trainer_dir.is_dir():
        return None
    ckpts = [p for p in trainer_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
             and (p / "trainer_state.json").is_file()]
    return max(ckpts, key=lambda p: int(p.name.split("-")[-1]), default=None)


@functools.cache
def _progress_class() -> type:
    """The training callback, made on first use: transformers (seconds to import) loads only when
    training starts, not with every `stackmind adapters ...` command."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):  # type: ignore[misc]
        """One progress line per logged step; stops (and saves) at the deadline."""

        def __init__(self, progress: ProgressFn | None, deadline: float | None) -> None:
            self.progress = progress
            self.deadline = deadline
            self.t0 = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kw: Any) -> None:
            if self.progress and logs and "loss" in logs:
                rate = state.global_step / max(time.perf_counter() - self.t0, 1e-9)
                self.progress(f"step {state.global_step}/{state.max_steps}  loss {logs['loss']:.4f}  "
                              f"({rate * 60:.1f} steps/min)")

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                control.should_training_stop = True
                control.should_save = True
                if self.progress:
                    self.progress(f"time budget reached at step {state.global_step}: stopping and saving")

    return _Progress
