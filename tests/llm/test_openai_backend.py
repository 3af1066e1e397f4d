"""The openai backend against a real OpenAI-compatible server process (llama.cpp's), and its retry
and concurrency rules against a small scripted HTTP server on localhost."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stackmind.llm import LLM, LLMError, load_llm
from stackmind.llm.openai import OpenAIBackend
from stackmind.settings import Settings
from stackmind.stepformat import FormatError, StepFormat

SERVED = Settings.model_fields["model"].default  # the name both servers answer to


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=["llama.cpp server", "stackmind serve"])
def llama_server(request: pytest.FixtureRequest, embedded_gguf: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real OpenAI-compatible server process on the embedded model: llama-cpp-python's server (an
    implementation that is not ours), and our own `stackmind serve`; every test runs against both."""
    port = free_port()
    base = tmp_path_factory.mktemp("llama")
    log = base / "server.log"
    if request.param == "llama.cpp server":
        cmd = [sys.executable, str(Path(__file__).parents[1] / "fakes" / "llama_server.py"), "--model", str(embedded_gguf),
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "2"]
        env = None
    else:
        cmd = [sys.executable, "-m", "stackmind.interfaces.cli", "serve", "--port", str(port)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("STACKMIND_")}
        env.update(STACKMIND_HOME=str(base / "home"), STACKMIND_MODEL_PATH=str(embedded_gguf),
                   STACKMIND_LLAMACPP_SLOTS="4", PYTHONPATH=str(Path(__file__).parents[2]))
    proc = subprocess.Popen(
        cmd, env=env,
        stdout=subprocess.DEVNULL, stderr=open(log, "w"),  # noqa: SIM115 (a pipe would fill and block it)
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{request.param} exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(url + "/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{request.param} did not start in 180 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
@pytest.mark.server
def test_real_server_batch_chat_and_completion(llama_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKMIND_BACKEND", "openai")
    monkeypatch.setenv("STACKMIND_OPENAI_BASE_URL", llama_server)
    llm = load_llm(Settings())
    q = [{"role": "user", "content": "What is 2 + 2? Answer with the number only."}]
    gen = llm.generate([q, "def add(a, b):\n    return", q], n=2, max_tokens=8, temperature=0.0, stop=["\n"])
    assert [len(t) for t in gen.texts] == [2, 2, 2]  # n honoured even when the server returns one choice
    assert "4" in gen.texts[0][0] and "4" in gen.texts[2][1]
    assert "a + b" in gen.texts[1][0] and "\n" not in gen.texts[1][0]
    assert gen.usage.calls == 1 and gen.usage.prompts == 3
    assert gen.usage.prompt_tokens > 10 and gen.usage.completion_tokens > 0


@pytest.mark.slow
@pytest.mark.server
def test_real_server_enforces_the_step_grammar(llama_server: str) -> None:
    """The grammar goes in the request and the server enforces it: every reply is one step."""
    fmt = StepFormat.for_names({"python": "run Python in a sandbox"})
    goals = ["What is 17 * 23?", "Tell me a joke.", "Write a haiku about the sea.", "Reverse the word 'stack'."]
    llm = LLM(OpenAIBackend(llama_server, SERVED))
    gen = llm.generate([fmt.messages(f"[goal] {g}", g) for g in goals], max_tokens=80, temperature=0.9,
                       seed=5, grammar=fmt.grammar())
    replies, parsed = gen.first, 0
    for i, r in enumerate(replies):
        try:
            fmt.parse(r)
            parsed += 1
        except FormatError:
            assert gen.cut(i), r  # the only reply that may not parse is one max_tokens cut (the server says so)
    assert parsed >= 2, replies
    free = llm.generate(["Write a haiku about the sea:"], max_tokens=24, temperature=0.0).first[0]
    with pytest.raises(FormatError):
        fmt.parse(free)  # and without it the same server writes free text: the test can fail


@pytest.mark.slow
@pytest.mark.server
def test_real_server_streams(llama_server: str) -> None:
    pieces: list[str] = []
    llm = LLM(OpenAIBackend(llama_server, SERVED))
    text = llm.generate([[{"role": "user", "content": "Count from 1 to 20, separated by commas."}]], max_tokens=60,
                        temperature=0.0, on_text=lambda i, j, d: pieces.append(d)).first[0]
    assert len(pieces) > 5 and "".join(pieces) == text


@pytest.mark.slow
@pytest.mark.server
def test_chat_on_the_server_backend_answers_at_length(llama_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chat message is a goal of the agent's loop on the server backend; a long answer is not cut."""
    import asyncio

    from stackmind.interfaces.chat import ChatRef, ChatSettings, Conversations

    monkeypatch.setenv("STACKMIND_BACKEND", "openai")
    monkeypatch.setenv("STACKMIND_OPENAI_BASE_URL", llama_server)
    settings = Settings(memory=False).ensure_dirs()
    llm = load_llm(settings)
    shown: list[str] = []

    async def main() -> str:
        async with Conversations(settings, llm, config=ChatSettings(memory=False)) as conv:
            reply = await conv.say(ChatRef("chat-t", "local:t"),
                                   "Explain in detail, in about 150 words, how a hash table works.", _record)
            return reply.text

    async def _record(text: str) -> None:
        shown.append(text)

    text = asyncio.run(main())
    assert len(text.split()) > 40, text  # far more than the 24 tokens the old chat path cut replies to
    assert shown and text.startswith(shown[0][:10])  # it streamed


@pytest.mark.slow
@pytest.mark.server
def test_real_server_seeded_sampling(llama_server: str) -> None:
    llm = LLM(OpenAIBackend(llama_server, SERVED))
    a = llm.generate(["Once upon a time"], max_tokens=8, temperature=1.0, seed=5).first
    b = llm.generate(["Once upon a time"], max_tokens=8, temperature=1.0, seed=5).first
    assert a == b and a[0].strip()


class _Scripted(http.server.ThreadingHTTPServer):
    """Answers /v1/chat/completions: the first `fail` requests with `status`, then successes."""

    def __init__(self, fail: int, status: int) -> None:
        self.fail, self.status = fail, status
        self.seen: list[dict] = []
        self.inflight = self.max_inflight = 0
        self.models: list[str] | None = None  # what GET /v1/models lists (None: 404, as some servers)
        self.model_lists = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Scripted

    def do_GET(self) -> None:  # noqa: N802
        srv = self.server
        srv.model_lists += 1
        if self.path != "/v1/models" or srv.models is None:
            self.send_response(404)
            self.end_headers()
            return
        payload = json.dumps({"data": [{"id": m, "object": "model"} for m in srv.models]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv = self.server
        with srv.lock:
            srv.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
            failing = len(srv.seen) <= srv.fail
            srv.inflight += 1
            srv.max_inflight = max(srv.max_inflight, srv.inflight)
        time.sleep(0.05)
        with srv.lock:
            srv.inflight -= 1
        if failing:
            self.send_response(srv.status)
            self.end_headers()
            self.wfile.write(b'{"error": "busy"}')
            return
        text = body["messages"][-1]["content"][::-1]
        data = {"choices": [{"message": {"role": "assistant", "content": text}} for _ in range(body["n"])],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2 * body["n"]}}
        payload = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted(request: pytest.FixtureRequest) -> Iterator[_Scripted]:
    fail, status = getattr(request, "param", (0, 503))
    srv = _Scripted(fail, status)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()


def _url(srv: _Scripted) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


@pytest.mark.parametrize("scripted", [(2, 503), (2, 429)], indirect=True)
def test_retries_with_backoff(scripted: _Scripted) -> None:
    llm = LLM(OpenAIBackend(_url(scripted), "base", retries=3, backoff_s=0.01))
    assert llm.generate([[{"role": "user", "content": "abc"}]]).first == ["cba"]
    assert len(scripted.seen) == 3


def test_concurrency_limit_adapter_and_key(scripted: _Scripted) -> None:
    llm = LLM(OpenAIBackend(_url(scripted), "base", api_key="sk-test", concurrency=3))
    prompts = [[{"role": "user", "content": f"p{i}"}] for i in range(12)]
    gen = llm.generate(prompts, adapter="v0003")
    assert gen.first == [f"p{i}"[::-1] for i in range(12)]  # answers come back in prompt order
    assert 1 < scripted.max_inflight <= 3
    assert {s["model"] for s in scripted.seen} == {"v0003"}
    assert {s["auth"] for s in scripted.seen} == {"Bearer sk-test"}
    assert gen.usage.completion_tokens == 24


def test_asks_for_the_newest_adapter_the_server_serves(scripted: _Scripted) -> None:
    """A worker picks up the adapter consolidation hot-loaded into its server, with no restart."""
    backend = OpenAIBackend(_url(scripted), "base", adapter_refresh_s=0.0)
    llm = LLM(backend)
    ask = [[{"role": "user", "content": "abc"}]]
    llm.generate(ask)  # the server lists nothing (404): the base model
    scripted.models = ["base", "other-lora"]
    llm.generate(ask)  # only adapters of ours count
    scripted.models = ["base", "stackmind-v0001", "stackmind-v0012", "stackmind-v0002"]
    llm.generate(ask)
    llm.generate(ask, adapter="stackmind-v0001")  # a request that names one keeps it (the gate does)
    assert [s["model"] for s in scripted.seen] == ["base", "base", "stackmind-v0012", "stackmind-v0001"]

    backend.adapter_refresh_s = 3600.0
    scripted.models = ["base", "stackmind-v0013"]
    llm.generate(ask)  # within the refresh interval: no new listing
    assert scripted.seen[-1]["model"] == "stackmind-v0012"
    lists = scripted.model_lists
    LLM(OpenAIBackend(_url(scripted), "base", adapter="none")).generate(ask)
    LLM(OpenAIBackend(_url(scripted), "base", adapter="mine")).generate(ask)
    assert [s["model"] for s in scripted.seen[-2:]] == ["base", "mine"]
    assert scripted.model_lists == lists  # neither asked the server what it serves


@pytest.mark.parametrize("scripted", [(99, 400)], indirect=True)
def test_client_error_is_not_retried(scripted: _Scripted) -> None:
    llm = LLM(OpenAIBackend(_url(scripted), "base", retries=3, backoff_s=0.01))
    with pytest.raises(LLMError, match="refused the request"):
        llm.generate([[{"role": "user", "content": "x"}]])
    assert len(scripted.seen) == 1


def test_server_down_gives_clear_error() -> None:
    llm = LLM(OpenAIBackend(f"http://127.0.0.1:{free_port()}", "base", retries=2, backoff_s=0.01))
    t0 = time.monotonic()
    with pytest.raises(LLMError, match="did not answer after 3 tries.*STACKMIND_OPENAI_BASE_URL"):
        llm.generate(["hello"])
    assert time.monotonic() - t0 < 10


def test_openai_backend_needs_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKMIND_BACKEND", "openai")
    with pytest.raises(LLMError, match="STACKMIND_OPENAI_BASE_URL"):
        load_llm(Settings())
