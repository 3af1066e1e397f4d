"""In-process llama.cpp (llama-cpp-python's low-level API): the embedded default for generation on a CPU.

The GGUF file is read as it is (no dequantizing). One llama.cpp context holds ``slots`` sequences in
a unified KV cache, and ONE worker thread decodes all of them together, the way llama.cpp's server
does (continuous batching):

- every iteration builds one ``llama_batch``: the next token of every sequence that is generating,
  then chunks of the prompts of sequences that are still reading theirs, up to ``n_batch`` tokens;
- a request from any thread joins at the next iteration, so a search's batch of prompts and many
  chats' replies share each forward pass, and a new chat never waits for a long reply to end;
- prefix reuse: a sequence starts in the slot whose cached tokens share the longest prefix with its
  prompt, or copies that prefix from another slot (``llama_memory_seq_cp``: cells are shared, not
  duplicated), so a step's prompt re-reads only what changed since the last one, and search siblings
  and the ``n`` samples of one prompt read their common prefix once. ``Completion.cached_tokens``
  counts what was reused; ``prompt_tokens - cached_tokens`` is what was evaluated;
- grammars (GBNF, `Request.grammar`) are enforced by llama.cpp's grammar sampler. A token is first
  sampled without the grammar and checked against it; only when it is rejected is the grammar applied
  to the whole vocabulary (as llama.cpp's own sampling does), so a grammar costs little when the
  model already follows it;
- text streams to `Request.on_text` as it is generated (held back only while it may be the start of
  a stop string);
- a sample stuck in a loop (`stackmind.llm.base.loops`: one span repeated over 48 tokens or more)
  ends there, as "length", rather than at max_tokens (``stats["loops_stopped"]`` counts them);
- LoRA adapters (GGUF, converted from peft by `stackmind.llm.lora_gguf`) are applied to the whole
  context: a request for another adapter waits until the sequences running on the current one end,
  then the adapter is switched and the prefix cache dropped (its keys and values came from other
  weights).

The CPU's extra buffer types (AMX, repacked weights) are off: on some virtual machines the CPU
reports AMX but the kernel does not enable it, and the first matrix product dies with SIGILL.
"""

from __future__ import annotations

import ctypes
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stackmind.llm.base import Completion, LLMError, Prompt, Request, loops

DEFAULT_SLOTS = 8
DEFAULT_SLOT_CTX = 4096  # tokens one sequence may hold (prompt + reply)
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


def _lib() -> Any:
    try:
        import llama_cpp
        from llama_cpp import _logger
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise LLMError("the llamacpp backend needs llama-cpp-python: pip install -e . (it is a dependency)") from e
    _logger.set_verbose(False)
    return llama_cpp


_backend_ready = threading.Lock()
_backend_inited = False


def _init_backend(L: Any) -> None:
    global _backend_inited
    with _backend_ready:
        if not _backend_inited:
            L.llama_backend_init()
            _backend_inited = True


@dataclass
class _Slot:
    index: int
    tokens: list[int] = field(default_factory=list)  # what this sequence id holds in the KV cache
    seq: _Seq | None = None  # the sequence using it now
    used: float = 0.0  # last time it was (re)assigned: the least recently used idle slot is reused first


@dataclass
class _Seq:
    """One sample of one prompt, from admission to its last token."""

    job: _Job
    prompt_index: int
    sample_index: int
    tokens: list[int]  # prompt tokens
    seed: int
    slot: _Slot | None = None
    fed: int = 0  # prompt tokens in the KV cache so far
    cached: int = 0  # prompt tokens that were reused from the cache
    generated: list[int] = field(default_factory=list)
    raw: bytes = b""
    text: str = ""
    streamed: int = 0  # characters of text already passed to on_text
    chain: Any = None  # sampler chain (temperature, top-p, dist or greedy)
    grammar: Any = None  # grammar sampler, checked separately
    row: int = -1  # the batch row whose logits this sequence samples from next
    fork_of: _Seq | None = None  # a sample of the same prompt: shares that sequence's prompt cells
    done: bool = False
    finish: str = ""  # stop | length
    error: str | None = None

    @property
    def reading(self) -> bool:
        return self.fed < len(self.tokens)


@dataclass
class _Job:
    request: Request
    adapter: str | None
    seqs: list[_Seq] = field(default_factory=list)
    left: int = 0
    event: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class LlamaCppBackend:
    """A `Backend` over one llama.cpp context; `generate` is safe to call from many threads at once."""

    caches_prefixes = True  # a prompt read once stays in the KV cache for the next that starts with it

    def __init__(
        self,
        gguf: Path | str,
        *,
        slots: int = DEFAULT_SLOTS,
        slot_ctx: int = DEFAULT_SLOT_CTX,
        n_batch: int = 512,
        threads: int | None = None,
        adapter: Path | str | None = None,
        name: str | None = None,
    ) -> None:
        L = _lib()
        _init_backend(L)
        self._L = L
        self.path = Path(gguf)
        if not self.path.is_file():
            raise LLMError(f"{self.path}: no such GGUF file")
        self.name = name or f"llamacpp:{self.path.stem}"
        t0 = time.perf_counter()
        mp = L.llama_model_default_params()
        if hasattr(mp, "use_extra_bufts"):
            mp.use_extra_bufts = False  # see the module docstring: AMX can be reported but unusable
        self._model = L.llama_model_load_from_file(str(self.path).encode(), mp)
        if not self._model:
            raise LLMError(f"llama.cpp could not load {self.path}: is it a GGUF model file?")
        self._vocab = L.llama_model_get_vocab(self._model)
        self.n_vocab = L.llama_vocab_n_tokens(self._vocab)
        self.slot_ctx = slot_ctx
        self.n_batch = n_batch
        cp = L.llama_context_default_params()
        cp.n_ctx = slots * slot_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = n_batch
        cp.n_seq_max = slots
        cp.kv_unified = True  # one pool of cells: prefixes shared across sequences by seq_cp
        n_threads = threads or max(1, os.cpu_count() or 1)
        cp.n_threads = n_threads
        cp.n_threads_batch = n_threads
        self._ctx = L.llama_init_from_model(self._model, cp)
        if not self._ctx:
            raise LLMError(f"llama.cpp could not create a context of {slots} x {slot_ctx} tokens; lower the slots")
        self._mem = L.llama_get_memory(self._ctx)
        self._batch = L.llama_batch_init(n_batch, 0, slots)
        self._slots = [_Slot(i) for i in range(slots)]
        self._template = self._chat_template()
        self._eos_text = self._meta("tokenizer.ggml.eos_token_id")
        self._piece = ctypes.create_string_buffer(256)
        # Adapters: name -> llama_adapter_lora pointer. ``_active`` is the one applied now.
        self._adapters: dict[str, Any] = {}
        self._adapter_paths: dict[str, str] = {}
        self._active_adapter: str | None = None
        self._retired: list[Any] = []
        self.default_adapter: str | None = None
        self._queue: deque[_Job] = deque()
        self._clear = False
        self._cv = threading.Condition()
        self._closed = False
        # What the worker did (benchmarks and tests read it): decode iterations, prompt tokens asked
        # for and reused, tokens generated, full-vocabulary grammar passes, most sequences in one batch.
        self.stats = {"iterations": 0, "prompt_tokens": 0, "cached_tokens": 0, "completion_tokens": 0,
                      "grammar_full_passes": 0, "max_batch": 0, "loops_stopped": 0}
        self._worker = threading.Thread(target=self._work, name="stackmind-llamacpp", daemon=True)
        self._worker.start()
        if adapter is not None:
            self.load_adapter("current", adapter)
            self.default_adapter = "current"
        self.load_seconds = time.perf_counter() - t0

    # ---- text ------------------------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = self._L.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def _chat_template(self) -> Any:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        source = self._meta("tokenizer.chat_template")
        if not source:
            return None
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(source)

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 16
        arr = (self._L.llama_token * cap)()
        n = self._L.llama_tokenize(self._vocab, data, len(data), arr, cap, False, special)
        if n < 0:  # pragma: no cover - cap is always enough (a token is at least one byte)
            arr = (self._L.llama_token * -n)()
            n = self._L.llama_tokenize(self._vocab, data, len(data), arr, -n, False, special)
        return list(arr[:n])

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text, special=False))

    def render_prompt(self, prompt: Prompt) -> str:
        """Chat message lists go through the model's own chat template; plain strings as they are."""
        if isinstance(prompt, str):
            return prompt
        if self._template is None:
            raise LLMError(f"{self.path.name} has no chat template: send plain-text prompts")
        return self._template.render(messages=prompt, add_generation_prompt=True)

    def _detok(self, token: int) -> bytes:
        n = self._L.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, False)
        return self._piece.raw[:n] if n > 0 else b""

    # ---- adapters ---------------------------------------------------------------------------------
    def load_adapter(self, name: str, path: Path | str) -> None:
        """Load a GGUF LoRA adapter under ``name`` (replacing one of that name: a hot reload). Requests
        without an adapter use `default_adapter`."""
        path = Path(path)
        if path.is_dir():
            path = path / "adapter.gguf"
        if not path.is_file():
            raise LLMError(f"{path}: no GGUF adapter there (convert a peft adapter with stackmind.llm.lora_gguf)")
        ptr = self._L.llama_adapter_lora_init(self._model, str(path).encode())
        if not ptr:
            raise LLMError(f"llama.cpp could not load the adapter {path}: is it a LoRA GGUF for this model?")
        with self._cv:
            old = self._adapters.get(name)
            self._adapters[name] = ptr
            self._adapter_paths[name] = str(path)
            if self._active_adapter == name:
                self._active_adapter = "\0stale"  # re-applied (and the cache dropped) before the next use
            self._cv.notify_all()
        if old is not None:
            self._retired.append(old)  # freed at close: a sequence may still be running on it

    def clear_cache(self) -> None:
        """Forget every cached prefix (done before the next request starts). Sampling with a seed is
        reproducible from the same cache state; the kernels' rounding depends on the cache's layout."""
        with self._cv:
            self._clear = True
            self._cv.notify_all()

    def unload_adapter(self, name: str) -> bool:
        """Forget an adapter (requests already running on it finish on it); False when none had that name."""
        with self._cv:
            ptr = self._adapters.pop(name, None)
            self._adapter_paths.pop(name, None)
            if ptr is None:
                return False
            self._retired.append(ptr)
            if self.default_adapter == name:
                self.default_adapter = None
            if self._active_adapter == name:
                self._active_adapter = "\0stale"
        return True

    def adapters(self) -> dict[str, str]:
        return dict(self._adapter_paths)

    def _apply_adapter(self, name: str | None) -> None:
        L = self._L
        if name is None:
            L.llama_set_adapters_lora(self._ctx, None, 0, None)
        else:
            arr = (L.llama_adapter_lora_p_ctypes * 1)(self._adapters[name])
            scales = (ctypes.c_float * 1)(1.0)
            if L.llama_set_adapters_lora(self._ctx, arr, 1, scales) != 0:
                raise LLMError(f"llama.cpp could not apply the adapter {name!r} ({self._adapter_paths.get(name)})")
        self._active_adapter = name
        self._forget_cache()  # cached keys and values came from other weights

    # ---- the interface ----------------------------------------------------------------------------
    def generate(self, request: Request) -> list[Completion]:
        adapter = request.adapter if request.adapter is not None else self.default_adapter
        if adapter is not None and adapter not in self._adapters:
            raise LLMError(f"no adapter named {adapter!r} is loaded in this llama.cpp backend "
                           f"(loaded: {', '.join(self._adapters) or 'none'})")
        job = _Job(request, adapter)
        rng = random.Random(request.seed) if request.seed is not None else random.SystemRandom()
        for i, prompt in enumerate(request.prompts):
            tokens = self.tokenize(self.render_prompt(prompt))
            if not tokens:
                tokens = [self._L.llama_vocab_bos(self._vocab)]
            if len(tokens) + request.max_tokens > self.slot_ctx:
                raise LLMError(f"prompt {i} has {len(tokens)} tokens; with max_tokens {request.max_tokens} it "
                               f"does not fit a sequence's {self.slot_ctx}-token context: shorten it")
            first: _Seq | None = None
            for j in range(request.n):
                seq = _Seq(job, i, j, tokens, seed=rng.randrange(1, 2**31))
                if first is None:
                    first = seq
                else:
                    seq.fork_of = first
                job.seqs.append(seq)
        job.left = len(job.seqs)
        if not job.seqs:
            return []
        with self._cv:
            if self._closed:
                raise LLMError("the llama.cpp backend is closed")
            self._queue.append(job)
            self._cv.notify_all()
        job.event.wait()
        if job.error is not None:
            raise LLMError(f"llama.cpp generation failed: {job.error}") from job.error
        out: list[Completion] = []
        for i in range(len(request.prompts)):
            seqs = [s for s in job.seqs if s.prompt_index == i]
            out.append(Completion(
                texts=[s.text for s in seqs], prompt_tokens=len(seqs[0].tokens),
                completion_tokens=sum(len(s.generated) for s in seqs),
                cached_tokens=seqs[0].cached + sum(len(s.tokens) for s in seqs[1:]),
                finish_reasons=[s.finish for s in seqs],
            ))
        return out

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._worker.join(timeout=30)
        L = self._L
        if self._batch is not None:
            L.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            L.llama_free(self._ctx)
            self._ctx = None
        for ptr in list(self._adapters.values()) + self._retired:
            L.llama_adapter_lora_free(ptr)
        self._adapters.clear()
        self._retired = []
        if self._model:
            L.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass

    # ---- the worker -------------------------------------------------------------------------------
    def _work(self) -> None:
        running: list[_Seq] = []
        waiting: deque[_Seq] = deque()
        while True:
            with self._cv:
                while not self._closed and not self._queue and not running and not waiting:
                    self._cv.wait()
                if self._closed:
                    for job in self._queue:
                        self._fail_job(job, LLMError("the llama.cpp backend was closed"))
                    for seq in running + list(waiting):
                        self._fail_job(seq.job, LLMError("the llama.cpp backend was closed"))
                    return
                if self._clear and not running and not waiting:
                    self._forget_cache()
                    self._clear = False
                while self._queue:
                    waiting.extend(self._queue.popleft().seqs)
            try:
                self._admit(running, waiting)
                if running:
                    self._step(running)
            except Exception as e:  # a failed decode fails what it was decoding, never the worker
                for seq in running:
                    self._release(seq)
                    self._fail_job(seq.job, e)
                running.clear()
                self._forget_cache()  # start again from a cache that is known
            for seq in [s for s in running if s.done]:
                running.remove(seq)
                self._release(seq)
                seq.job.left -= 1
                if seq.job.left == 0:
                    seq.job.event.set()

    def _forget_cache(self) -> None:
        """Drop every cached key and value, and what each slot says it holds."""
        self._L.llama_memory_clear(self._mem, True)
        for slot in self._slots:
            slot.tokens = []

    def _fail_job(self, job: _Job, error: BaseException) -> None:
        if job.error is None:
            job.error = error
        job.event.set()

    def _admit(self, running: list[_Seq], waiting: deque[_Seq]) -> None:
        """Give waiting sequences free slots, the one with the longest cached prefix first choice."""
        while waiting:
            seq = waiting[0]
            if seq.job.error is not None:
                waiting.popleft()
                continue
            if seq.job.adapter != self._active_adapter:
                if running:
                    return  # the current adapter's sequences finish first
                if seq.job.adapter is not None and seq.job.adapter not in self._adapters:
                    waiting.popleft()
                    self._fail_job(seq.job, LLMError(f"adapter {seq.job.adapter!r} was unloaded"))
                    continue
                try:
                    self._apply_adapter(seq.job.adapter)
                except Exception as e:  # an adapter llama.cpp will not apply fails the requests for it
                    waiting.popleft()
                    self._fail_job(seq.job, e)
                    continue
            free = [s for s in self._slots if s.seq is None]
            if not free:
                return
            if seq.fork_of is not None and seq.fork_of.slot is not None and seq.fork_of.reading:
                return  # a sample of a prompt being read: it forks when the prompt is in the cache
            if self._sibling_reading(seq):
                return  # a prompt with a longer common prefix is being read: copy it next iteration
            waiting.popleft()
            try:
                self._place(seq, free)
                self._make_samplers(seq)
            except Exception as e:  # a grammar that does not parse, ...: this request fails, not the batch
                if seq.slot is not None:
                    self._release(seq)
                self._fail_job(seq.job, e)
                continue
            running.append(seq)

    def _sibling_reading(self, seq: _Seq) -> bool:
        have = max((_common(s.tokens, seq.tokens) for s in self._slots), default=0)
        reading = [s.seq for s in self._slots if s.seq is not None and s.seq.reading]
        return any(_common(other.tokens, seq.tokens) >= have + 32 for other in reading if other is not None)

    def _place(self, seq: _Seq, free: list[_Slot]) -> None:
        L, mem = self._L, self._mem
        best_free, best_free_len = None, -1
        for s in free:
            n = _common(s.tokens, seq.tokens)
            if n > best_free_len or n == best_free_len and best_free is not None and s.used < best_free.used:
                best_free, best_free_len = s, n
        assert best_free is not None
        # A longer prefix may sit in a slot in use (a sibling's prompt): copy its cells.
        src, src_len = None, best_free_len
        for s in self._slots:
            if s.seq is not None:
                n = _common(s.tokens, seq.tokens)
                if n > src_len:
                    src, src_len = s, n
        slot = best_free
        if src is None:
            keep = min(best_free_len, len(seq.tokens) - 1)  # at least one token is read: its logits are needed
            L.llama_memory_seq_rm(mem, slot.index, keep, -1)
            slot.tokens = slot.tokens[:keep]
        else:
            keep = min(src_len, len(seq.tokens) - 1)
            L.llama_memory_seq_rm(mem, slot.index, -1, -1)
            L.llama_memory_seq_cp(mem, src.index, slot.index, 0, keep)
            slot.tokens = seq.tokens[:keep]
        slot.seq = seq
        slot.used = time.monotonic()
        seq.slot = slot
        seq.fed = seq.cached = keep
        self.stats["cached_tokens"] += keep
        self.stats["prompt_tokens"] += len(seq.tokens)

    def _make_samplers(self, seq: _Seq) -> None:
        L, r = self._L, seq.job.request
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        if r.temperature and r.temperature > 0:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(float(r.temperature)))
            if r.top_p < 1.0:
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(float(r.top_p), 1))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(seq.seed))
        else:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
        seq.chain = chain
        if r.grammar:
            g = L.llama_sampler_init_grammar(self._vocab, r.grammar.encode("utf-8"), b"root")
            if not g:
                L.llama_sampler_free(chain)
                seq.chain = None
                raise LLMError("llama.cpp could not parse the request's grammar (GBNF, root rule 'root')")
            seq.grammar = g

    def _release(self, seq: _Seq) -> None:
        L = self._L
        if seq.chain is not None:
            L.llama_sampler_free(seq.chain)
            seq.chain = None
        if seq.grammar is not None:
            L.llama_sampler_free(seq.grammar)
            seq.grammar = None
        if seq.slot is not None:
            seq.slot.seq = None
            seq.slot = None

    def _step(self, running: list[_Seq]) -> None:
        """One llama_decode over every running sequence, then one sampled token for each that has logits."""
        L, b = self._L, self._batch
        b.n_tokens = 0
        room = self.n_batch

        def add(seq: _Seq, token: int, pos: int, logits: bool) -> None:
            k = b.n_tokens
            b.token[k] = token
            b.pos[k] = pos
            b.n_seq_id[k] = 1
            b.seq_id[k][0] = seq.slot.index  # type: ignore[union-attr]
            b.logits[k] = logits
            b.n_tokens = k + 1
            if logits:
                seq.row = k

        for seq in running:  # generating sequences: one token each
            if not seq.reading and seq.generated and not seq.done and room > 0:
                add(seq, seq.generated[-1], len(seq.tokens) + len(seq.generated) - 1, True)
                seq.slot.tokens.append(seq.generated[-1])  # type: ignore[union-attr]  # in the cache once decoded
                room -= 1
        for seq in running:  # then prompt chunks
            if seq.reading and room > 0:
                take = min(room, len(seq.tokens) - seq.fed)
                for k in range(seq.fed, seq.fed + take):
                    add(seq, seq.tokens[k], k, k == len(seq.tokens) - 1)
                seq.fed += take
                room -= take
                seq.slot.tokens = seq.tokens[: seq.fed]  # type: ignore[union-attr]
        if b.n_tokens == 0:
            return
        rc = L.llama_decode(self._ctx, b)
        if rc != 0:
            raise LLMError(f"llama_decode returned {rc} (the KV cache is full or the batch is invalid)")
        self.stats["iterations"] += 1
        self.stats["max_batch"] = max(self.stats["max_batch"], sum(1 for q in running if q.row >= 0))
        for seq in running:
            if seq.row < 0:
                continue
            row, seq.row = seq.row, -1
            self._sample(seq, row)

    def _sample(self, seq: _Seq, row: int) -> None:
        L = self._L
        token = L.llama_sampler_sample(seq.chain, self._ctx, row)
        if seq.grammar is not None:
            one = np.array([(token, 0.0, 0.0)], dtype=_TOKEN_DATA)
            if not self._grammar_allows(seq.grammar, one):
                token = self._sample_with_grammar(seq, row)
            L.llama_sampler_accept(seq.grammar, token)
        seq.generated.append(token)
        self.stats["completion_tokens"] += 1
        r = seq.job.request
        if L.llama_vocab_is_eog(self._vocab, token):
            self._finish(seq, "stop")
            return
        seq.raw += self._detok(token)
        seq.text = _decode_prefix(seq.raw)
        cut = _find_stop(seq.text, r.stop, seq.streamed)
        if cut is not None:
            seq.text = seq.text[:cut]
            self._finish(seq, "stop")
            return
        if len(seq.generated) >= r.max_tokens or len(seq.tokens) + len(seq.generated) >= self.slot_ctx:
            self._finish(seq, "length")
            return
        if loops(seq.generated):  # stuck repeating itself: it would go on to max_tokens
            self.stats["loops_stopped"] += 1
            self._finish(seq, "length")
            return
        self._stream(seq, final=False)

    def _grammar_allows(self, grammar: Any, data: np.ndarray) -> bool:
        arr = self._token_array(data)
        self._L.llama_sampler_apply(grammar, ctypes.byref(arr))
        return bool(np.isfinite(data["logit"][0]))

    def _token_array(self, data: np.ndarray) -> Any:
        L = self._L
        arr = L.llama_token_data_array()
        arr.data = data.ctypes.data_as(ctypes.POINTER(L.llama_token_data))
        arr.size = len(data)
        arr.selected = -1
        arr.sorted = False
        return arr

    def _sample_with_grammar(self, seq: _Seq, row: int) -> int:
        """The token sampled from the whole vocabulary after the grammar masked what it forbids."""
        L = self._L
        self.stats["grammar_full_passes"] += 1
        logits = np.ctypeslib.as_array(L.llama_get_logits_ith(self._ctx, row), shape=(self.n_vocab,))
        data = np.empty(self.n_vocab, dtype=_TOKEN_DATA)
        data["id"] = np.arange(self.n_vocab, dtype=np.int32)
        data["logit"] = logits
        data["p"] = 0.0
        arr = self._token_array(data)
        L.llama_sampler_apply(seq.grammar, ctypes.byref(arr))
        if not np.isfinite(data["logit"]).any():
            raise LLMError("the grammar allows no token here (it cannot be completed)")
        L.llama_sampler_apply(seq.chain, ctypes.byref(arr))
        chosen = arr.selected if arr.selected >= 0 else int(np.argmax(data["logit"]))
        return int(data["id"][chosen])

    def _stream(self, seq: _Seq, final: bool) -> None:
        cb: Callable[[int, int, str], None] | None = seq.job.request.on_text
        if cb is None:
            return
        text = seq.text
        upto = len(text) if final else len(text) - _stop_hold(text, seq.job.request.stop)
        if upto > seq.streamed:
            delta = text[seq.streamed:upto]
            seq.streamed = upto
            try:
                cb(seq.prompt_index, seq.sample_index, delta)
            except Exception:  # a caller's display must never stop generation
                pass

    def _finish(self, seq: _Seq, reason: str) -> None:
        seq.done = True
        seq.finish = reason
        self._stream(seq, final=True)


def _common(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    x, y = np.asarray(a[:n]), np.asarray(b[:n])
    diff = np.flatnonzero(x != y)
    return int(diff[0]) if len(diff) else n


def _decode_prefix(raw: bytes) -> str:
    """The UTF-8 text of ``raw``, leaving out an incomplete character at its end."""
    for cut in range(0, 4):
        try:
            return raw[: len(raw) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return raw.decode("utf-8", "replace")


def _find_stop(text: str, stops: tuple[str, ...], since: int) -> int | None:
    """Where the first stop string starts in text (searching from a little before ``since``)."""
    best = None
    for s in stops:
        if not s:
            continue
        i = text.find(s, max(0, since - len(s)))
        if i != -1 and (best is None or i < best):
            best = i
    return best


def _stop_hold(text: str, stops: tuple[str, ...]) -> int:
    """How many characters at the end of text could be the start of a stop string (not streamed yet)."""
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    return hold


_PROMOTED: Any = object()


def embedded_llamacpp(settings: Any, adapter: Path | None = _PROMOTED) -> LlamaCppBackend:
    """The embedded default model on llama.cpp (the GGUF file assembled and verified once), with a GGUF
    LoRA adapter: the promoted one unless ``adapter`` is given (None: no adapter)."""
    from stackmind.llm.embedded import MODEL_NAME, assemble_gguf

    gguf = settings.model_path if settings.model_path is not None and str(settings.model_path).endswith(".gguf") \
        else assemble_gguf(settings)
    if adapter is _PROMOTED:
        adapter = promoted_gguf_adapter(settings)
    return LlamaCppBackend(gguf, slots=settings.llamacpp_slots, slot_ctx=settings.llamacpp_ctx,
                           threads=settings.threads, adapter=adapter,
                           name=f"llamacpp:{MODEL_NAME}" if settings.model_path is None else None)


def with_peft_adapter(settings: Any, peft_dir: Path | None) -> LlamaCppBackend:
    """The embedded model on llama.cpp with a peft adapter (a consolidation candidate, a version),
    converted to GGUF beside it first when it is not yet; None: the bare model. How the gate measures
    an adapter on the backend the agent runs on."""
    if peft_dir is None:
        return embedded_llamacpp(settings, adapter=None)
    from stackmind.llm.lora_gguf import GGUF_NAME, convert_adapter

    gguf = Path(peft_dir) / GGUF_NAME
    if not gguf.is_file():
        convert_adapter(Path(peft_dir), gguf)
    return embedded_llamacpp(settings, adapter=gguf)


def promoted_gguf_adapter(settings: Any) -> Path | None:
    """The promoted adapter's GGUF file (``adapters/current/adapter.gguf``), when one was promoted."""
    path = settings.adapters_dir / "current" / "adapter.gguf"
    return path.resolve() if path.is_file() else None

