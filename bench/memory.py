"""Long-term memory benchmark: insert rate and recall latency at growing sizes.

    python bench/memory.py                          # 10k and 100k memories, 200 recalls each
    python bench/memory.py --sizes 2000 10000 --queries 100 --json out.json

One process, one embedded store in a temporary data dir (or --home), filled in steps up to each
size; at each size it times ``Memory.recall`` end to end (embed the query, owner-filtered HNSW search,
re-rank) and its two parts apart. Memories are synthetic notes spread over --owners owners, so every
recall goes through the owner filter as in production.

Insert is measured twice: end to end through ``store_many`` (embedding included) on the first
--e2e texts, and index-only (vectors precomputed) for the rest. Embedding 100k texts takes minutes
on 2 cores (about 300 texts/s), so the vectors are cached in ``cache_dir/bench-memory`` and a second
run only pays for indexing. Prints a table with ratios, and the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from stackmind.memory import Memory
from stackmind.settings import Settings

console = Console(stderr=True)

_SUBJECTS = ["the build", "the user", "a test", "the deploy", "the cache", "the parser", "a worker", "the model",
             "the queue", "the sandbox", "the scheduler", "a policy", "the search", "the tokenizer", "a trace"]
_VERBS = ["failed on", "was fixed by", "slowed down after", "depends on", "timed out in", "recovered from",
          "was rewritten for", "learned", "scored high on", "forgot", "retried", "skipped"]
_OBJECTS = ["the login flow", "game of 24", "a flaky network", "the nightly run", "Unicode input", "big files",
            "the LoRA step", "an empty stack", "the Telegram bot", "a recursion limit", "sorting ties",
            "the value model", "the WASI guest", "the chroma index", "a prime sieve", "the tree viewer"]
_PLACES = ["in Berlin", "on Monday", "after lunch", "in episode", "on the CI box", "at night", "in staging"]


def synthetic_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"note {i}: {rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} "
            f"{rng.choice(_PLACES)} {rng.randint(1, 999)} ({rng.choice(_OBJECTS)})" for i in range(n)]


def pooled(vecs: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n stand-in vectors: unit-length mixtures of two real embeddings plus a little noise.

    Only for sizes whose texts the machine cannot embed in the time at hand (``--pool``); the
    index is timed on vectors from the same region of the space as real notes. Reported in the JSON.
    """
    rng = np.random.default_rng(seed)
    a = vecs[rng.integers(0, len(vecs), n)]
    b = vecs[rng.integers(0, len(vecs), n)]
    mixed = 0.65 * a + 0.35 * b + 0.03 * rng.standard_normal((n, vecs.shape[1]))
    return (mixed / np.linalg.norm(mixed, axis=1, keepdims=True)).astype(np.float32)


def embeddings_for(memory: Memory, texts: list[str], cache: Path, seed: int,
                   start: int) -> tuple[np.ndarray, float | None]:
    """Vectors for texts[start:], from the cache or embedded now (with progress), and the embed rate."""
    todo = texts[start:]
    path = cache / f"minilm-{len(texts)}-from{start}-seed{seed}.npy"
    if path.exists():
        cached = np.load(path)
        if cached.shape == (len(todo), 384):
            console.print(f"embeddings from cache: {path}")
            return cached, None
    vecs = np.zeros((len(todo), 384), dtype=np.float32)
    t0 = time.perf_counter()
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"embedding {len(todo)} texts", total=len(todo))
        for i in range(0, len(todo), 512):
            vecs[i : i + 512] = np.asarray(memory.embed(todo[i : i + 512]))
            bar.advance(task, len(todo[i : i + 512]))
    rate = len(todo) / (time.perf_counter() - t0)
    console.print(f"embedded {len(todo)} texts at {rate:.0f}/s")
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    return vecs, rate


def store(memory: Memory, texts: list[str], vecs: np.ndarray | None, owners: list[str], offset: int) -> None:
    """Store texts, owner i % len(owners) for the i-th memory overall."""
    by_owner: dict[str, list[int]] = {}
    for j in range(len(texts)):
        by_owner.setdefault(owners[(offset + j) % len(owners)], []).append(j)
    for owner, idx in by_owner.items():
        memory.store_many([texts[j] for j in idx], owner=owner, kind="conclusion", value=0.5,
                          embeddings=None if vecs is None else vecs[idx])


def percentiles(xs: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(xs, n=100, method="inclusive")
    return {"p50_ms": 1000 * statistics.median(xs), "p95_ms": 1000 * qs[94], "mean_ms": 1000 * statistics.fmean(xs)}


def time_recalls(memory: Memory, queries: list[str], owners: list[str], k: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    memory.recall(queries[0], owner=owners[0], k=k, touch=False)  # warm-up: load the index
    e2e, embed, index = [], [], []
    for q in queries:
        owner = rng.choice(owners)
        t0 = time.perf_counter()
        memory.recall(q, owner=owner, k=k, touch=False)
        e2e.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        vec = memory.embed([q])
        embed.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        memory._collection.query(query_embeddings=vec, n_results=memory.config.ranking.fetch(k),
                                 where={"owner": {"$eq": owner}}, include=["metadatas", "documents", "distances"])
        index.append(time.perf_counter() - t0)
    return {"recall": percentiles(e2e), "embed_query": percentiles(embed), "index_query": percentiles(index)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--owners", type=int, default=10)
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--e2e", type=int, default=2000, help="texts stored end to end (embedding included)")
    ap.add_argument("--pool", type=int, default=0,
                    help="embed only this many texts for real and fill the rest with mixtures of their vectors "
                         "(0: embed every text; use when embedding 100k texts would take too long)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--home", type=Path, default=None, help="data dir (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    sizes = sorted(set(args.sizes))

    tmp = None
    if args.home is None:
        tmp = tempfile.TemporaryDirectory(prefix="stackmind-bench-memory-")
        args.home = Path(tmp.name)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = Settings(home=args.home, chroma_url=None).ensure_dirs()
    owners = [f"user-{i}" for i in range(args.owners)]
    texts = synthetic_texts(sizes[-1], args.seed)
    queries = [t.split(": ", 1)[1] for t in synthetic_texts(args.queries, args.seed + 1)]
    result: dict[str, Any] = {"sizes": {}, "owners": args.owners, "k": args.k, "queries": args.queries,
                              "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}

    with Memory(settings) as memory:
        if memory.count():
            console.print(f"[red]{settings.memory_dir} already holds memories; use an empty --home[/]")
            return 2
        memory.embed(["warm up the embedder"])
        n_e2e = min(args.e2e, sizes[-1])
        t0 = time.perf_counter()
        store(memory, texts[:n_e2e], None, owners, 0)
        result["insert_e2e_per_s"] = n_e2e / (time.perf_counter() - t0)
        console.print(f"stored {n_e2e} end to end at {result['insert_e2e_per_s']:.0f}/s")

        pool = sizes[-1] if args.pool <= 0 else max(n_e2e, min(args.pool, sizes[-1]))
        vecs, rate = embeddings_for(memory, texts[:pool], settings.cache_dir / "bench-memory", args.seed, n_e2e)
        if rate is not None:
            result["embed_per_s"] = rate
        if pool < sizes[-1]:
            vecs = np.concatenate([vecs, pooled(vecs, sizes[-1] - pool, args.seed)])
        result["vectors"] = {"embedded": pool, "mixed": sizes[-1] - pool}
        done, index_s = n_e2e, 0.0
        for size in sizes:
            if size > done:
                t0 = time.perf_counter()
                with Progress(console=console, transient=True) as bar:
                    task = bar.add_task(f"indexing to {size}", total=size - done)
                    for i in range(done, size, 5000):
                        j = min(size, i + 5000)
                        store(memory, texts[i:j], vecs[i - n_e2e : j - n_e2e], owners, i)
                        bar.advance(task, j - i)
                index_s += time.perf_counter() - t0
                done = size
            assert memory.count() == size, (memory.count(), size)
            console.print(f"timing {args.queries} recalls at {size} memories ...")
            result["sizes"][str(size)] = time_recalls(memory, queries, owners, args.k, args.seed)
        if done > n_e2e:
            result["insert_index_per_s"] = (done - n_e2e) / index_s

    table = Table(title=f"memory recall (k={args.k}, {args.owners} owners, {args.queries} queries)")
    for col in ("memories", "recall p50", "recall p95", "embed p50", "index p50", "p50 vs first size"):
        table.add_column(col, justify="right")
    base = result["sizes"][str(sizes[0])]["recall"]["p50_ms"]
    for size in sizes:
        r = result["sizes"][str(size)]
        table.add_row(f"{size:,}", f"{r['recall']['p50_ms']:.1f} ms", f"{r['recall']['p95_ms']:.1f} ms",
                      f"{r['embed_query']['p50_ms']:.1f} ms", f"{r['index_query']['p50_ms']:.1f} ms",
                      f"{r['recall']['p50_ms'] / base:.2f}x")
    Console().print(table)
    line = f"insert: {result['insert_e2e_per_s']:.0f}/s end to end (embedding included)"
    if "insert_index_per_s" in result:
        line += (f", {result['insert_index_per_s']:.0f}/s index only "
                 f"({result['insert_index_per_s'] / result['insert_e2e_per_s']:.1f}x)")
    Console().print(line)
    if result["vectors"]["mixed"]:
        Console().print(f"vectors: {pool} embedded from their texts, {result['vectors']['mixed']} mixtures of those "
                        "(--pool); recall queries are always embedded for real")
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
