"""LLM servers that fail: one that accepts and never answers, one that answers 500, one that answers
garbage with 200. Each is a bounded wait, with progress while retrying, ending in one clear error.

At a9429b1 the first took 10.6 minutes with the default settings (5 tries x 120 s) and printed
``ReadTimeout:`` only; a 200 with a body that is not the OpenAI shape was a KeyError traceback.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from conftest import env_for, one_error_line, stackmind
from fakes.openai_server import ScriptedOpenAI

from stackmind.llm import LLM, LLMError, load_backend
from stackmind.llm.openai import OpenAIBackend
from stackmind.settings import Settings

FAULTS = {
    "never-answers": dict(mode="hang"),
    "answers-500": dict(mode="status", status=500),
    "answers-503": dict(mode="status", status=503),
    "answers-html-with-200": dict(mode="garbage"),
    "answers-json-without-choices": dict(mode="no_choices"),
    "answers-choice-without-text": dict(mode="garbage", garbage=b'{"choices": [{"message": {"role": "x"}}]}'),
    "answers-truncated-json": dict(mode="garbage", garbage=b'{"choices": [{"message": {"content": "he'),
}
WORDS = {
    "never-answers": "deadline", "answers-500": "HTTP 500", "answers-503": "HTTP 503",
    "answers-html-with-200": "not JSON", "answers-json-without-choices": "without choices",
    "answers-choice-without-text": "without text", "answers-truncated-json": "not JSON",
}


@pytest.mark.fault("LLM server fault")
@pytest.mark.parametrize("name", sorted(FAULTS))
def test_the_backend_fails_in_bounded_time_with_progress(name: str, caplog: pytest.LogCaptureFixture) -> None:
    backend = OpenAIBackend("http://placeholder", "m", timeout_s=1.0, connect_timeout_s=1.0, deadline_s=4.0,
                            retries=4, backoff_s=0.1)
    with ScriptedOpenAI(**FAULTS[name]) as server, caplog.at_level(logging.WARNING, "stackmind.llm"):
        backend.base_url = server.url
        t0 = time.monotonic()
        with pytest.raises(LLMError) as e:
            LLM(backend).generate([[{"role": "user", "content": "hi"}]], max_tokens=4)
        took = time.monotonic() - t0
        tries = len(server.requests)
    assert took < 6.0, took  # the deadline, plus at most a moment
    assert WORDS[name] in str(e.value), str(e.value)
    if FAULTS[name]["mode"] in ("garbage", "no_choices"):
        assert tries == 1  # a malformed answer is not retried: it would not change
    else:
        assert tries >= 2 and "retrying in" in caplog.text and "left of the 4 s deadline" in caplog.text


@pytest.mark.fault("LLM server fault")
@pytest.mark.parametrize("name", ["never-answers", "answers-500", "answers-html-with-200", "answers-truncated-json"])
def test_stackmind_run_against_a_faulty_server_is_one_line(name: str, home: Path, work: Path) -> None:
    with ScriptedOpenAI(**FAULTS[name]) as server:
        env = env_for(home, STACKMIND_BACKEND="openai", STACKMIND_OPENAI_BASE_URL=server.url,
                      STACKMIND_OPENAI_TIMEOUT_S="1", STACKMIND_OPENAI_DEADLINE_S="4", STACKMIND_MEMORY="0",
                      STACKMIND_POLICIES="0")
        ran = stackmind(["run", "What is 2 + 2?"], env, work, timeout=90)
    line = one_error_line(ran)
    assert server.url in line and WORDS[name] in line, line
    if FAULTS[name]["mode"] in ("hang", "status"):
        assert "retrying in" in ran.stderr  # progress while it waits


@pytest.mark.fault("LLM server fault")
def test_the_default_waits_fail_within_two_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKMIND_BACKEND", "openai")
    monkeypatch.setenv("STACKMIND_OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    backend = load_backend(Settings())
    assert isinstance(backend, OpenAIBackend)
    # whatever the server does, one request ends by its deadline (retries and back-offs included)
    assert backend.deadline_s <= 120 and backend.timeout_s <= backend.deadline_s
    assert backend.connect_timeout_s <= 10


@pytest.mark.fault("LLM server fault")
def test_a_server_that_refuses_connections_is_retried_then_one_error(caplog: pytest.LogCaptureFixture) -> None:
    backend = OpenAIBackend("http://127.0.0.1:9/v1", "m", timeout_s=1.0, connect_timeout_s=1.0, deadline_s=3.0,
                            retries=3, backoff_s=0.1)
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, "stackmind.llm"), pytest.raises(LLMError) as e:
        LLM(backend).generate(["hi"], max_tokens=4)
    assert time.monotonic() - t0 < 5 and "ConnectError" in str(e.value) and "4 tries" in str(e.value)
    assert caplog.text.count("retrying in") == 3
