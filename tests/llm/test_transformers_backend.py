"""The transformers backend (training's and the gate's backend, and a serving fallback) really
generates on the embedded model, and a batch really is one batched generate."""

from __future__ import annotations

from typing import Any

import pytest

from stackmind.llm import LLM

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded_llm(tmp_path_factory: pytest.TempPathFactory) -> LLM:
    """The embedded model on the transformers backend (the suite's shared `embedded_llm` is llama.cpp)."""
    import os
    from pathlib import Path

    from stackmind.llm import load_llm
    from stackmind.settings import Settings

    cache = Path(os.environ.get("STACKMIND_TEST_CACHE", Path.home() / ".cache" / "stackmind-test"))
    return load_llm(Settings(home=tmp_path_factory.mktemp("tf-home"), cache=cache, backend="transformers"))


def _count_generate_calls(llm: LLM, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    model = llm.backend.model  # type: ignore[attr-defined]
    real = model.generate
    calls: list[int] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(int(kwargs["input_ids"].shape[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    return calls


def test_batch_is_one_generate_call(embedded_llm: LLM, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_generate_calls(embedded_llm, monkeypatch)
    prompts = ["1, 2, 3, 4,", "a, b, c, d,", [{"role": "user", "content": "Say hello."}]]
    gen = embedded_llm.generate(prompts, n=2, max_tokens=6, temperature=0.8, seed=3)
    assert calls == [3], "three prompts must go to the model as one batch"
    assert [len(t) for t in gen.texts] == [2, 2, 2]
    assert gen.usage.calls == 1 and gen.usage.prompts == 3
    assert 0 < gen.usage.completion_tokens <= 3 * 2 * 6
    assert "5" in gen.texts[0][0] or "5" in gen.texts[0][1]  # it really continues the sequence


def test_greedy_is_deterministic_and_answers(embedded_llm: LLM) -> None:
    msg = [{"role": "user", "content": "What is 2 + 2? Answer with the number only."}]
    a = embedded_llm.generate([msg, msg], max_tokens=5, temperature=0).first
    assert a[0] == a[1] and "4" in a[0]


def test_seed_makes_sampling_repeatable(embedded_llm: LLM) -> None:
    p = ["Once upon a time"]
    one = embedded_llm.generate(p, n=2, max_tokens=8, temperature=1.0, seed=11).texts
    two = embedded_llm.generate(p, n=2, max_tokens=8, temperature=1.0, seed=11).texts
    assert one == two


def test_stop_strings_and_token_accounting(embedded_llm: LLM) -> None:
    gen = embedded_llm.generate(["def add(a, b):\n    return a + b\n\n\ndef sub(a, b):"], max_tokens=24,
                                temperature=0, stop=["\n\n"])
    text = gen.texts[0][0]
    assert "\n\n" not in text and "return" in text
    assert gen.finish_reasons == [["stop"]] and not gen.cut()  # the stop string ended it
    cut = embedded_llm.generate(["Count upwards, separated by commas: 1, 2, 3, 4,"], max_tokens=6, temperature=0)
    assert cut.finish_reasons == [["length"]] and cut.cut() and cut.usage.completion_tokens == 6
    tok = embedded_llm.backend.tokenizer  # type: ignore[attr-defined]
    expected = len(tok("def add(a, b):\n    return a + b\n\n\ndef sub(a, b):", add_special_tokens=False)["input_ids"])
    assert gen.usage.prompt_tokens == expected
    assert embedded_llm.count_tokens("hello world") == 2
    assert embedded_llm.usage.calls >= 1
