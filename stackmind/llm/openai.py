"""Backend for any OpenAI-compatible server (vLLM in production, llama.cpp's server in tests).

Each prompt of a batch is one request, sent concurrently under a concurrency limit; chat message
lists go to ``/v1/chat/completions``, plain strings to ``/v1/completions``. A request's grammar
(GBNF) goes in the ``grammar`` field (llama.cpp's servers) and in ``structured_outputs`` (vLLM), so the
server enforces it. With ``on_text`` a one-sample request streams (server-sent events). Connection errors,
timeouts, 429 and 5xx are retried with exponential backoff; a server that stays down gives an
`LLMError` that says where and what to check. A LoRA adapter is selected by name through the
``model`` field, as vLLM serves adapters. With ``adapter="served"`` (the default) the backend asks
the server (``GET /v1/models``, at most every ``adapter_refresh_s``) for the newest adapter that
`stackmind consolidate` hot-loaded there (``stackmind-vNNNN``) and sends its name, so every worker on
that server answers with the promoted adapter as soon as it is loaded, with no restart and nothing
shared but the server; ``adapter="none"`` asks for the base model, any other value names the model.

Every wait is bounded: a connection within ``connect_timeout_s``, the answer's first byte within
``timeout_s``, and each request, all its tries and back-offs together, within ``deadline_s``; each
retry is logged (``stackmind.llm`` at WARNING, which a terminal shows) with what failed and the time
left. An answer that is not the OpenAI shape (not JSON, no ``choices``, a choice without text) is an
`LLMError` at once: retrying a misconfigured endpoint would not change it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import random
import re
import time
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any, TypeVar

import httpx

from stackmind.llm.base import Completion, LLMError, Prompt, Request, strip_at_stop
from stackmind.stack import approx_tokens

T = TypeVar("T")
_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
log = logging.getLogger("stackmind.llm")
ADAPTER_PREFIX = "stackmind-"  # a hot-loaded adapter is served as stackmind-vNNNN (`consolidate.serving`)
SERVED_ADAPTER = re.compile(re.escape(ADAPTER_PREFIX) + r"v(\d{4,})")


class OpenAIBackend:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 60.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        connect_timeout_s: float = 10.0,
        deadline_s: float = 120.0,
        adapter: str = "served",
        adapter_refresh_s: float = 30.0,
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
        self.connect_timeout_s = connect_timeout_s
        self.deadline_s = deadline_s
        self.adapter = adapter
        self.adapter_refresh_s = adapter_refresh_s
        self._served: tuple[float, str | None] | None = None  # (checked at, the adapter's name)

    def count_tokens(self, text: str) -> int:
        return approx_tokens(text)

    def generate(self, request: Request) -> list[Completion]:
        return _run_sync(self.agenerate(request))

    async def agenerate(self, request: Request) -> list[Completion]:
        limits = httpx.Limits(max_connections=self.concurrency)
        timeout = httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s, pool=self.deadline_s)
        async with httpx.AsyncClient(headers=self._headers, timeout=timeout, limits=limits) as client:
            sem = asyncio.Semaphore(self.concurrency)
            if request.adapter is None:
                model = await self.model_for(client)
                if model != self.model:
                    request = replace(request, adapter=model)
            return list(await asyncio.gather(*(self._one(client, sem, p, request) for p in request.prompts)))

    async def model_for(self, client: httpx.AsyncClient) -> str:
        """The model name to ask for: the adapter setting's choice (see the module's doc)."""
        if self.adapter == "none":
            return self.model
        if self.adapter != "served":
            return self.adapter
        now = time.monotonic()
        if self._served is None or now - self._served[0] >= self.adapter_refresh_s:
            self._served = (now, await self._newest_adapter(client))
        return self._served[1] or self.model

    async def _newest_adapter(self, client: httpx.AsyncClient) -> str | None:
        url = self.base_url + "/models"
        try:
            r = await client.get(url, timeout=self.connect_timeout_s)
            ids = [str(m.get("id", "")) for m in r.json().get("data", [])] if r.status_code < 400 else []
        except (httpx.HTTPError, ValueError, AttributeError) as e:
            log.warning("%s: could not list the served models (%s); asking for %s", url, e, self.model)
            return None
        versions = {int(m[1]): i for i in ids if (m := SERVED_ADAPTER.fullmatch(i))}
        ours = [versions[v] for v in sorted(versions)]
        if ours and (self._served is None or self._served[1] != ours[-1]):
            log.info("%s serves adapter %s: requests now ask for it", self.base_url, ours[-1])
        return ours[-1] if ours else None

    async def _one(self, client: httpx.AsyncClient, sem: asyncio.Semaphore, prompt: Prompt,
                   request: Request) -> Completion:
        texts: list[str] = []
        reasons: list[str] = []
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
                reasons.append(str(c.get("finish_reason") or ""))
            usage = data.get("usage") or {}
            prompt_tokens = usage.get("prompt_tokens", prompt_tokens)
            completion_tokens += usage.get("completion_tokens") or sum(approx_tokens(t) for t in texts[-len(choices):])
        return Completion(texts=texts, prompt_tokens=int(prompt_tokens), completion_tokens=int(completion_tokens),
                          finish_reasons=reasons)

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
        text, usage, finish = "", {}, ""
        try:
            async with client.stream("POST", url, json={**body, "stream": True,
                                                        "stream_options": {"include_usage": True}}) as r:
                if r.status_code >= 400:
                    detail = (await r.aread()).decode("utf-8", "replace")[:300]
                    raise LLMError(f"{url} refused the streamed request (HTTP {r.status_code}: {detail})")
                if "text/event-stream" not in r.headers.get("content-type", ""):
                    # A server that does not stream answers in one piece: take it as it is.
                    try:
                        data = json.loads(await r.aread())
                        choice = (data.get("choices") or [{}])[0]
                        text = (choice.get("message") or {}).get("content") or choice.get("text") or ""
                    except (ValueError, AttributeError, IndexError, TypeError) as e:
                        raise LLMError(f"{url} answered something that is not an OpenAI completion") from e
                    if text:
                        on_delta(text)
                    return {"choices": [{"text": text, "finish_reason": choice.get("finish_reason") or ""}],
                            "usage": data.get("usage") or {}}
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
                        finish = c.get("finish_reason") or finish
                        delta = (c.get("delta") or {}).get("content") if "delta" in c else c.get("text")
                        if delta:
                            text += delta
                            on_delta(delta)
        except httpx.TransportError as e:
            raise LLMError(f"the streamed request to {url} failed ({type(e).__name__}: {e})") from e
        return {"choices": [{"text": text, "finish_reason": finish}], "usage": usage}

    async def _post(self, client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.base_url + path
        last = ""
        start = time.monotonic()
        deadline = start + self.deadline_s
        tries = 0
        for attempt in range(self.retries + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                last = f"{last}; the {self.deadline_s:g} s deadline passed before another try"
                break
            tries += 1
            try:
                async with asyncio.timeout(left):
                    r = await client.post(url, json=body)
                if r.status_code < 400:
                    return _checked(r, url)
                last = f"HTTP {r.status_code}: {r.text[:300]}"
                if r.status_code not in _RETRY_STATUS:
                    raise LLMError(f"{url} refused the request ({last}); check the model name "
                                   f"{body['model']!r} and the request options")
            except TimeoutError:
                last = f"no answer within the request's deadline of {self.deadline_s:g} s"
                break
            except httpx.TimeoutException as e:
                last = f"{type(e).__name__}: no {_timeout_what(e, self)}"
            except httpx.TransportError as e:  # connection refused, reset, a body cut short
                last = f"{type(e).__name__}: {e}"
            if attempt < self.retries:
                pause = min(self.backoff_s * 2**attempt * (0.5 + random.random()), max(0.0, deadline - time.monotonic()))
                log.warning("%s: try %d of %d failed (%s); retrying in %.1f s (%.0f s left of the %g s deadline)",
                            self.base_url, attempt + 1, self.retries + 1, last, pause,
                            max(0.0, deadline - time.monotonic()), self.deadline_s)
                await asyncio.sleep(pause)
        raise LLMError(
            f"the OpenAI-compatible server at {self.base_url} did not answer after {tries} "
            f"tr{'y' if tries == 1 else 'ies'} in {time.monotonic() - start:.0f} s ({last}); is it running, and is "
            "STACKMIND_OPENAI_BASE_URL right? (STACKMIND_OPENAI_TIMEOUT_S and STACKMIND_OPENAI_DEADLINE_S bound the wait)"
        )


def _timeout_what(e: httpx.TimeoutException, backend: OpenAIBackend) -> str:
    if isinstance(e, httpx.ConnectTimeout):
        return f"connection within {backend.connect_timeout_s:g} s"
    if isinstance(e, httpx.PoolTimeout):
        return "free connection"
    return f"answer within {backend.timeout_s:g} s"


def _checked(r: httpx.Response, url: str) -> dict[str, Any]:
    """The body of a 2xx answer, if it has the OpenAI shape; else an LLMError saying what came."""
    shown = r.text[:200].replace("\n", " ")
    try:
        data = r.json()
    except ValueError:
        raise LLMError(f"{url} answered {r.status_code} with a body that is not JSON ({shown!r}); is "
                       "STACKMIND_OPENAI_BASE_URL the server's OpenAI-compatible /v1 address?") from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        raise LLMError(f"{url} answered without choices ({shown!r}); is it an OpenAI-compatible server?")
    for c in choices:
        message = c.get("message") if isinstance(c, dict) else None
        if isinstance(message, dict) and "content" in message and isinstance(message["content"], str | None):
            continue
        if isinstance(c, dict) and "message" not in c and isinstance(c.get("text"), str):
            continue
        raise LLMError(f"{url} answered a choice without text ({str(c)[:200]!r}); is it an OpenAI-compatible server?")
    usage = data.get("usage")
    if usage is not None and not (isinstance(usage, dict) and all(
            isinstance(usage.get(k, 0), int | None) for k in ("prompt_tokens", "completion_tokens"))):
        data["usage"] = {}  # token counts are accounting, not the answer: estimate them instead
    return data


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when an event loop already runs here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
