"""The LLM layer: one interface (`LLM` over a `Backend`), several backends.

- ``llamacpp``: in-process llama.cpp on the embedded GGUF file, the default for generation on a CPU
  (continuous batching, prefix reuse, grammars, streaming, LoRA adapters);
- ``transformers``: in-process torch on the dequantized embedded model (what training uses);
- ``openai``: any OpenAI-compatible server (vLLM in production);
- ``vllm``: in-process vLLM on a GPU host (optional extra).
"""

from __future__ import annotations

from stackmind.llm.base import (
    LLM,
    Backend,
    Completion,
    Generation,
    LLMError,
    Message,
    Prompt,
    Request,
    Usage,
)
from stackmind.settings import Settings

__all__ = [
    "LLM", "Backend", "Completion", "Generation", "LLMError", "Message", "Prompt", "Request", "Usage",
    "load_backend", "load_llm",
]


def load_backend(settings: Settings) -> Backend:
    """The backend that settings choose."""
    if settings.backend == "openai":
        from stackmind.llm.openai import OpenAIBackend

        if not settings.openai_base_url:
            raise LLMError("backend 'openai' needs a server: set STACKMIND_OPENAI_BASE_URL (e.g. http://localhost:8000/v1)")
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return OpenAIBackend(
            settings.openai_base_url, settings.model, api_key=key, concurrency=settings.openai_concurrency,
            timeout_s=settings.openai_timeout_s, retries=settings.openai_retries,
            connect_timeout_s=settings.openai_connect_timeout_s, deadline_s=settings.openai_deadline_s,
            adapter=settings.openai_adapter, adapter_refresh_s=settings.openai_adapter_refresh_s,
        )
    if settings.backend == "vllm":
        from stackmind.llm.embedded import ensure_model
        from stackmind.llm.vllm import VLLMBackend

        return VLLMBackend(settings.model_path or ensure_model(settings))
    if settings.backend == "transformers":
        from stackmind.llm.transformers import embedded_backend

        return embedded_backend(settings)
    from stackmind.llm.llamacpp import embedded_llamacpp

    return embedded_llamacpp(settings)


def load_llm(settings: Settings) -> LLM:
    return LLM(load_backend(settings))
