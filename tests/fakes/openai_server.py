"""A scripted OpenAI-compatible server over real HTTP on 127.0.0.1: the model for tests that run the
agent's loop without a language model, and the faulty servers of the reliability suite.

    with ScriptedOpenAI(["Action: @wolfram(query=\"9^9^9^9\")", "Final answer: 42"]) as server:
        env["STACKMIND_BACKEND"] = "openai"; env["STACKMIND_OPENAI_BASE_URL"] = server.url

It answers ``/v1/chat/completions`` and ``/v1/completions`` with the scripted replies in order (the
last one repeats when they run out), and ``/v1/models``. ``mode`` makes it misbehave instead:

- ``"hang"``: accept the connection, read the request, never answer;
- ``"status"``: answer every request with ``status`` (500 by default) and a JSON error body;
- ``"garbage"``: answer 200 with ``garbage`` as the body (not JSON by default);
- ``"no_choices"``: answer 200 with JSON that has no ``choices``.

It records every request body in ``requests``; ``delay`` (seconds) holds each answer back, so a
test can act while a request is in flight.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ScriptedOpenAI:
    def __init__(self, replies: list[str] | None = None, *, mode: str = "ok", status: int = 500,
                 garbage: bytes = b"<html><body>502 Bad Gateway</body></html>", delay: float = 0.0) -> None:
        self.replies = list(replies or ["Final answer: 42"])
        self.delay = delay
        self.mode = mode
        self.status = status
        self.garbage = garbage
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-openai", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> ScriptedOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def _next_reply(self) -> str:
        with self._lock:
            i = sum(1 for r in self.requests if r.get("_answered"))
            return self.replies[min(i, len(self.replies) - 1)]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                self._send(200, json.dumps({"data": [{"id": "scripted", "object": "model"}]}).encode())

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                record: dict[str, Any] = {"path": self.path, **body}
                with fake._lock:
                    fake.requests.append(record)
                if fake.mode == "hang":
                    while not fake._stop.wait(0.2):
                        pass
                    return
                if fake.mode == "status":
                    self._send(fake.status, b'{"error": {"message": "scripted failure"}}')
                    return
                if fake.mode == "garbage":
                    self._send(200, fake.garbage, "text/html")
                    return
                if fake.mode == "no_choices":
                    self._send(200, b'{"object": "chat.completion", "usage": {}}')
                    return
                if fake.delay and fake._stop.wait(fake.delay):
                    return
                text = fake._next_reply()
                with fake._lock:
                    record["_answered"] = True
                n = int(body.get("n") or 1)
                if self.path.endswith("/chat/completions"):
                    choices = [{"index": i, "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop"} for i in range(n)]
                else:
                    choices = [{"index": i, "text": text, "finish_reason": "stop"} for i in range(n)]
                data = {"id": f"scripted-{time.monotonic_ns()}", "object": "chat.completion", "choices": choices,
                        "usage": {"prompt_tokens": 10, "completion_tokens": max(1, len(text) // 4)}}
                self._send(200, json.dumps(data).encode())

        return Handler
