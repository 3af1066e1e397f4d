"""In-process vLLM backend for GPU hosts (``pip install 'stackmind[vllm]'``).

One `vllm.LLM.generate` call per batch: vLLM schedules the prompts together (continuous batching).
For several GPUs use ``tensor_parallel_size``; for a shared server use the openai backend instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stackmind.llm.base import Completion, LLMError, Request, strip_at_stop


class VLLMBackend:
    def __init__(self, model: str | Path, *, tensor_parallel_size: int = 1, enable_lora: bool = False,
                 max_lora_rank: int = 64, **engine_kwargs: Any) -> None:
        try:
            import vllm
        except ImportError as e:
            raise LLMError("the vllm backend needs vLLM: pip install 'stackmind[vllm]' on a GPU host") from e
        self._vllm = vllm
        self.name = f"vllm:{Path(str(model)).name}"
        self.engine = vllm.LLM(model=str(model), tensor_parallel_size=tensor_parallel_size,
                               enable_lora=enable_lora, max_lora_rank=max_lora_rank, **engine_kwargs)
        self.tokenizer = self.engine.get_tokenizer()
        self._adapters: dict[str, Any] = {}

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def add_adapter(self, name: str, path: Path | str) -> None:
        from vllm.lora.request import LoRARequest

        self._adapters[name] = LoRARequest(name, len(self._adapters) + 1, str(path))

    def generate(self, request: Request) -> list[Completion]:
        params = self._vllm.SamplingParams(
            n=request.n, max_tokens=request.max_tokens, temperature=request.temperature,
            top_p=request.top_p if request.temperature > 0 else 1.0, stop=list(request.stop) or None,
            seed=request.seed,
        )
        texts = [p if isinstance(p, str) else self.tokenizer.apply_chat_template(
            p, tokenize=False, add_generation_prompt=True) for p in request.prompts]
        lora = None
        if request.adapter is not None:
            if request.adapter not in self._adapters:
                raise LLMError(f"no adapter named {request.adapter!r} was added to this vLLM backend")
            lora = self._adapters[request.adapter]
        outs = self.engine.generate(texts, params, lora_request=lora, use_tqdm=False)
        return [
            Completion(
                texts=[strip_at_stop(o.text, request.stop) for o in out.outputs],
                prompt_tokens=len(out.prompt_token_ids or []),
                completion_tokens=sum(len(o.token_ids) for o in out.outputs),
            )
            for out in outs
        ]
