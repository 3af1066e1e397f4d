"""Tokens/s of the embedded model: one sequence vs a batch of 5, in one run.

    python bench/llm_throughput.py [--tokens 64] [--repeats 3] [--fresh-load] [--json PATH]

Prints the model-load time (cached start; with --fresh-load also the first start, which
assembles and dequantizes into a temporary cache), then the median decode rate for a single
sequence and for a batch of five, and their ratio. Writes the figures as JSON
(default: <STACKMIND_HOME>/bench/llm_throughput.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from stackmind.llm import LLM
from stackmind.llm.transformers import embedded_backend
from stackmind.settings import Settings

PROMPTS = [
    "Count upwards, separated by commas: 1, 2, 3, 4,",
    "List the even numbers, separated by commas: 2, 4, 6, 8,",
    "Count down by one, separated by commas: 900, 899, 898,",
    "List the multiples of five, separated by commas: 5, 10, 15,",
    "List the odd numbers, separated by commas: 1, 3, 5, 7,",
]


def load(settings: Settings) -> tuple[LLM, float]:
    t0 = time.perf_counter()
    llm = LLM(embedded_backend(settings))
    return llm, time.perf_counter() - t0


def rate(llm: LLM, prompts: list[str], tokens: int) -> float:
    gen = llm.generate(prompts, max_tokens=tokens, temperature=0)
    return gen.usage.completion_tokens / gen.usage.wall_seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fresh-load", action="store_true", help="also time a first start in a fresh cache")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    settings = Settings()
    result: dict[str, object] = {"model": "qwen2.5-coder-0.5b-instruct", "tokens": args.tokens,
                                 "repeats": args.repeats}
    if args.fresh_load:
        with tempfile.TemporaryDirectory() as tmp:
            _, first = load(Settings(home=Path(tmp), cache=Path(tmp) / "cache"))
        result["first_load_seconds"] = round(first, 1)
        print(f"first load (assemble + verify + dequantize): {first:.1f} s")
    load(settings)  # make sure the cache exists before timing a cached start
    llm, cached = load(settings)
    result["cached_load_seconds"] = round(cached, 1)
    print(f"cached load: {cached:.1f} s")
    llm.generate([PROMPTS[0]], max_tokens=4, temperature=0)  # warm-up
    single, batch = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        single.append(rate(llm, PROMPTS[:1], args.tokens))
        batch.append(rate(llm, PROMPTS, args.tokens))
    s, b = statistics.median(single), statistics.median(batch)
    result.update(single_tokens_per_s=round(s, 2), batch5_tokens_per_s=round(b, 2), ratio=round(b / s, 2),
                  single_runs=[round(x, 2) for x in single], batch5_runs=[round(x, 2) for x in batch])
    print(f"single sequence: {s:.1f} tokens/s (median of {args.repeats})")
    print(f"batch of 5:      {b:.1f} tokens/s (median of {args.repeats})")
    print(f"ratio batch/single: {b / s:.2f}x")
    out = args.json or settings.home / "bench" / "llm_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
