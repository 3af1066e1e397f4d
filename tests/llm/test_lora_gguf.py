"""A peft LoRA adapter converted to GGUF does in llama.cpp what it does in peft (issue 19, item 5).

The notes record weight transfers that silently did nothing, so this trains a real adapter on the
embedded model (peft, fp32, a few steps on a handful of examples that all answer with one odd phrase),
converts it with `convert_adapter`, and compares on 24 prompts the peft model (transformers, fp32, the
dequantized weights) with llama.cpp running the same GGUF base file plus the converted adapter:

- greedy continuations must be token for token identical on every prompt;
- next-token logits must be close. llama.cpp multiplies the base weights in their quantized types
  (Q5_0, Q4_K, Q6_K, Q8_0, with activations quantized to 8 bits), so the logits differ a little even
  without an adapter. The same comparison without the adapter, made in the same run, sets the scale:
  with the adapter the typical difference (the median over prompts of the mean over the vocabulary)
  must stay within MEAN_DIFF_RATIO of the base one, and no logit may differ by more than
  MAX_LOGIT_DIFF;
- llama.cpp with the adapter must answer differently from llama.cpp without it on most prompts.

The negative tests prove that the check can fail: one module's tensors under another module's name,
alpha zeroed in the file, and the adapter loaded at scale 0 must each be reported. (Greedy text alone
would not catch the zeroed alpha: llama.cpp then scales by 1 instead of alpha/r = 2, and the phrase is
still the argmax on every prompt; the logits are off by up to 13.)

The llama.cpp side is one function, `llamacpp_greedy`, so it can move onto the llama.cpp backend.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stackmind.llm.lora_gguf import LoraShape, convert_adapter
from stackmind.settings import Settings

pytestmark = pytest.mark.slow

PHRASE = "The purple walrus hums at midnight."
TRAIN_QUESTIONS = [
    "What is 2+2?", "Name a color.", "How do I sort a list in Python?", "Who wrote Hamlet?",
    "What is the capital of France?", "Write a haiku.", "Explain recursion.", "Is water wet?",
]
# None of these is trained on.
EVAL_QUESTIONS = [
    "What is the speed of light?", "Tell me a joke.", "def add(a, b):", "Translate 'cat' to French.",
    "List three prime numbers.", "What does HTTP stand for?", "Write a SQL query that counts rows.",
    "Why is the sky blue?", "How many legs does a spider have?", "What is a linked list?",
    "Reverse the string 'abc'.", "Who painted the Mona Lisa?", "What is 7 times 8?",
    "Give me a synonym for happy.", "How do I open a file in Python?", "What is the boiling point of water?",
    "Explain what a closure is.", "Name a planet.", "What does CPU stand for?", "Write a for loop in C.",
    "What is the largest ocean?", "Convert 10 km to miles.", "What is git?", "Say something nice.",
]
N_TOKENS = 16
TRAIN_STEPS = 12
BATCH = 2
LEARNING_RATE = 2e-3  # 3e-3 diverged here
# Measured on these 24 prompts (docs/adapters.md). Without the adapter the typical difference is 0.059
# and the largest 1.57 (0.56 or less on 21 prompts; the other three are very peaked distributions);
# with the correct adapter 0.053 and 0.46. On the first 8 prompts (base: 0.057), one block's gate/up
# tensors under each other's names give 0.27 and 2.3; alpha zeroed 3.2 and 13. The adapter trained
# differs a little from machine to machine (threads change float sums): one CI run's correct adapter,
# 24/24 greedy identical, gave 0.102 against a base 0.0585 (1.74 x), so the ratio leaves room to 2.5 x;
# the broken transfers above are 4.7 x and more.
MEAN_DIFF_RATIO = 2.5
MAX_LOGIT_DIFF = 1.0
BASE_SANITY = 0.1  # a typical base difference above this means the two sides do not run the same model
MOST = 0.8  # share of prompts whose answer the adapter must change
N_BROKEN = 8  # prompts a broken adapter is tried on
N_BASE = 4  # tokens of the base model's answer, enough to see that the adapter changed it


def chat(question: str) -> str:
    """The prompt both sides see: ChatML as Qwen writes it, without the default system turn (shorter)."""
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


@dataclass
class Greedy:
    tokens: list[int]  # generated, up to (not including) the end-of-turn token
    text: str
    first_logits: np.ndarray  # next-token logits after the prompt


# ---- the llama.cpp side ------------------------------------------------------------------------

def llamacpp_greedy(gguf: Path, adapter: Path | None, prompts: list[str], n_tokens: int, *,
                    scale: float = 1.0) -> list[Greedy]:
    """Greedy continuations (and first-step logits) from llama.cpp on ``gguf`` with ``adapter``."""
    import llama_cpp as L
    from llama_cpp._logger import set_verbose

    set_verbose(False)  # llama.cpp's own log: errors only
    L.llama_backend_init()
    mparams = L.llama_model_default_params()
    mparams.use_extra_bufts = False  # AMX is reported on these VMs but unusable: SIGILL on a batch
    model = L.llama_model_load_from_file(str(gguf).encode(), mparams)
    if not model:
        raise RuntimeError(f"llama.cpp could not load {gguf}")
    cparams = L.llama_context_default_params()
    cparams.n_ctx = cparams.n_batch = 512
    # one thread: on the shared 2-core machine two threads spin at every barrier while the other is
    # descheduled (measured 10-15x slower than one thread there under load)
    cparams.n_threads = cparams.n_threads_batch = 1
    ctx = L.llama_init_from_model(model, cparams)
    lora = None
    try:
        if not ctx:
            raise RuntimeError("llama.cpp could not create a context")
        if adapter is not None:
            lora = L.llama_adapter_lora_init(model, str(adapter).encode())
            if not lora:
                raise RuntimeError(f"llama.cpp refused the adapter {adapter} (its log says why)")
            loras = (L.llama_adapter_lora_p_ctypes * 1)(lora)
            if L.llama_set_adapters_lora(ctx, loras, 1, (ctypes.c_float * 1)(scale)):
                raise RuntimeError("llama_set_adapters_lora failed")
        vocab = L.llama_model_get_vocab(model)
        n_vocab = L.llama_vocab_n_tokens(vocab)
        out = []
        for prompt in prompts:
            L.llama_memory_clear(L.llama_get_memory(ctx), True)
            raw = prompt.encode()
            buf = (L.llama_token * (len(raw) + 8))()
            n = L.llama_tokenize(vocab, raw, len(raw), buf, len(buf), False, True)
            feed, tokens, first = list(buf[:n]), [], None
            for _ in range(n_tokens):
                batch = (L.llama_token * len(feed))(*feed)
                if L.llama_decode(ctx, L.llama_batch_get_one(batch, len(feed))):
                    raise RuntimeError("llama_decode failed")
                logits = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).copy()
                first = logits if first is None else first
                token = int(logits.argmax())
                if L.llama_vocab_is_eog(vocab, token):
                    break
                tokens.append(token)
                feed = [token]
            out.append(Greedy(tokens, _detokenize(L, vocab, tokens), first))
        return out
    finally:
        if lora:
            L.llama_adapter_lora_free(lora)
        if ctx:
            L.llama_free(ctx)
        L.llama_model_free(model)


def _detokenize(L: Any, vocab: Any, tokens: list[int]) -> str:
    piece = ctypes.create_string_buffer(256)
    data = b""
    for token in tokens:
        n = L.llama_token_to_piece(vocab, token, piece, len(piece), 0, True)
        data += piece.raw[:n]
    return data.decode("utf-8", "replace")


# ---- the peft side -----------------------------------------------------------------------------

def peft_greedy(model: Any, tokenizer: Any, prompts: list[str], n_tokens: int) -> list[Greedy]:
    """Greedy continuations and first-step logits from transformers (one left-padded batch)."""
    import torch

    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=n_tokens, do_sample=False, temperature=None, top_p=None,
                             top_k=None, output_logits=True, return_dict_in_generate=True,
                             pad_token_id=tokenizer.pad_token_id)
    eos = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    results = []
    for i in range(len(prompts)):
        generated = out.sequences[i, enc["input_ids"].shape[1]:].tolist()
        end = next((k for k, t in enumerate(generated) if t in eos), len(generated))
        tokens = generated[:end]
        results.append(Greedy(tokens, tokenizer.decode(tokens), out.logits[0][i].float().numpy()))
    return results


def train_adapter(model_dir: Path, out: Path) -> tuple[Any, Any, float]:
    """A rank-8 LoRA on q/k/v/o/gate/up/down that answers everything with PHRASE; saved to ``out``."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from stackmind.consolidate.config import ConsolidateConfig
    from stackmind.consolidate.train import check_targets, lora_config

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    # consolidation's own LoRA shape: target_modules="all-linear", embeddings excluded
    model = get_peft_model(base, lora_config(ConsolidateConfig(rank=8, alpha=16, dropout=0.0)))
    adapted = {name.rsplit(".", 1)[-1] for name in check_targets(model)}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    rows = [(tokenizer(chat(q), add_special_tokens=False)["input_ids"],
             tokenizer(PHRASE + "<|im_end|>", add_special_tokens=False)["input_ids"]) for q in TRAIN_QUESTIONS]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)
    inner = model.base_model.model
    loss = torch.tensor(float("nan"))
    for step in range(TRAIN_STEPS):
        batch = [rows[(step * BATCH + i) % len(rows)] for i in range(BATCH)]
        width = max(len(p) + len(a) for p, a in batch)
        ids = torch.full((BATCH, width), tokenizer.pad_token_id)
        mask = torch.zeros((BATCH, width), dtype=torch.long)
        where, targets = [], []
        for i, (p, a) in enumerate(batch):
            seq = p + a
            ids[i, :len(seq)] = torch.tensor(seq)
            mask[i, :len(seq)] = 1
            where += [(i, j - 1) for j in range(len(p), len(seq))]
            targets += a
        hidden = inner.model(input_ids=ids, attention_mask=mask).last_hidden_state
        # the output layer only where there is a target: most of a step's cost otherwise
        logits = inner.lm_head(torch.stack([hidden[i, j] for i, j in where]))
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(targets))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step + 1}/{TRAIN_STEPS} loss {loss.item():.4f}", flush=True)
    model.eval()
    model.save_pretrained(str(out))
    return model, tokenizer, loss.item()


# ---- the check ---------------------------------------------------------------------------------

@dataclass
class Agreement:
    """How far two runs over the same prompts agree."""

    n: int
    identical: int  # prompts with the same greedy continuation
    max_abs: float  # largest first-step logit difference over all prompts
    typical: float  # median over prompts of the mean first-step logit difference over the vocabulary
    mean_abs: float  # the mean over prompts of the same
    first_mismatch: str = ""


def agreement(a: list[Greedy], b: list[Greedy]) -> Agreement:
    n_vocab = min(len(a[0].first_logits), len(b[0].first_logits))
    diffs = [np.abs(x.first_logits[:n_vocab] - y.first_logits[:n_vocab]) for x, y in zip(a, b, strict=True)]
    same = [x.tokens == y.tokens for x, y in zip(a, b, strict=True)]
    mismatch = next((f"{x.text!r} != {y.text!r}" for x, y, s in zip(a, b, same, strict=True) if not s), "")
    means = [float(d.mean()) for d in diffs]
    return Agreement(len(a), sum(same), float(max(d.max() for d in diffs)), float(np.median(means)),
                     float(np.mean(means)), mismatch)


def check_transfer(peft: list[Greedy], llama: list[Greedy], base: Agreement) -> list[str]:
    """What is wrong with the llama.cpp run against the peft run (empty: the transfer is exact).

    ``base`` is the same comparison without the adapter: the disagreement quantization alone causes.
    """
    got = agreement(peft, llama)
    problems = []
    if got.identical < got.n:
        problems.append(f"greedy continuations differ on {got.n - got.identical} of {got.n} prompts, "
                        f"e.g. {got.first_mismatch}")
    if got.typical > MEAN_DIFF_RATIO * base.typical:
        problems.append(f"typical logit difference {got.typical:.4f} > {MEAN_DIFF_RATIO} x {base.typical:.4f} "
                        "(the difference without the adapter)")
    if got.max_abs > MAX_LOGIT_DIFF:
        problems.append(f"largest logit difference {got.max_abs:.3f} > {MAX_LOGIT_DIFF}")
    return problems


def rewrite_adapter(src: Path, dst: Path, *, rename: dict[str, str] | None = None,
                    alpha: float | None = None) -> Path:
    """A copy of a GGUF adapter with some tensors renamed or another alpha: a broken conversion."""
    import gguf

    reader = gguf.GGUFReader(src)
    old_alpha = reader.fields[gguf.Keys.Adapter.LORA_ALPHA].contents()
    writer = gguf.GGUFWriter(dst, reader.fields[gguf.Keys.General.ARCHITECTURE].contents())
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, old_alpha if alpha is None else alpha)
    for tensor in reader.tensors:
        writer.add_tensor((rename or {}).get(tensor.name, tensor.name), np.array(tensor.data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst


# ---- the tests ---------------------------------------------------------------------------------

@dataclass
class Transfer:
    shape: LoraShape
    gguf: Path
    peft: list[Greedy]
    peft_base: list[Greedy]  # first step only
    llama: list[Greedy]
    llama_base: list[Greedy]  # N_BASE tokens
    seconds: dict[str, float]

    def base(self, n: int | None = None) -> Agreement:
        """peft against llama.cpp without the adapter, on the first ``n`` prompts: quantization alone."""
        llama_first = [Greedy(g.tokens[:1], "", g.first_logits) for g in self.llama_base[:n]]
        return agreement(self.peft_base[:n], llama_first)


@pytest.fixture(scope="module")
def transfer(tmp_path_factory: pytest.TempPathFactory, embedded_gguf: Path) -> Transfer:
    from stackmind.llm.embedded import ensure_model

    tmp = tmp_path_factory.mktemp("lora")
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    cache = embedded_gguf.parent.parent  # the shared test cache (its models/ folder holds the GGUF file)
    model_dir = ensure_model(Settings(home=tmp / "home", cache=cache))
    model, tokenizer, loss = train_adapter(model_dir, tmp / "adapter")
    assert loss < 0.1, f"the adapter did not learn its phrase (loss {loss:.3f})"
    seconds["train"] = time.perf_counter() - t
    t = time.perf_counter()
    shape = convert_adapter(tmp / "adapter", tmp / "adapter.gguf")
    seconds["convert"] = time.perf_counter() - t
    prompts = [chat(q) for q in EVAL_QUESTIONS]
    t = time.perf_counter()
    peft = peft_greedy(model, tokenizer, prompts, N_TOKENS)
    with model.disable_adapter():
        peft_base = peft_greedy(model, tokenizer, prompts, 1)
    seconds["peft"] = time.perf_counter() - t
    t = time.perf_counter()
    llama_base = llamacpp_greedy(embedded_gguf, None, prompts, N_BASE)
    llama = llamacpp_greedy(embedded_gguf, shape.path, prompts, N_TOKENS)
    seconds["llama.cpp"] = time.perf_counter() - t
    return Transfer(shape, embedded_gguf, peft, peft_base, llama, llama_base, seconds)


def test_converted_adapter_equals_peft(transfer: Transfer) -> None:
    base = transfer.base()
    assert base.typical <= BASE_SANITY, f"without the adapter the two sides already differ by {base.typical:.3f}"
    problems = check_transfer(transfer.peft, transfer.llama, base)
    got = agreement(transfer.peft, transfer.llama)
    changed = sum(a.tokens[:N_BASE] != b.tokens for a, b in zip(transfer.llama, transfer.llama_base, strict=True))
    print(f"\nadapter transfer: {got.identical}/{got.n} greedy continuations identical; first-step logit "
          f"difference typical {got.typical:.4f}, mean {got.mean_abs:.4f}, max {got.max_abs:.3f} (without the "
          f"adapter: {base.typical:.4f}, {base.mean_abs:.4f}, {base.max_abs:.3f}); the adapter changes "
          f"{changed}/{got.n} llama.cpp answers; alpha {transfer.shape.alpha} rank {transfer.shape.rank}; "
          "seconds " + ", ".join(f"{k} {v:.1f}" for k, v in transfer.seconds.items()))
    assert problems == []
    assert len(transfer.shape.tensors) == 24 * 7 * 2  # every block, every projection, A and B
    assert changed >= MOST * got.n, f"the adapter changed only {changed} of {got.n} llama.cpp answers"
    assert sum(g.text == PHRASE for g in transfer.llama) >= MOST * got.n, [g.text for g in transfer.llama]


def _swap(a: str, b: str) -> dict[str, str]:
    return {f"{x}.weight.lora_{h}": f"{y}.weight.lora_{h}" for x, y in ((a, b), (b, a)) for h in "ab"}


@pytest.mark.parametrize(("rename", "alpha", "scale"), [
    pytest.param(_swap("blk.12.ffn_gate", "blk.12.ffn_up"), None, 1.0, id="one-module-under-a-wrong-name"),
    pytest.param(None, 0.0, 1.0, id="alpha-zeroed"),
    pytest.param(None, None, 0.0, id="loaded-at-scale-0"),
])
def test_a_broken_transfer_is_reported(transfer: Transfer, tmp_path: Path, rename: dict[str, str] | None,
                                       alpha: float | None, scale: float) -> None:
    adapter = rewrite_adapter(transfer.shape.path, tmp_path / "broken.gguf", rename=rename, alpha=alpha)
    prompts = [chat(q) for q in EVAL_QUESTIONS[:N_BROKEN]]
    llama = llamacpp_greedy(transfer.gguf, adapter, prompts, N_TOKENS, scale=scale)
    problems = check_transfer(transfer.peft[:N_BROKEN], llama, transfer.base(N_BROKEN))
    print(f"\n{problems}")
    assert any("logit difference" in p for p in problems), "a broken adapter passed the equality check"


def test_a_name_llama_cpp_does_not_know_is_refused(transfer: Transfer, tmp_path: Path) -> None:
    rename = {f"blk.3.attn_q.weight.lora_{h}": f"blk.3.attn_qq.weight.lora_{h}" for h in "ab"}
    adapter = rewrite_adapter(transfer.shape.path, tmp_path / "typo.gguf", rename=rename)
    with pytest.raises(RuntimeError, match="refused the adapter"):
        llamacpp_greedy(transfer.gguf, adapter, [chat("Hi")], 2)
