"""Long-term memory benchmark: recall latency and insert rate as memory grows, two layouts side by side.

    python bench/memory.py --sizes 10000 100000 --pool 5000 --e2e 500 --queries 100
    python bench/memory.py --sizes 1000000 --owners 1000 --layouts per-owner --home ~/bench-1m   # resumable

Layouts: ``per-owner`` is `Memory` as it ships (a collection per owner: a recall searches that owner's
index alone); ``shared`` is the layout before it (one collection for everyone, the owner a metadata
filter), rebuilt here on chroma directly with the same embedder, vectors and re-ranking. Modes:
``embedded`` (a PersistentClient) and ``server`` (a ``chroma run`` this script starts on a free port).
Each (mode, layout) store is filled in steps up to each size and ``--queries`` recalls are timed end
to end (query embedding included) and in parts (embedding; the index query alone).

Insert is measured end to end (``store_batch``: embedding included) on the first ``--e2e`` texts, and
index-only (vectors precomputed) for the rest. Embedding 100k texts takes minutes on 2 cores, so only
``--pool`` texts are embedded for real (cached under ``cache_dir/bench-memory``) and the rest are
mixtures of those vectors (reported in the JSON). With ``--home`` the stores are kept: a second run
reuses what is built (``filled.json`` in each store's folder) and only times, or fills the rest.
Prints a table with ratios (per-owner vs shared) and the figures as JSON.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from stackmind.memory import Memory
from stackmind.memory.embedder import MiniLMEmbedding
from stackmind.memory.forgetting import RecallRanking
from stackmind.memory.store import memory_id
from stackmind.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes.servers starts `chroma run`
from tests.fakes.servers import ChromaServer  # noqa: E402

console = Console(stderr=True)
LAYOUTS = ("shared", "per-owner")
MODES = ("embedded", "server")
CHUNK = 5000

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


def embeddings_for(embed: Callable[[list[str]], Any], texts: list[str], cache: Path, seed: int,
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
            vecs[i : i + 512] = np.asarray(embed(todo[i : i + 512]))
            bar.advance(task, len(todo[i : i + 512]))
    rate = len(todo) / (time.perf_counter() - t0)
    console.print(f"embedded {len(todo)} texts at {rate:.0f}/s")
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    return vecs, rate


class PerOwner:
    """`Memory` as it ships: a collection per owner."""

    name = "per-owner"

    def __init__(self, settings: Settings) -> None:
        self.memory = Memory(settings)

    def embed(self, texts: list[str]) -> Any:
        return self.memory.embed(texts)

    def store(self, texts: list[str], vecs: np.ndarray | None, owners: list[str]) -> None:
        self.memory.store_batch(list(zip(owners, texts, strict=True)), kind="conclusion", value=0.5,
                                embeddings=vecs, batch_size=len(texts))

    def recall(self, query: str, owner: str, k: int) -> list[Any]:
        return self.memory.recall(query, owner=owner, k=k, touch=False)

    def index_query(self, vec: Any, owner: str, k: int) -> Any:
        col = self.memory._collection(owner)
        assert col is not None
        return col.query(query_embeddings=vec, n_results=self.memory.config.ranking.fetch(k),
                         include=["metadatas", "documents", "distances"])

    def count(self) -> int:
        return self.memory.count()

    def close(self) -> None:
        self.memory.close()


class Shared:
    """The layout before per-owner collections: one collection, the owner a metadata filter."""

    name = "shared"

    def __init__(self, settings: Settings) -> None:
        chroma_settings = chromadb.Settings(anonymized_telemetry=False)
        if settings.chroma_url:
            host, port = settings.chroma_url.rsplit("//", 1)[1].split(":")
            self.client = chromadb.HttpClient(host=host, port=int(port), settings=chroma_settings)
        else:
            path = settings.memory_dir / "shared-chroma"
            path.mkdir(parents=True, exist_ok=True)
            self.client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
        self.ef = MiniLMEmbedding(device=settings.device)
        self.ranking = RecallRanking()
        self.collection = self.client.get_or_create_collection(
            "bench-shared", embedding_function=self.ef, configuration={"hnsw": {"space": "cosine"}})

    def embed(self, texts: list[str]) -> Any:
        return self.ef(texts)

    def store(self, texts: list[str], vecs: np.ndarray | None, owners: list[str]) -> None:
        embs = self.ef(texts) if vecs is None else vecs
        now = time.time()
        self.collection.upsert(
            ids=[memory_id(o, t) for o, t in zip(owners, texts, strict=True)],
            embeddings=embs, documents=texts,  # type: ignore[arg-type]
            metadatas=[{"owner": o, "kind": "conclusion", "value": 0.5, "uses": 0, "created": now, "last_used": now}
                       for o in owners])

    def recall(self, query: str, owner: str, k: int) -> list[Any]:
        found = self.index_query(self.ef([query]), owner, k)
        ranked = [(self.ranking.score(1.0 - d, float(m["value"]), 1.0), doc)
                  for doc, m, d in zip(found["documents"][0], found["metadatas"][0], found["distances"][0], strict=True)
                  if m["owner"] == owner]
        return sorted(ranked, reverse=True)[:k]

    def index_query(self, vec: Any, owner: str, k: int) -> Any:
        return self.collection.query(query_embeddings=vec, n_results=self.ranking.fetch(k),
                                     where={"owner": {"$eq": owner}}, include=["metadatas", "documents", "distances"])

    def count(self) -> int:
        return self.collection.count()

    def close(self) -> None:
        self.client.close()


def percentiles(xs: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(xs, n=100, method="inclusive")
    return {"p50_ms": 1000 * statistics.median(xs), "p95_ms": 1000 * qs[94], "mean_ms": 1000 * statistics.fmean(xs)}


def time_recalls(store: PerOwner | Shared, queries: list[str], owners: list[str], k: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    for owner in owners[: min(len(owners), 20)]:  # warm-up: load indexes
        store.recall(queries[0], owner, k)
    e2e, embed, index = [], [], []
    for q in queries:
        owner = rng.choice(owners)
        t0 = time.perf_counter()
        store.recall(q, owner, k)
        e2e.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        vec = store.embed([q])
        embed.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        store.index_query(vec, owner, k)
        index.append(time.perf_counter() - t0)
    return {"recall": percentiles(e2e), "embed_query": percentiles(embed), "index_query": percentiles(index)}


def run_one(layout: str, mode: str, settings: Settings, folder: Path, texts: list[str], owners: list[str],
            queries: list[str], sizes: list[int], args: argparse.Namespace, vectors: Callable[[Any], np.ndarray],
            ) -> dict[str, Any]:
    """Fill one store in steps and time it at each size; resumes from ``folder/filled.json``."""
    store: PerOwner | Shared = PerOwner(settings) if layout == "per-owner" else Shared(settings)
    progress = folder / "filled.json"
    filled = json.loads(progress.read_text())["filled"] if progress.exists() else 0
    out: dict[str, Any] = {"sizes": {}, "resumed_from": filled}
    owner_of = [owners[i % len(owners)] for i in range(sizes[-1])]
    try:
        store.embed(["warm up the embedder"])
        n_e2e = min(args.e2e, sizes[-1])
        if filled < n_e2e:
            t0 = time.perf_counter()
            store.store(texts[filled:n_e2e], None, owner_of[filled:n_e2e])
            out["insert_e2e_per_s"] = (n_e2e - filled) / (time.perf_counter() - t0)
            filled = n_e2e
            progress.write_text(json.dumps({"filled": filled}))
            console.print(f"{mode} {layout}: stored {n_e2e} end to end at {out['insert_e2e_per_s']:.0f}/s")
        vecs = None
        index_s, indexed = 0.0, 0
        for size in sizes:
            if size > filled:
                vecs = vectors(store) if vecs is None else vecs
                t0 = time.perf_counter()
                # One chroma write per owner per chunk, and a write costs tens of ms however small.
                chunk = max(CHUNK, args.per_owner_write * len(owners))
                with Progress(console=console, transient=True) as bar:
                    task = bar.add_task(f"{mode} {layout}: indexing to {size}", total=size - filled)
                    for i in range(filled, size, chunk):
                        j = min(size, i + chunk)
                        store.store(texts[i:j], vecs[i - n_e2e : j - n_e2e], owner_of[i:j])
                        progress.write_text(json.dumps({"filled": j}))
                        bar.advance(task, j - i)
                index_s += time.perf_counter() - t0
                indexed += size - filled
                filled = size
            have = store.count()
            if have < size:
                raise SystemExit(f"{folder} holds {have} memories, fewer than {size}: remove it and rerun")
            console.print(f"{mode} {layout}: timing {args.queries} recalls at {size:,} memories ...")
            out["sizes"][str(size)] = time_recalls(store, queries, owners, args.k, args.seed)
            if args.json:  # what is measured so far survives a stopped run
                partial = json.loads(args.json.read_text()) if args.json.exists() else {}
                partial.setdefault("partial", {}).setdefault(mode, {})[layout] = out
                args.json.write_text(json.dumps(partial, indent=2) + "\n")
        if indexed:
            out["insert_index_per_s"] = indexed / index_s
    finally:
        store.close()
    return out


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
    ap.add_argument("--per-owner-write", type=int, default=200,
                    help="when filling, about this many memories per owner go to the store in one write")
    ap.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    ap.add_argument("--modes", nargs="+", choices=MODES, default=["embedded"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--home", type=Path, default=None, help="keep the stores here and reuse them (default: temporary)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    sizes = sorted(set(args.sizes))

    tmp = None
    if args.home is None:
        tmp = tempfile.TemporaryDirectory(prefix="stackmind-bench-memory-")
        args.home = Path(tmp.name)
    args.home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    owners = [f"user-{i}" for i in range(args.owners)]
    texts = synthetic_texts(sizes[-1], args.seed)
    queries = [t.split(": ", 1)[1] for t in synthetic_texts(args.queries, args.seed + 1)]
    result: dict[str, Any] = {"runs": {}, "owners": args.owners, "k": args.k, "queries": args.queries,
                              "sizes": sizes, "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
                              "chromadb": chromadb.__version__}
    cache = Settings(home=args.home).cache_dir / "bench-memory"
    pool_vecs: dict[str, np.ndarray] = {}

    def vectors(store: PerOwner | Shared) -> np.ndarray:
        """Vectors for texts[e2e:], computed once per run and shared by every store."""
        if "v" not in pool_vecs:
            n_e2e = min(args.e2e, sizes[-1])
            pool = sizes[-1] if args.pool <= 0 else max(n_e2e, min(args.pool, sizes[-1]))
            vecs, rate = embeddings_for(store.embed, texts[:pool], cache, args.seed, n_e2e)
            if rate is not None:
                result["embed_per_s"] = rate
            if pool < sizes[-1]:
                vecs = np.concatenate([vecs, pooled(vecs, sizes[-1] - pool, args.seed)])
            result["vectors"] = {"embedded": pool, "mixed": sizes[-1] - pool}
            pool_vecs["v"] = vecs
        return pool_vecs["v"]

    for mode in args.modes:
        server = None
        if mode == "server":
            server = ChromaServer(args.home / "chroma-server").start()
        try:
            for layout in args.layouts:
                folder = args.home / f"{mode}-{layout}"
                folder.mkdir(parents=True, exist_ok=True)
                settings = Settings(home=folder, cache=cache.parent, chroma_url=server.url if server else None,
                                    chroma_database=f"bench-{layout}").ensure_dirs()
                result["runs"].setdefault(mode, {})[layout] = run_one(
                    layout, mode, settings, folder, texts, owners, queries, sizes, args, vectors)
        finally:
            if server is not None:
                server.stop()

    report(result, sizes, args)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0


def report(result: dict[str, Any], sizes: list[int], args: argparse.Namespace) -> None:
    table = Table(title=f"memory recall, end to end (k={args.k}, {args.owners} owners, {args.queries} queries)")
    for col in ("memories", "mode", "layout", "recall p50", "recall p95", "embed p50", "index p50",
                "p50 vs shared", "index vs shared"):
        table.add_column(col, justify="right")
    for size in sizes:
        for mode, runs in result["runs"].items():
            shared = runs.get("shared", {}).get("sizes", {}).get(str(size))
            for layout, run in runs.items():
                r = run["sizes"][str(size)]
                ratio = idx = "-"
                if shared is not None and layout != "shared":
                    ratio = f"{r['recall']['p50_ms'] / shared['recall']['p50_ms']:.2f}x"
                    idx = f"{r['index_query']['p50_ms'] / shared['index_query']['p50_ms']:.2f}x"
                table.add_row(f"{size:,}", mode, layout, f"{r['recall']['p50_ms']:.1f} ms",
                              f"{r['recall']['p95_ms']:.1f} ms", f"{r['embed_query']['p50_ms']:.1f} ms",
                              f"{r['index_query']['p50_ms']:.1f} ms", ratio, idx)
    Console(width=150).print(table)
    for mode, runs in result["runs"].items():
        for layout, run in runs.items():
            parts = []
            if "insert_e2e_per_s" in run:
                parts.append(f"{run['insert_e2e_per_s']:.0f}/s end to end")
            if "insert_index_per_s" in run:
                parts.append(f"{run['insert_index_per_s']:.0f}/s index only")
            if run.get("resumed_from"):
                parts.append(f"resumed at {run['resumed_from']:,} memories")
            Console().print(f"insert, {mode} {layout}: {', '.join(parts) or 'nothing new stored'}")
    if "embed_per_s" in result:
        Console().print(f"embedder: {result['embed_per_s']:.0f} texts/s in batches of 512")
    if result.get("vectors", {}).get("mixed"):
        Console().print(f"vectors: {result['vectors']['embedded']} embedded from their texts, "
                        f"{result['vectors']['mixed']} mixtures of those (--pool); recall queries are always "
                        "embedded for real")


if __name__ == "__main__":
    sys.exit(main())
