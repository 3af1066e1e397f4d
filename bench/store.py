"""Store benchmark: write and read rates of the stack store and the episode store, SQLite/files vs
PostgreSQL, side by side.

    python bench/store.py                          # 2000 pushes, 4 threads, PostgreSQL started here
    python bench/store.py --ops 500 --json out.json
    python bench/store.py --database-url postgresql://... # an existing server instead

One process. PostgreSQL is a throwaway cluster (``initdb`` in a temporary folder, the server's default
durability settings: fsync on, synchronous_commit on), started and stopped here, unless
``--database-url`` names one; SQLite runs in WAL mode with ``synchronous=FULL``, as shipped. Every
write is one committed transaction, as the agent does it. Prints rates and PostgreSQL/SQLite ratios,
and the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from stackmind.settings import Settings
from stackmind.stack import Frame, StackStore
from stackmind.storage import EpisodeStore, open_episodes, open_store
from stackmind.trace import Episode, Step

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes.servers runs initdb / pg_ctl
from tests.fakes.servers import PostgresServer  # noqa: E402

console = Console(stderr=True)


def timed(n: int, fn: Callable[[int], Any]) -> dict[str, float]:
    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    qs = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else [lat[0]] * 99
    return {"per_s": n / wall, "p50_ms": 1000 * statistics.median(lat), "p95_ms": 1000 * qs[94]}


def threaded(n: int, threads: int, fn: Callable[[int, int], Any]) -> dict[str, float]:
    per = max(1, n // threads)
    t0 = time.perf_counter()
    workers = [threading.Thread(target=lambda t=t: [fn(t, i) for i in range(per)]) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return {"per_s": per * threads / (time.perf_counter() - t0)}


def frame(i: int) -> Frame:
    return Frame(kind="thought", text=f"thought {i}: try (8 - 4) * (7 - 1) and check it " * 3, value=0.5,
                 provenance={"episode": "bench", "i": i}, tokens=40)


def bench_stacks(store: StackStore, ops: int, threads: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["push"] = timed(ops, lambda i: store.push("bench", frame(i)))
    ids = [f.id for f in store.frames("bench")]
    out["replace"] = timed(ops, lambda i: store.replace("bench", ids[i % len(ids)], frame(i)))
    for i in range(50):
        store.push("chat-50", frame(i))
    out["read 50-frame stack"] = timed(ops, lambda i: store.frames("chat-50"))
    out["pop"] = timed(ops, lambda i: store.pop("bench"))
    out[f"push, {threads} threads, one stack each"] = threaded(
        ops, threads, lambda t, i: store.push(f"thread-{t}", frame(i)))
    out["lock + unlock"] = timed(ops, lambda i: _lock_once(store, f"chat:{i % 20}"))
    return out


def _lock_once(store: StackStore, name: str) -> None:
    with store.lock(name):
        pass


def bench_episodes(store: EpisodeStore, ops: int, steps: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    episodes = [Episode(goal=f"Make 24 from 4 7 8 8 (bench {i})", stack="bench", meta={"owner": "bench"})
                for i in range(max(1, ops // steps))]

    def save_step(i: int) -> None:  # the agent saves the episode again after every step
        ep = episodes[i % len(episodes)]
        ep.steps.append(Step(thought=f"Thought {i}: 8 / (3 - 8 / 3) = 24?", action="@python(print(8/(3-8/3)))",
                             observation="24.000000000000004", value=0.6))
        store.save(ep)

    out[f"save after a step (episodes of up to {steps} steps)"] = timed(len(episodes) * steps, save_step)
    ids = [e.id for e in episodes]
    out["load"] = timed(ops, lambda i: store.load(ids[i % len(ids)]))
    out["rate"] = timed(min(ops, 200), lambda i: store.rate(ids[i % len(ids)], 1.0, by="bench"))
    t0 = time.perf_counter()
    n = sum(1 for _ in store.episodes())
    out["list all"] = {"per_s": n / (time.perf_counter() - t0)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=2000, help="operations of each kind")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10, help="steps per episode in the save benchmark")
    ap.add_argument("--database-url", default=None, help="an existing PostgreSQL database (default: start one)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    server = None
    url = args.database_url
    if url is None:
        server = PostgresServer(fast=False).start()
        url = server.create_database("bench")
    result: dict[str, Any] = {"ops": args.ops, "threads": args.threads, "cpu_count": os.cpu_count(), "stores": {}}
    try:
        with tempfile.TemporaryDirectory(prefix="stackmind-bench-store-") as tmp:
            for name, database_url in (("sqlite", None), ("postgresql", url)):
                settings = Settings(home=Path(tmp) / name, database_url=database_url).ensure_dirs()
                console.print(f"{name}: stacks ...")
                stacks = open_store(settings)
                try:
                    figures = bench_stacks(stacks, args.ops, args.threads)
                finally:
                    stacks.close()
                console.print(f"{name}: episodes ...")
                with open_episodes(settings) as episodes:
                    figures |= {f"episode {k}": v for k, v in bench_episodes(episodes, args.ops, args.steps).items()}
                result["stores"][name] = figures
    finally:
        if server is not None:
            server.stop()

    lite, pg = result["stores"]["sqlite"], result["stores"]["postgresql"]
    table = Table(title=f"store rates ({args.ops} ops each; SQLite WAL synchronous=FULL and episode files vs "
                        "PostgreSQL, fsync on)")
    for col in ("operation", "SQLite / files", "PostgreSQL", "PG / SQLite", "SQLite p50", "PG p50"):
        table.add_column(col, justify="right")
    for op in lite:
        a, b = lite[op], pg[op]
        table.add_row(op, f"{a['per_s']:,.0f}/s", f"{b['per_s']:,.0f}/s", f"{b['per_s'] / a['per_s']:.2f}x",
                      f"{a['p50_ms']:.2f} ms" if "p50_ms" in a else "-", f"{b['p50_ms']:.2f} ms" if "p50_ms" in b else "-")
    Console(width=150).print(table)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
