"""The LLM interface: one client, many backends (httpx style).

A `Backend` has one method, ``generate(request) -> list[Completion]``: a batch of prompts (plain
strings or chat message lists), ``n`` samples each. `LLM` is the client that every part of the
agent talks to: it builds requests and keeps the accounting (calls, tokens, wall seconds) that
benchmarks read. Test doubles implement `Backend`; nothing reaches around it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from stackmind.errors import StackmindError

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}
Prompt = str | list[Message]


class LLMError(StackmindError):
    """The model could not answer: a server that stays down, a missing or corrupt model file."""


LOOP_TOKENS = 48  # a sample whose last 48 tokens or more go round one span is stuck (see `loops`)
LOOP_PERIOD = 64  # the longest span that counts as a loop


def loops(tokens: Sequence[int], least: int = LOOP_TOKENS, period: int = LOOP_PERIOD) -> bool:
    """Does a sample end going round in a loop: one span of at most ``period`` tokens repeated, at
    least three times, over at least ``least`` tokens after its first copy?

    A small model that falls into a loop (a sentence of a printed answer, a list item) stays in it to
    max_tokens: seen in chat, 320 tokens of one sentence, about 9 s of a reply (17.3 s to 8.0 s once
    stopped) that was then sampled again anyway. A backend that decodes itself ends such a sample there, as "length" (it did not end on
    its own). Cheap per token: only the periods at which the last token recurs are checked."""
    n = len(tokens)
    if n <= least:
        return False
    last = tokens[-1]
    for p in range(1, min(period, n // 3) + 1):
        if tokens[-1 - p] != last:
            continue
        need = max(least, 2 * p)
        if need + p <= n and all(tokens[-k] == tokens[-k - p] for k in range(2, need + 1)):
            return True
    return False


@dataclass(frozen=True)
class Request:
    prompts: list[Prompt]
    n: int = 1
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None
    adapter: str | None = None  # a LoRA adapter by name (vLLM serves adapters as model names)
    # A grammar (GBNF, root rule ``root``) every sample must follow; the backend enforces it while decoding.
    grammar: str | None = None
    # Streaming: called with (prompt index, sample index, new text) as text is generated. The text a
    # completion returns is the concatenation of what was streamed for it.
    on_text: Callable[[int, int, str], None] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Completion:
    """The samples for one prompt, with token counts as the backend measured them."""

    texts: list[str]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens reused from the backend's cache (not evaluated again)
    # Why each sample ended: "stop" (end of text or a stop string) or "length" (max_tokens, or a loop
    # the backend stopped: see `loops`); empty when the backend does not say.
    finish_reasons: list[str] = field(default_factory=list)


@dataclass
class Usage:
    calls: int = 0
    prompts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_seconds: float = 0.0
    cached_tokens: int = 0  # of prompt_tokens, those reused from the cache: evaluated = prompt - cached

    def add(self, other: Usage) -> None:
        self.calls += other.calls
        self.prompts += other.prompts
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.wall_seconds += other.wall_seconds
        self.cached_tokens += other.cached_tokens

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.wall_seconds if self.wall_seconds else 0.0

    def to_dict(self) -> dict[str, float]:
        return {
            "calls": self.calls, "prompts": self.prompts, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "wall_seconds": round(self.wall_seconds, 3),
            "completion_tokens_per_s": round(self.tokens_per_second, 3),
            "cached_tokens": self.cached_tokens,
        }


@dataclass
class Generation:
    """What one `LLM.generate` call returns: ``texts[i]`` holds the n samples for prompt i."""

    texts: list[list[str]]
    usage: Usage = field(default_factory=Usage)
    finish_reasons: list[list[str]] = field(default_factory=list)  # per prompt, per sample (may be empty)

    def cut(self, i: int = 0, j: int = 0) -> bool:
        """Did max_tokens (or a loop, `loops`) end sample j of prompt i, rather than the text itself?"""
        reasons = self.finish_reasons[i] if i < len(self.finish_reasons) else []
        return j < len(reasons) and reasons[j] == "length"

    @property
    def first(self) -> list[str]:
        """The first sample of every prompt."""
        return [t[0] for t in self.texts]


@runtime_checkable
class Backend(Protocol):
    name: str

    def generate(self, request: Request) -> list[Completion]: ...

    def count_tokens(self, text: str) -> int: ...


def strip_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut a completion at the first stop string (the stop string itself is not kept)."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


class LLM:
    """The client. ``usage`` accumulates over the client's life; each call's own is returned too."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.usage = Usage()

    @property
    def name(self) -> str:
        return self.backend.name

    def count_tokens(self, text: str) -> int:
        return self.backend.count_tokens(text)

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        n: int = 1,
        max_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 0.95,
        stop: Sequence[str] = (),
        seed: int | None = None,
        adapter: str | None = None,
        grammar: str | None = None,
        on_text: Callable[[int, int, str], None] | None = None,
    ) -> Generation:
        if isinstance(prompts, str):
            raise TypeError("generate takes a list of prompts; wrap a single prompt in a list")
        request = Request(
            prompts=list(prompts), n=n, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
            stop=tuple(stop), seed=seed, adapter=adapter, grammar=grammar, on_text=on_text,
        )
        if not request.prompts:
            return Generation(texts=[])
        t0 = time.perf_counter()
        completions = self.backend.generate(request)
        wall = time.perf_counter() - t0
        if len(completions) != len(request.prompts):
            raise LLMError(f"backend {self.name} answered {len(completions)} of {len(request.prompts)} prompts")
        usage = Usage(
            calls=1, prompts=len(request.prompts),
            prompt_tokens=sum(c.prompt_tokens for c in completions),
            completion_tokens=sum(c.completion_tokens for c in completions),
            wall_seconds=wall, cached_tokens=sum(c.cached_tokens for c in completions),
        )
        self.usage.add(usage)
        return Generation(texts=[c.texts for c in completions], usage=usage,
                          finish_reasons=[list(c.finish_reasons) for c in completions])

    def complete(self, prompt: Prompt, **kw: object) -> str:
        """One prompt, one sample: the text."""
        return self.generate([prompt], **kw).texts[0][0]  # type: ignore[arg-type]
