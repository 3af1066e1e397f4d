"""Backend for any OpenAI-compatible server (vLLM in production, llama.cpp's server in tests).

Each prompt of a batch is one request, sent concurrently under a concurrency limit; chat message
lists go to ``/v1/chat/completions``, plain strings to ``/v1/completions``. A request's grammar
(GBNF) goes in the ``grammar`` field (llama.cpp's servers) and in ``structured_outputs`` (vLLM), so the
server enforces it. With ``on_text`` a one-sample request streams (server-sent events). Connection errors,
timeouts, 429 and 5xx are retried with exponential backoff; a server that stays down gives an
`LLMError` that says where and what to check. A LoRA adapter is selected by name through the
``model`` field, as vLLM serves adapters.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import random
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx

from stackmind.llm.base import Completion, LLMError, Prompt, Request, strip_at_stop
from stackmind.stack import approx_tokens

T = TypeVar("T")
_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIBackend:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 120.0,
        retries: int = 4,
        backoff_s: float = 0.5,
    ) -> None:
        base = base_url.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        self.model = model
        self.name = f"openai:{model}@{self.base_url}"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s

    def count_tokens(self, text: str) -> int:
        return approx_tokens(text)

    def generate(self, request: Request) -> list[Completion]:
        return _run_sync(self.agenerate(request))

    async def agenerate(self, request: Request) -> list[Completion]:
        limits = httpx.Limits(max_connections=self.concurrency)
        async with httpx.AsyncClient(headers=self._headers, timeout=self.timeout_s, limits=limits) as client:
            sem = asyncio.Semaphore(self.concurrency)
            return list(await asyncio.gather(*(self._one(client, sem, p, request) for p in request.prompts)))

    async def _one(self, client: httpx.AsyncClient, sem: asyncio.Semaphore, prompt: Prompt,
                   request: Request) -> Completion:
        texts: list[str] = []
        prompt_tokens = completion_tokens = 0
        # Some servers return fewer than n choices: ask again for the rest.
        for _attempt in range(request.n):
            want = request.n - len(texts)
            if want <= 0:
                break
            body = self._body(prompt, request, want, seed_offset=len(texts))
            path = "/chat/completions" if isinstance(prompt, list) else "/completions"
            async with sem:
                if request.on_text is not None and want == 1:
                    index = request.prompts.index(prompt)
                    data = await self._stream(client, path, body,
                                              lambda delta, i=index: request.on_text(i, 0, delta))  # type: ignore[misc]
                else:
                    data = await self._post(client, path, body)
            choices = data.get("choices") or []
            if not choices:
                raise LLMError(f"{self.base_url} answered without choices: {str(data)[:200]}")
            for c in choices[:want]:
                text = c["message"].get("content") or "" if "message" in c else c.get("text", "")
                texts.append(strip_at_stop(text, request.stop))
            usage = data.get("usage") or {}
            prompt_tokens = usage.get("prompt_tokens", prompt_tokens)
            completion_tokens += usage.get("completion_tokens") or sum(approx_tokens(t) for t in texts[-len(choices):])
        return Completion(texts=texts, prompt_tokens=int(prompt_tokens), completion_tokens=int(completion_tokens))

    def _body(self, prompt: Prompt, request: Request, n: int, seed_offset: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.adapter or self.model,
            "n": n,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        body["messages" if isinstance(prompt, list) else "prompt"] = prompt
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed + seed_offset
        if request.grammar:
            # llama.cpp's servers read GBNF from "grammar"; vLLM from structured_outputs (it ignores the other).
            body["grammar"] = request.grammar
            body["structured_outputs"] = {"grammar": request.grammar}
        return body

    async def _stream(self, client: httpx.AsyncClient, path: str, body: dict[str, Any],
                      on_delta: Any) -> dict[str, Any]:
        """One streamed completion (server-sent events), assembled into the shape of a plain answer."""
        url = self.base_url + path
        text, usage = "", {}
        try:
            async with client.stream("POST", url, json={**body, "stream": True,
                                                        "stream_options": {"include_usage": True}}) as r:
                if r.status_code >= 400:
                    detail = (await r.aread()).decode("utf-8", "replace")[:300]
                    raise LLMError(f"{url} refused the streamed request (HTTP {r.status_code}: {detail})")
                async for line in r.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    try:
                        event = json.loads(payload)
                    except ValueError as e:
                        raise LLMError(f"{url} streamed something that is not JSON: {payload[:200]!r}") from e
                    usage = event.get("usage") or usage
                    for c in event.get("choices") or []:
                        delta = (c.get("delta") or {}).get("content") if "delta" in c else c.get("text")
                        if delta:
                            text += delta
                            on_delta(delta)
        except httpx.TransportError as e:
            raise LLMError(f"the streamed request to {url} failed ({type(e).__name__}: {e})") from e
        return {"choices": [{"text": text}], "usage": usage}

    async def _post(self, client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.base_url + path
        last = ""
        for attempt in range(self.retries + 1):
            try:
                r = await client.post(url, json=body)
                if r.status_code < 400:
                    return r.json()
                last = f"HTTP {r.status_code}: {r.text[:300]}"
                if r.status_code not in _RETRY_STATUS:
                    raise LLMError(f"{url} refused the request ({last}); check the model name "
                                   f"{body['model']!r} and the request options")
            except (httpx.TransportError, ValueError) as e:  # connection refused, reset, timeout, bad JSON
                last = f"{type(e).__name__}: {e}"
            if attempt < self.retries:
                await asyncio.sleep(self.backoff_s * 2**attempt * (0.5 + random.random()))
        raise LLMError(
            f"the OpenAI-compatible server at {self.base_url} did not answer after {self.retries + 1} tries "
            f"({last}); is it running, and is STACKMIND_OPENAI_BASE_URL right?"
        )


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when an event loop already runs here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
