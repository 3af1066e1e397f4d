"""One deployment on localhost, as processes: `stackmind serve` (the embedded model behind an
OpenAI-compatible API), any number of `stackmind telegram` webhook workers, all on one PostgreSQL
database and one Chroma server, behind the fake Bot API (which round-robins updates over the workers,
standing in for the load balancer). Used by tests/interfaces/test_deployment.py and bench/deploy.py.

    with Deployment(root, database_url=..., chroma_url=..., gguf=..., users=[...]) as d:
        d.start_model_server()
        d.start_workers(2)
        sent = d.send_round(messages)  # users write; d.wait_answered(...) waits for every reply
        d.latencies(sent)              # per message: seconds from sending it to its reply's final text

Each process has a home of its own (as on separate hosts); what they share is the services.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from stackmind.settings import Settings
from stackmind.storage import open_episodes, open_store
from stackmind.trace import Episode

from .servers import free_port
from .telegram_server import FakeTelegram, SentMessage

ROOT = Path(__file__).resolve().parents[2]
SECRET = "deploy-test-secret-0123456789"
# Every process's learning policies (./policies in its folder): one small policy, so the agent's prompts
# stay short and the consolidation gate measures its held-out example's loss. Its matcher is a judge, which
# the gate's policy check leaves out: that check runs the agent on transformers, many minutes on a CPU.
POLICY = """\
name: secret_word
description: Answer questions about the secret word.
examples:
  - goal: What is the secret word of the lighthouse?
    response: "Final answer: zanzibar"
    answer: zanzibar
  - goal: Tell me the secret word of the harbour.
    response: "Final answer: zanzibar"
    answer: zanzibar
  - goal: Which secret word opens the harbour gate?
    response: "Final answer: zanzibar"
    answer: zanzibar
    match: {kind: judge, value: "names zanzibar as the secret word"}
    split: heldout
training:
  slow: {weight: 2}
"""
SERVED = Settings.model_fields["model"].default


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stop(self, timeout: float = 60) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Deployment:
    root: Path
    database_url: str
    chroma_url: str
    gguf: Path
    users: list[int]
    chroma_database: str = "default_database"
    chat: dict[str, str] = field(default_factory=lambda: {
        "STACKMIND_CHAT_MAX_REPLY_TOKENS": "16", "STACKMIND_CHAT_MAX_STEPS": "1",
        "STACKMIND_CHAT_RENDER_BUDGET_TOKENS": "512", "STACKMIND_DEMOS": "0", "STACKMIND_RECALL_K": "2"})
    slots: int = 8
    fake: FakeTelegram = field(default_factory=FakeTelegram)
    model_server: Process | None = None
    workers: list[Process] = field(default_factory=list)

    # ---- processes --------------------------------------------------------------------------------
    def env(self, name: str, **extra: str) -> dict[str, str]:
        """What a process of this deployment sees: the services, a home of its own, nothing else of ours."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STACKMIND_", "TELEGRAM_"))}
        home = self.root / name / "home"
        (self.root / name / "policies").mkdir(parents=True, exist_ok=True)
        (self.root / name / "policies" / "secret_word.policy.yaml").write_text(POLICY)
        env.update({
            "STACKMIND_HOME": str(home), "PYTHONPATH": str(ROOT),
            "STACKMIND_DATABASE_URL": self.database_url, "STACKMIND_CHROMA_URL": self.chroma_url,
            "STACKMIND_CHROMA_DATABASE": self.chroma_database,
            "STACKMIND_BACKEND": "openai", "STACKMIND_OPENAI_BASE_URL": self.model_url,
            "STACKMIND_OPENAI_TIMEOUT_S": "600", "STACKMIND_OPENAI_ADAPTER_REFRESH_S": "2",
            **self.chat, **extra,
        })
        for var in ("STACKMIND_CACHE", "STACKMIND_TEST_CACHE"):
            if var in os.environ:
                env[var] = os.environ[var]
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Process:
        log = self.root / f"{name}.log"
        proc = subprocess.Popen([sys.executable, "-m", "stackmind.interfaces.cli", *args], env=env,
                                cwd=self.root / name, stdout=subprocess.DEVNULL,
                                stderr=open(log, "wb"))  # noqa: SIM115 (a pipe would fill and block it)
        return Process(name, proc, log)

    @property
    def model_url(self) -> str:
        return self.model_server.url if self.model_server else ""

    def start_model_server(self, timeout: float = 240) -> Process:
        port = free_port()
        env = self.env("model-server", STACKMIND_BACKEND="llamacpp", STACKMIND_LLAMACPP_SLOTS=str(self.slots),
                       STACKMIND_MODEL_PATH=str(self.gguf))
        self.model_server = self._spawn("model-server", ["serve", "--port", str(port)], env)
        self.model_server.url = f"http://127.0.0.1:{port}/v1"
        self._wait(self.model_server, self.model_server.url + "/models", timeout)
        return self.model_server

    def start_workers(self, n: int, timeout: float = 240) -> list[Process]:
        assert self.model_server is not None, "start the model server first"
        started = []
        for _ in range(n):
            i = len(self.workers) + 1
            port = free_port()
            url = f"http://127.0.0.1:{port}/telegram"
            env = self.env(f"worker-{i}", TELEGRAM_BOT_TOKEN=self.fake.token,
                           STACKMIND_TELEGRAM_BASE_URL=self.fake.base_url,
                           STACKMIND_TELEGRAM_ALLOWED_USERS=",".join(map(str, self.users)),
                           STACKMIND_TELEGRAM_WEBHOOK_URL=url, STACKMIND_TELEGRAM_WEBHOOK_SECRET=SECRET,
                           STACKMIND_TELEGRAM_SHUTDOWN_GRACE_S="60")
            worker = self._spawn(f"worker-{i}", ["telegram", "--webhook-listen", f"127.0.0.1:{port}"], env)
            worker.url = url
            self.workers.append(worker)
            started.append(worker)
        for w in started:
            self._wait(w, w.url.rsplit("/", 1)[0] + "/health", timeout)
        self.fake.balance([w.url for w in self.workers if w.alive()])
        return started

    def consolidate(self, *args: str, timeout: float = 900, **extra: str) -> subprocess.CompletedProcess[str]:
        """`stackmind consolidate ARGS` in a process of its own (the nightly unit's job), on the same services."""
        env = self.env("consolidate", **extra)
        return subprocess.run([sys.executable, "-m", "stackmind.interfaces.cli", "consolidate", *args], env=env,
                              cwd=self.root / "consolidate", capture_output=True, text=True, timeout=timeout)

    @staticmethod
    def _wait(p: Process, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited ({p.proc.returncode}): {p.tail()}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{p.name} did not answer {url} within {timeout:.0f} s: {p.tail()}")
            time.sleep(0.3)

    def __enter__(self) -> Deployment:
        (self.root).mkdir(parents=True, exist_ok=True)
        self.fake.__enter__()
        return self

    def stop_workers(self) -> None:
        for w in self.workers:  # SIGTERM: each finishes what it is answering, then exits
            if w.alive():
                w.proc.terminate()
        for w in self.workers:
            w.stop(90)

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop_workers()
            if self.model_server is not None:
                self.model_server.stop()
        finally:
            self.fake.__exit__()

    # ---- load -----------------------------------------------------------------------------------------
    def send_round(self, messages: int, tag: str = "m") -> dict[int, list[tuple[str, int, float]]]:
        """Every user writes ``messages`` messages, interleaved (user after user, message after message).
        Returns per user: (text, message id, monotonic time sent)."""
        sent: dict[int, list[tuple[str, int, float]]] = {u: [] for u in self.users}
        for k in range(messages):
            for u in self.users:
                text = f"u{u} says {tag}{k}"
                sent[u].append((text, self.fake.send_text(u, text), time.monotonic()))
        return sent

    def finals(self, user: int) -> list[SentMessage]:
        """The bot's finished answers in a chat (the messages with the thumbs), in delivery order."""
        return [m for m in self.fake.messages(user) if m.buttons]

    def chat_episodes(self, user: int) -> list[Episode]:
        settings = self.reader_settings()
        with open_episodes(settings) as store:
            eps = [e for e in store.episodes() if e.stack == f"telegram-{user}" and e.meta.get("kind") == "chat-turn"]
        return sorted(eps, key=lambda e: e.created)

    def reader_settings(self) -> Settings:
        from pydantic import SecretStr

        return Settings(home=self.root / "reader", database_url=SecretStr(self.database_url), chroma_url=self.chroma_url,
                        chroma_database=self.chroma_database)

    def goals(self, user: int) -> list[str]:
        """The user messages on the chat's stack, in stack order (each goal frame is a turn's messages)."""
        store = open_store(self.reader_settings())
        try:
            return [line for f in store.frames(f"telegram-{user}") if f.kind == "goal" for line in f.text.split("\n")]
        finally:
            store.close()

    def pending(self) -> list[str]:
        store = open_store(self.reader_settings())
        try:
            return store.inbox_chats()
        finally:
            store.close()

    def wait_answered(self, sent: dict[int, list[tuple[str, int, float]]], timeout: float) -> float:
        """Until every message sent has a delivered reply; returns the monotonic time the last one was final."""
        want = {u: {mid for _, mid, _ in msgs} for u, msgs in sent.items()}
        last_check = [0.0]
        deadline = time.monotonic() + timeout

        def answered() -> bool:
            if time.monotonic() - last_check[0] < 1.0:  # read the database at most once a second
                return False
            last_check[0] = time.monotonic()
            dead = [w.name for w in self.workers if not w.alive()]
            if dead:
                raise RuntimeError(f"workers died: {dead}: {[w.tail(1500) for w in self.workers if not w.alive()]}")
            return not self.pending() and all(self._covered(u) >= want[u] for u in self.users)

        while not answered():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not every message was answered in {timeout:.0f} s; still queued: {self.pending()}; "
                                   f"logs: {[w.tail(800) for w in self.workers]}")
            time.sleep(0.2)
        return max(m.final_at for u in self.users for m in self.finals(u))

    def _covered(self, user: int) -> set[int]:
        """Message ids in this chat that a delivered reply answers (a reply answers a turn's messages:
        the one it replies to and those queued with it)."""
        turns = self.turns(user)
        return {mid for msgs, _ in turns for mid in msgs}

    def turns(self, user: int) -> list[tuple[list[int], SentMessage]]:
        """(the message ids a turn answered, its delivered reply), in order: the replies in delivery order
        against the chat's turns in order (each episode's ``messages`` says how many it answered)."""
        asked = [mid for mid, m in sorted(self.fake.user_messages.items()) if m["chat"]["id"] == user
                 and not m.get("text", "").startswith("/")]
        finals = self.finals(user)
        out, i = [], 0
        for episode, final in zip(self.chat_episodes(user), finals, strict=False):
            n = int(episode.meta.get("messages", 1))
            out.append((asked[i:i + n], final))
            i += n
        return out

    def latencies(self, sent: dict[int, list[tuple[str, int, float]]]) -> list[float]:
        at = {mid: t for msgs in sent.values() for _, mid, t in msgs}
        return [final.final_at - at[mid] for u in self.users for mids, final in self.turns(u) for mid in mids
                if mid in at]

    def answered_by(self) -> dict[str, int]:
        """Turns each worker answered (from its log lines)."""
        return {w.name: w.tail(10_000_000).count("answered telegram-") for w in self.workers}


def summary(latencies: list[float], messages: int, seconds: float) -> dict[str, Any]:
    qs = statistics.quantiles(latencies, n=20, method="inclusive") if len(latencies) > 1 else latencies * 19
    return {"messages": messages, "seconds": round(seconds, 2), "messages_per_s": round(messages / seconds, 3),
            "p50_s": round(statistics.median(latencies), 2), "p95_s": round(qs[18], 2)}
