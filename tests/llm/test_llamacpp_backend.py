"""The llama.cpp backend on the embedded GGUF: batching, prefix reuse, grammars, streaming, threads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from stackmind.llm import LLM, LLMError
from stackmind.llm.llamacpp import LlamaCppBackend
from stackmind.stepformat import FormatError, StepFormat

pytestmark = pytest.mark.slow

PROMPTS = [
    "Count upwards, separated by commas: 1, 2, 3, 4,",
    "List the even numbers, separated by commas: 2, 4, 6, 8,",
    "Count down by one, separated by commas: 900, 899, 898,",
    "List the multiples of five, separated by commas: 5, 10, 15,",
    "The days of the week are Monday, Tuesday,",
]


@pytest.fixture(scope="module")
def backend(embedded_gguf: Path) -> LlamaCppBackend:
    b = LlamaCppBackend(embedded_gguf, slots=8, slot_ctx=2048)
    yield b
    b.close()


def test_starts_fast_from_the_cache(embedded_gguf: Path) -> None:
    t0 = time.perf_counter()
    b = LlamaCppBackend(embedded_gguf, slots=2, slot_ctx=1024)
    started = time.perf_counter() - t0
    try:
        assert LLM(b).complete("1, 2, 3,", max_tokens=3, temperature=0).strip()
    finally:
        b.close()
    assert started < 30  # the benchmark reports the real figure; this only catches a rebuild at start


def test_a_batch_gives_the_same_text_as_one_at_a_time(backend: LlamaCppBackend) -> None:
    """Sequences decoded together do not leak into each other: each gets what it gets alone. llama.cpp's
    CPU kernels are not bitwise invariant to the batch's size (a logit moves by up to about 0.4, the
    quantization's own noise: docs/llm.md), so a near tie may flip late in a continuation; a batching
    bug (a wrong position or sequence id) changes the text from its first tokens."""
    llm = LLM(backend)
    alone = [llm.generate([p], max_tokens=24, temperature=0).texts[0][0] for p in PROMPTS]
    together = llm.generate(PROMPTS, max_tokens=24, temperature=0).first
    assert all(t.strip() for t in alone)
    assert all(a[:24] == b[:24] for a, b in zip(alone, together, strict=True)), (alone, together)
    assert sum(a == b for a, b in zip(alone, together, strict=True)) >= len(PROMPTS) - 1, (alone, together)


def test_prefix_reuse_is_counted(backend: LlamaCppBackend) -> None:
    llm = LLM(backend)
    head = "You are a helpful assistant. " * 20
    first = llm.generate([head + "Name a fruit:"], max_tokens=4, temperature=0)
    again = llm.generate([head + "Name a colour:"], max_tokens=4, temperature=0)
    assert again.usage.cached_tokens >= first.usage.prompt_tokens - 8  # the shared head was not re-read
    assert again.usage.cached_tokens < again.usage.prompt_tokens


def test_samples_share_their_prompt_and_follow_the_seed(backend: LlamaCppBackend) -> None:
    llm = LLM(backend)
    backend.clear_cache()  # from the same cache state (its layout changes the kernels' rounding)
    a = llm.generate(["Write a random word:"], n=3, max_tokens=8, temperature=1.0, seed=7)
    backend.clear_cache()
    b = llm.generate(["Write a random word:"], n=3, max_tokens=8, temperature=1.0, seed=7)
    assert a.texts == b.texts
    assert len(set(a.texts[0])) > 1  # three samples, not one copied
    assert a.usage.cached_tokens >= 2 * (a.usage.prompt_tokens // 3) - 3


def test_grammar_is_enforced(backend: LlamaCppBackend) -> None:
    llm = LLM(backend)
    out = llm.generate(["Is the sky green? Explain at length."], max_tokens=16, temperature=0.9, seed=1, n=4,
                       grammar='root ::= "yes" | "no"').texts[0]
    assert set(out) <= {"yes", "no"}


def test_every_step_reply_parses_under_the_step_grammar(backend: LlamaCppBackend) -> None:
    fmt = StepFormat.for_names({"python": "run Python in a sandbox"})
    goals = ["What is 17 * 23?", "Reverse the word 'stack'.", "What day is it today?", "Tell me a joke.",
             "Write a poem about the sea."]
    prompts = [fmt.messages(f"[goal] {g}", g) for g in goals]
    gen = LLM(backend).generate(prompts, n=2, max_tokens=96, temperature=0.9, seed=3, grammar=fmt.grammar())
    parsed, cut = 0, []
    for i, texts in enumerate(gen.texts):
        for j, t in enumerate(texts):
            try:
                fmt.parse(t)
                parsed += 1
            except FormatError:
                cut.append((t, gen.finish_reasons[i][j]))
    # A grammar cannot make the model finish inside max_tokens: a reply that is not one step is one
    # the limit cut (mid-action), and says so; every reply that ended on its own is a step.
    assert all(reason == "length" for _, reason in cut), cut
    assert parsed >= 8, cut


def test_a_sample_stuck_in_a_loop_ends_early_as_cut(backend: LlamaCppBackend) -> None:
    before = backend.stats["loops_stopped"]
    gen = LLM(backend).generate(["Write the word ha two hundred times, separated by spaces: ha ha ha ha"],
                                max_tokens=300, temperature=0)
    text, usage = gen.texts[0][0], gen.usage
    assert text.split().count("ha") >= 40, text  # it did go round (the prompt asks it to)
    assert usage.completion_tokens < 120, (usage.completion_tokens, text)  # and was stopped well before 300
    assert gen.cut() and backend.stats["loops_stopped"] == before + 1
    # a sample that does not repeat itself runs on: counting is not a loop
    gen = LLM(backend).generate([PROMPTS[0]], max_tokens=80, temperature=0)
    assert gen.usage.completion_tokens == 80 and backend.stats["loops_stopped"] == before + 1


def test_text_streams_as_it_is_generated(backend: LlamaCppBackend) -> None:
    pieces: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    text = LLM(backend).generate([PROMPTS[0]], max_tokens=32, temperature=0,
                                 on_text=lambda i, j, d: pieces.append((time.perf_counter(), d))).texts[0][0]
    done = time.perf_counter()
    assert "".join(d for _, d in pieces) == text
    assert len(pieces) > 5 and pieces[0][0] < t0 + (done - t0) / 2  # the first words came well before the end


def test_stop_strings_cut_and_are_never_streamed(backend: LlamaCppBackend) -> None:
    pieces: list[str] = []
    text = LLM(backend).generate(["Count: 1, 2, 3, 4, 5, 6,"], max_tokens=40, temperature=0, stop=[" 9,"],
                                 on_text=lambda i, j, d: pieces.append(d)).texts[0][0]
    assert "9" not in text and "8" in text
    assert "".join(pieces) == text


def test_threads_share_one_batch(backend: LlamaCppBackend) -> None:
    llm = LLM(backend)
    alone = [llm.generate([p], max_tokens=16, temperature=0).texts[0][0] for p in PROMPTS[:4]]
    got: dict[int, str] = {}

    def ask(i: int) -> None:
        got[i] = llm.generate([PROMPTS[i]], max_tokens=16, temperature=0).texts[0][0]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(4)] == alone


def test_a_prompt_too_long_for_a_sequence_is_refused(backend: LlamaCppBackend) -> None:
    with pytest.raises(LLMError, match="does not fit"):
        LLM(backend).generate(["word " * 3000], max_tokens=8)


def test_an_unknown_adapter_is_refused(backend: LlamaCppBackend) -> None:
    with pytest.raises(LLMError, match="no adapter named"):
        LLM(backend).generate(["hi"], max_tokens=2, adapter="nope")


def test_a_request_that_cannot_start_fails_alone(backend: LlamaCppBackend) -> None:
    """A grammar llama.cpp cannot parse fails its own request; the worker goes on with the others."""
    llm = LLM(backend)
    got: dict[str, object] = {}

    def good() -> None:
        got["good"] = llm.generate(["1, 2, 3,"], max_tokens=4, temperature=0).first[0]

    t = threading.Thread(target=good)
    t.start()
    with pytest.raises(LLMError, match="grammar"):
        llm.generate(["hi"], max_tokens=4, grammar="root ::= (unclosed")
    t.join(60)
    assert not t.is_alive() and "4" in str(got["good"])
    assert llm.generate(["a, b, c,"], max_tokens=3, temperature=0).first[0].strip()
