"""Serving the promoted adapter.

- In-process (transformers backend): ``adapters/current`` is loaded at start; nothing to do here.
- vLLM server (backend ``openai`` with ``openai_base_url``): the promoted adapter is hot-loaded with
  ``POST /v1/load_lora_adapter {"lora_name", "lora_path"}`` (the server must run with
  ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` and ``--enable-lora``); requests then select it by
  passing its name as the model. The name served is recorded in ``adapters/served.json``.
- `vllm_serve_command` builds the ``vllm serve`` command line for a GPU host.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import httpx

from stackmind.consolidate.registry import AdapterRegistry, AdapterVersion, record_served
from stackmind.errors import StackmindError
from stackmind.llm.openai import ADAPTER_PREFIX
from stackmind.settings import Settings


class HotLoadError(StackmindError, RuntimeError):
    """The vLLM server refused or could not be reached; the message says what to check."""


def adapter_name(version: AdapterVersion) -> str:
    """The model name the adapter is served as (what the openai backend's ``adapter="served"`` finds)."""
    return f"{ADAPTER_PREFIX}{version.name}"


def _v1(base_url: str) -> str:
    base = base_url.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


def hot_load(settings: Settings, version: AdapterVersion, *, timeout_s: float = 60.0) -> str:
    """Load ``version`` into the configured vLLM server; return the model name that selects it."""
    if not settings.openai_base_url:
        raise HotLoadError("no server configured: set STACKMIND_OPENAI_BASE_URL to the vLLM server")
    name = adapter_name(version)
    url = _v1(settings.openai_base_url) + "/load_lora_adapter"
    headers = {}
    if settings.openai_api_key is not None:
        headers["Authorization"] = f"Bearer {settings.openai_api_key.get_secret_value()}"
    body = {"lora_name": name, "lora_path": str(version.path.resolve())}
    try:
        r = httpx.post(url, json=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as e:
        raise HotLoadError(f"could not reach {url} ({type(e).__name__}: {e}): is the vLLM server up?") from e
    if r.status_code == 400 and "already" in r.text.lower():
        pass  # loaded before (a resumed run): the name selects it already
    elif r.status_code == 404:
        raise HotLoadError(f"{url} answered 404: start vLLM with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and "
                           "--enable-lora (see `stackmind serve --vllm`)")
    elif r.status_code >= 400:
        raise HotLoadError(f"{url} refused the adapter ({r.status_code}): {r.text[:300]}; the server must see "
                           f"{body['lora_path']} on its own disk")
    record_served(settings, name, version.name, settings.openai_base_url)
    return name


def vllm_serve_command(settings: Settings, *, max_lora_rank: int | None = None, port: int = 8000,
                       model: str | Path | None = None) -> list[str]:
    """The ``vllm serve`` command that serves the base model with the promoted adapter (and hot-loading)."""
    registry = AdapterRegistry.of(settings)
    if model is None:
        from stackmind.llm.embedded import dequantized_dir

        model = settings.model_path or dequantized_dir(settings)
    ranks = [v.rank for v in registry.versions() if v.rank]
    rank = max_lora_rank or _vllm_rank(max(ranks, default=64))
    cmd = ["vllm", "serve", str(model), "--port", str(port), "--served-model-name", settings.model,
           "--enable-lora", "--max-lora-rank", str(rank)]
    current = registry.current()
    if current is not None:
        cmd += ["--lora-modules", f"{adapter_name(current)}={current.path.resolve()}"]
    return cmd


def _vllm_rank(rank: int) -> int:
    from stackmind.consolidate.config import VLLM_LORA_RANKS

    return next(r for r in VLLM_LORA_RANKS if r >= rank)


def shell_line(cmd: list[str]) -> str:
    return "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True " + " ".join(shlex.quote(c) for c in cmd)
