"""`stackmind serve`: the embedded model behind an OpenAI-compatible HTTP API, for several processes.

One `LlamaCppBackend` decodes every request in flight together (continuous batching), so N workers
(bots, chats, a consolidation's gate) share one model and its batches. The API is the subset the
`openai` backend and vLLM clients use:

- ``POST /v1/chat/completions`` and ``POST /v1/completions``: ``n``, ``max_tokens``, ``temperature``,
  ``top_p``, ``stop``, ``seed``, ``stream`` (server-sent events), and a GBNF grammar in ``grammar``
  (llama.cpp's field) or ``structured_outputs.grammar`` (vLLM's); ``model`` names the base model or a
  loaded adapter;
- ``POST /v1/load_lora_adapter`` ``{"lora_name", "lora_path"}`` and ``POST /v1/unload_lora_adapter``
  (vLLM's endpoints): a peft adapter folder is converted to GGUF (`stackmind.llm.lora_gguf`) and
  loaded without a restart: requests running on the old one finish first (`LlamaCppBackend`);
- ``GET /v1/models`` and ``GET /health`` (which also counts the requests made of each model name).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from stackmind.llm.base import LLMError, Request
from stackmind.llm.llamacpp import LlamaCppBackend


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=status)


def create_app(backend: LlamaCppBackend, served_name: str) -> Starlette:
    """The ASGI app over one backend; ``served_name`` is the base model's name in requests."""
    asked: dict[str, int] = {}  # requests per model name (the base or an adapter), for /health

    def request_of(body: dict[str, Any], prompt: Any, on_text: Any = None) -> Request:
        model = body.get("model") or served_name
        asked[model] = asked.get(model, 0) + 1
        grammar = body.get("grammar") or (body.get("structured_outputs") or {}).get("grammar")
        stop = body.get("stop") or ()
        return Request(
            prompts=[prompt], n=int(body.get("n") or 1), max_tokens=int(body.get("max_tokens") or 256),
            temperature=float(body.get("temperature", 0.7)), top_p=float(body.get("top_p", 1.0)),
            stop=tuple([stop] if isinstance(stop, str) else stop), seed=body.get("seed"),
            adapter=None if model == served_name else model, grammar=grammar, on_text=on_text,
        )

    async def complete(http: HTTPRequest, chat: bool) -> Response:
        try:
            body = await http.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        prompt = body.get("messages") if chat else body.get("prompt")
        if not prompt:
            return _error(400, "messages are required" if chat else "prompt is required")
        if body.get("stream"):
            return await stream(body, prompt, chat)
        try:
            out = await asyncio.to_thread(backend.generate, request_of(body, prompt))
        except (LLMError, ValueError, TypeError) as e:
            return _error(400, str(e))
        c = out[0]
        reasons = [(c.finish_reasons[i] if i < len(c.finish_reasons) else "") or "stop" for i in range(len(c.texts))]
        choices = [({"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": reasons[i]} if chat
                    else {"index": i, "text": t, "finish_reason": reasons[i]}) for i, t in enumerate(c.texts)]
        return JSONResponse({
            "id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": body.get("model") or served_name, "choices": choices,
            "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                      "total_tokens": c.prompt_tokens + c.completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": c.cached_tokens}},
        })

    async def stream(body: dict[str, Any], prompt: Any, chat: bool) -> Response:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        def on_text(_i: int, _j: int, delta: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, delta)

        async def run() -> Any:
            try:
                return await asyncio.to_thread(backend.generate, request_of(body, prompt, on_text))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        task = asyncio.create_task(run())

        async def events() -> Any:
            while (delta := await queue.get()) is not None:
                choice = {"index": 0, "delta": {"content": delta}} if chat else {"index": 0, "text": delta}
                yield f"data: {json.dumps({'choices': [choice]})}\n\n"
            try:
                c = (await task)[0]
                usage = {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens}
                end = {"index": 0, "finish_reason": (c.finish_reasons or ["stop"])[0] or "stop"}
                end.update({"delta": {}} if chat else {"text": ""})
                yield f"data: {json.dumps({'choices': [end]})}\n\n"
                yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
            except LLMError as e:
                yield f"data: {json.dumps({'error': {'message': str(e)}})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def chat_completions(http: HTTPRequest) -> Response:
        return await complete(http, chat=True)

    async def completions(http: HTTPRequest) -> Response:
        return await complete(http, chat=False)

    async def load_adapter(http: HTTPRequest) -> Response:
        body = await http.json()
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return _error(400, "lora_name and lora_path are required")
        folder = Path(path)
        try:
            if folder.is_dir() and not (folder / "adapter.gguf").is_file():
                from stackmind.llm.lora_gguf import convert_adapter

                await asyncio.to_thread(convert_adapter, folder)
            await asyncio.to_thread(backend.load_adapter, name, folder)
        except Exception as e:  # a bad adapter is the caller's error; the server goes on
            return _error(400, f"could not load adapter {name!r} from {path}: {e}")
        return Response(f"Success: LoRA adapter '{name}' added successfully.", media_type="text/plain")

    async def unload_adapter(http: HTTPRequest) -> Response:
        body = await http.json()
        name = body.get("lora_name")
        if not name or not backend.unload_adapter(name):
            return _error(404, f"no adapter named {name!r} is loaded")
        return Response(f"Success: LoRA adapter '{name}' removed successfully.", media_type="text/plain")

    async def models(_http: HTTPRequest) -> Response:
        data = [{"id": served_name, "object": "model", "owned_by": "stackmind"}]
        data += [{"id": n, "object": "model", "owned_by": "stackmind", "parent": served_name, "root": p}
                 for n, p in backend.adapters().items()]
        return JSONResponse({"object": "list", "data": data})

    async def health(_http: HTTPRequest) -> Response:
        return JSONResponse({"status": "ok", "model": served_name, "adapters": sorted(backend.adapters()),
                             "requests": dict(asked)})

    return Starlette(routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/load_lora_adapter", load_adapter, methods=["POST"]),
        Route("/v1/unload_lora_adapter", unload_adapter, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ])


def serve(backend: LlamaCppBackend, served_name: str, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the server until SIGINT or SIGTERM (uvicorn)."""
    import uvicorn

    uvicorn.run(create_app(backend, served_name), host=host, port=port, log_level="warning")
