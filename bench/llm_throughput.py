"""Embedded inference, side by side in one run: llama.cpp (the default) against transformers fp32.

    python bench/llm_throughput.py [--tokens 96] [--repeats 3] [--search-puzzles 3] [--chat 6] [--json PATH]

Figures (medians over interleaved repeats, so both backends see the same machine load):
- model start from the cache (each backend, a fresh object);
- single-stream greedy decode, tokens/s, llama.cpp and transformers, and their ratio;
- a batch of five prompts (search's expansion): aggregate tokens/s, and its ratio to llama.cpp's single stream;
- the distance to the hardware: weight bytes read per decoded token (the GGUF's tensors) times the
  single-stream rate, against this machine's memory bandwidth measured here (a matrix-vector product
  over 512 MB, which is what a decode step is);
- a fixed search workload: BFS over the first ``--search-puzzles`` dev puzzles of the Game of 24 (the
  harder half of the file, seed 0, beam 5, 8 LLM calls), completion tokens/s and puzzles solved, each
  backend (``--no-transformers-search`` leaves the slow one out);
- chat latency through the agent: first visible answer text and the full answer (about 100 tokens
  asked for), p50 over ``--chat`` messages, on llama.cpp.
Writes JSON (default <STACKMIND_HOME>/bench/llm_throughput.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from stackmind.llm import LLM
from stackmind.llm.embedded import assemble_gguf
from stackmind.llm.llamacpp import LlamaCppBackend
from stackmind.llm.transformers import embedded_backend
from stackmind.settings import Settings

PROMPTS = [
    "Count upwards, separated by commas: 1, 2, 3, 4,",
    "List the even numbers, separated by commas: 2, 4, 6, 8,",
    "Count down by one, separated by commas: 900, 899, 898,",
    "List the multiples of five, separated by commas: 5, 10, 15,",
    "List the odd numbers, separated by commas: 1, 3, 5, 7,",
]
CHAT = [
    "Explain what a binary search does, in about 80 words.",
    "Give me three tips for writing clear Python code, in about 80 words.",
    "What is the capital of France, and why is it famous? About 80 words.",
]


def rate(llm: LLM, prompts: list[str], tokens: int) -> float:
    gen = llm.generate(prompts, max_tokens=tokens, temperature=0)
    return gen.usage.completion_tokens / gen.usage.wall_seconds


def bandwidth_gb_s(repeats: int = 5) -> float:
    """Bytes read per second by a float32 matrix-vector product over 512 MB (BLAS, every core)."""
    a = np.ones((8192, 16384), np.float32)
    x = np.ones(16384, np.float32)
    a @ x  # warm (pages touched)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ x
        times.append(time.perf_counter() - t0)
    return a.nbytes / min(times) / 1e9


def weight_bytes(gguf: Path) -> int:
    import gguf as g

    reader = g.GGUFReader(str(gguf))
    return int(sum(t.n_bytes for t in reader.tensors))


def search_workload(llm: LLM, csv: Path, n: int) -> dict[str, float]:
    from stackmind.search import Budget, solve
    from stackmind.tasks.game24 import Game24, Puzzle
    from stackmind.tasks.goals import load_goals

    puzzles = [tuple(int(x) for x in g.text.split(" once")[0].split()[1:]) for g in load_goals("game24", "dev", path=csv)[:n]]
    solved, completion, seconds = 0, 0, 0.0
    for numbers in puzzles:
        result = solve(Game24(Puzzle(numbers)), llm, strategy="bfs", budget=Budget(llm_calls=8), seed=0)
        solved += result.success
        completion += result.usage.completion_tokens
        seconds += result.usage.wall_seconds
    return {"puzzles": len(puzzles), "solved": solved, "completion_tokens": completion,
            "llm_seconds": round(seconds, 1), "completion_tokens_per_s": round(completion / seconds, 2) if seconds else 0}


def chat_latency(settings: Settings, llm: LLM, n: int) -> dict[str, float]:
    import asyncio

    from stackmind.interfaces.chat import ChatRef, ChatSettings, Conversations

    rows = []

    async def main() -> None:
        async with Conversations(settings.model_copy(update={"memory": False}), llm,
                                 config=ChatSettings(memory=False, max_reply_tokens=160)) as conv:
            for i in range(n):
                q = CHAT[i % len(CHAT)]
                reply = await conv.say(ChatRef(f"bench-{i}", "bench"), q)
                rows.append({"first_visible_s": reply.first_visible_s, "total_s": reply.total_s,
                             "tokens": llm.count_tokens(reply.text)})

    asyncio.run(main())
    return {"n": len(rows),
            "first_visible_p50_s": round(statistics.median(r["first_visible_s"] or r["total_s"] for r in rows), 2),
            "full_reply_p50_s": round(statistics.median(r["total_s"] for r in rows), 2),
            "reply_tokens_p50": statistics.median(r["tokens"] for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: every core)")
    ap.add_argument("--search-puzzles", type=int, default=3)
    ap.add_argument("--no-transformers-search", action="store_true")
    ap.add_argument("--csv", type=Path, default=None, help="Game of 24 file (default: the shared one)")
    ap.add_argument("--chat", type=int, default=6)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    settings = Settings()
    out: dict[str, object] = {"model": "qwen2.5-coder-0.5b-instruct", "tokens": args.tokens, "repeats": args.repeats}
    gguf = assemble_gguf(settings)

    t0 = time.perf_counter()
    cpp = LLM(LlamaCppBackend(gguf, threads=args.threads, slots=8))
    out["llamacpp_start_s"] = round(time.perf_counter() - t0, 2)
    embedded_backend(settings)  # the dequantized cache exists before its start is timed
    t0 = time.perf_counter()
    hf = LLM(embedded_backend(settings.model_copy(update={"torch_threads": args.threads})))
    out["transformers_start_s"] = round(time.perf_counter() - t0, 2)
    print(f"start from the cache: llama.cpp {out['llamacpp_start_s']} s, transformers {out['transformers_start_s']} s")

    for llm in (cpp, hf):
        llm.generate([PROMPTS[0]], max_tokens=4, temperature=0)  # warm
    single_cpp, batch_cpp, single_hf = [], [], []
    for _ in range(args.repeats):
        single_cpp.append(rate(cpp, PROMPTS[:1], args.tokens))
        batch_cpp.append(rate(cpp, PROMPTS, args.tokens))
        single_hf.append(rate(hf, PROMPTS[:1], args.tokens))
    s_cpp, b_cpp, s_hf = (statistics.median(x) for x in (single_cpp, batch_cpp, single_hf))
    out.update(llamacpp_single_tokens_per_s=round(s_cpp, 2), llamacpp_batch5_tokens_per_s=round(b_cpp, 2),
               transformers_single_tokens_per_s=round(s_hf, 2),
               single_ratio_llamacpp_to_transformers=round(s_cpp / s_hf, 2),
               batch5_ratio_to_llamacpp_single=round(b_cpp / s_cpp, 2),
               runs={"llamacpp_single": single_cpp, "llamacpp_batch5": batch_cpp, "transformers_single": single_hf})
    print(f"single stream: llama.cpp {s_cpp:.1f} tok/s, transformers {s_hf:.1f} tok/s: {s_cpp / s_hf:.1f}x")
    print(f"batch of 5 (llama.cpp): {b_cpp:.1f} tok/s aggregate: {b_cpp / s_cpp:.2f}x its single stream")

    bw = bandwidth_gb_s()
    wb = weight_bytes(gguf)
    limit = bw * 1e9 / wb
    out.update(memory_bandwidth_gb_s=round(bw, 2), weight_bytes_per_token=wb,
               hardware_limit_tokens_per_s=round(limit, 1), single_stream_fraction_of_limit=round(s_cpp / limit, 3))
    print(f"hardware: {bw:.1f} GB/s measured, {wb / 1e6:.0f} MB of weights a token: limit {limit:.1f} tok/s; "
          f"llama.cpp single stream is {100 * s_cpp / limit:.0f}% of it")

    if args.search_puzzles:
        csv = args.csv
        out["search_llamacpp"] = search_workload(cpp, csv, args.search_puzzles)
        print(f"search (BFS, {args.search_puzzles} puzzles), llama.cpp: {out['search_llamacpp']}")
        if not args.no_transformers_search:
            out["search_transformers"] = search_workload(hf, csv, args.search_puzzles)
            a, b = out["search_llamacpp"], out["search_transformers"]
            out["search_ratio"] = round(a["completion_tokens_per_s"] / b["completion_tokens_per_s"], 2)  # type: ignore[index]
            print(f"search, transformers: {b}; ratio {out['search_ratio']}x")
    del hf
    if args.chat:
        out["chat"] = chat_latency(settings, cpp, args.chat)
        print(f"chat through the agent (llama.cpp): {out['chat']}")
    path = args.json or settings.home / "bench" / "llm_throughput.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
