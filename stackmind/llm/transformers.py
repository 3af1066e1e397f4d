"""In-process backend on Hugging Face transformers: what training uses, and a backend anyone can choose.

A batch of prompts runs as ONE batched ``model.generate`` (left padding, ``n`` samples each via
``num_return_sequences``), so that search can batch its expansions. A request's grammar (the GBNF
that llama.cpp reads natively) is converted to llguidance's Lark and enforced by a logits processor
that masks, per row and per token, what the grammar forbids (`GrammarProcessor`). llguidance was
chosen over xgrammar by measurement on the step grammar (docs/llm.md): about 6 ms a token against
140 ms here, whose free-text rules (a line of any characters) xgrammar cannot precompute.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from stackmind.llm.base import Completion, LLMError, Prompt, Request, strip_at_stop
from stackmind.settings import Settings


class TransformersBackend:
    def __init__(
        self,
        model_dir: Path | str,
        *,
        device: str = "auto",
        threads: int | None = None,
        adapter: Path | str | None = None,
        name: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # loading plain weights takes seconds; no bar needed
        if threads:
            torch.set_num_threads(threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.name = name or f"transformers:{Path(model_dir).name}"
        t0 = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self.model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).to(device)
        self.adapter = None
        if adapter is not None:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, str(adapter))
            self.adapter = str(adapter)
        self.model.eval()
        self.load_seconds = time.perf_counter() - t0
        self._llg: Any = None
        self._lock = threading.Lock()  # one generate at a time: torch already uses every core

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def render_prompt(self, prompt: Prompt) -> str:
        """Chat message lists go through the model's chat template; plain strings are used as-is."""
        if isinstance(prompt, str):
            return prompt
        return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)

    def generate(self, request: Request) -> list[Completion]:
        import torch

        if request.adapter is not None and request.adapter != self.adapter:
            raise LLMError(
                f"this transformers backend serves adapter {self.adapter!r}, not {request.adapter!r}; "
                "load the adapter at start (the promoted one is loaded automatically)"
            )
        texts = [self.render_prompt(p) for p in request.prompts]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        sample = request.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": request.max_tokens,
            "do_sample": sample,
            "num_return_sequences": request.n,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sample:
            kwargs.update(temperature=request.temperature, top_p=request.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if request.stop:
            kwargs.update(stop_strings=list(request.stop), tokenizer=self.tokenizer)
        if request.grammar:
            kwargs["logits_processor"] = [GrammarProcessor(request.grammar, self._ll_tokenizer(), self.eos_ids())]
        with self._lock, torch.inference_mode():
            if request.seed is not None:
                torch.manual_seed(request.seed)
            out = self.model.generate(**enc, **kwargs)
        gen = out[:, enc["input_ids"].shape[1]:]
        eos = self.eos_ids() | {self.tokenizer.pad_token_id}
        completions: list[Completion] = []
        for i, plen in enumerate(prompt_lens):
            samples, reasons, ntok = [], [], 0
            for j in range(request.n):
                ids = gen[i * request.n + j].tolist()
                end = next((k for k, t in enumerate(ids) if t in eos), len(ids))
                ntok += min(end + 1, len(ids))
                text = self.tokenizer.decode(ids[:end], skip_special_tokens=True)
                samples.append(strip_at_stop(text, request.stop))
                # it ended on its own (end of text, a stop string) or max_tokens cut it
                reasons.append("stop" if end < len(ids) or len(samples[-1]) < len(text) else "length")
                if request.on_text is not None and samples[-1]:
                    request.on_text(i, j, samples[-1])  # no token-by-token streaming here: the whole text
            completions.append(Completion(texts=samples, prompt_tokens=int(plen), completion_tokens=ntok,
                                          finish_reasons=reasons))
        return completions

    def eos_ids(self) -> set[int]:
        eos = {self.tokenizer.eos_token_id}
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
        return {e for e in eos if e is not None}

    def _ll_tokenizer(self) -> Any:
        if self._llg is None:
            import llguidance.hf

            self._llg = llguidance.hf.from_tokenizer(self.tokenizer, n_vocab=self.model.config.vocab_size)
        return self._llg


class GrammarProcessor:
    """A transformers logits processor: each row's next token is limited to what the grammar allows
    after the tokens that row has generated (one llguidance matcher per row)."""

    def __init__(self, gbnf: str, ll_tokenizer: Any, eos: set[int]) -> None:
        import llguidance
        from llguidance.gbnf_to_lark import gbnf_to_lark

        self._llg = llguidance
        self.tokenizer = ll_tokenizer
        self.grammar = llguidance.grammar_from("lark", gbnf_to_lark(gbnf))
        problem = llguidance.LLMatcher.validate_grammar(self.grammar, ll_tokenizer)
        if problem:
            raise LLMError(f"the request's grammar does not compile: {problem}")
        self.eos = sorted(eos)
        self.matchers: list[Any] | None = None
        self.bitmask: Any = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import llguidance.torch as lt
        import torch

        rows, width = scores.shape
        if self.matchers is None:
            self.matchers = [self._llg.LLMatcher(self.tokenizer, self.grammar) for _ in range(rows)]
            self.bitmask = lt.allocate_token_bitmask(rows, self.tokenizer.vocab_size)
        else:
            for i, m in enumerate(self.matchers):
                if not m.is_stopped():
                    m.consume_token(int(input_ids[i, -1]))
        self.bitmask.fill_(-1)
        done = torch.zeros(rows, dtype=torch.bool)
        for i, m in enumerate(self.matchers):
            if m.is_stopped() or m.is_error():
                done[i] = True
            else:
                lt.fill_next_token_bitmask(m, self.bitmask, i)
        masked = scores[:, : self.tokenizer.vocab_size].clone()
        lt.apply_token_bitmask_inplace(masked, self.bitmask.to(masked.device))
        out = torch.full_like(scores, float("-inf"))
        out[:, : masked.shape[1]] = masked
        if done.any():  # a row whose grammar is complete may only end
            out[done] = float("-inf")
            out[done.nonzero().flatten()[:, None], torch.tensor(self.eos)] = 0.0
        return out


def embedded_backend(settings: Settings) -> TransformersBackend:
    """The embedded default model (assembled, verified and dequantized on first use)."""
    from stackmind.llm.embedded import MODEL_NAME, ensure_model

    model_dir = settings.model_path or ensure_model(settings)
    adapter = _promoted_adapter(settings)
    return TransformersBackend(
        model_dir, device=settings.device, threads=settings.torch_threads, adapter=adapter,
        name=f"transformers:{MODEL_NAME}" if settings.model_path is None else None,
    )


def _promoted_adapter(settings: Settings) -> Path | None:
    """The promoted LoRA adapter, when consolidation has promoted one (``adapters/current``)."""
    current = settings.adapters_dir / "current"
    return current.resolve() if (current / "adapter_config.json").is_file() else None
