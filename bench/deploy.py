"""Deployment benchmark: one webhook worker against two on the same services, side by side.

    python bench/deploy.py                        # 6 users x 4 messages, 1 and 2 workers
    python bench/deploy.py --users 20 --messages 50 --json deploy.json
    python bench/deploy.py --workers 1 2 3

Starts a throwaway PostgreSQL (``initdb`` in a temporary folder, default durability), a Chroma server
(`chroma run`) and one `stackmind serve` on the embedded model, then for each worker count a fresh
database and Chroma database, that many `stackmind telegram` webhook workers behind the fake Bot API's
round-robin (tests/fakes/deployment.py, the deployment test's harness), and the users' messages sent at
once. Prints messages/s and p50/p95 reply latency (from a message sent to its reply's final text) per
worker count, with ratios against the first, and writes the figures as JSON. The store's own write
and read rates, SQLite against PostgreSQL, are bench/store.py's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from stackmind.llm.embedded import assemble_gguf
from stackmind.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the deployment test's harness
from tests.fakes.deployment import Deployment, summary  # noqa: E402
from tests.fakes.servers import ChromaServer, PostgresServer  # noqa: E402

console = Console(stderr=True)


def run_arm(root: Path, pg: PostgresServer, chroma: ChromaServer, gguf: Path, model: Deployment | None,
            workers: int, users: list[int], messages: int, timeout: float, slots: int) -> tuple[dict[str, Any], Deployment]:
    name = f"bench_{workers}w_{int(time.time())}"
    d = Deployment(root / name, pg.create_database(name), chroma.url, gguf, users, chroma_database=name, slots=slots)
    d.__enter__()
    if model is None:
        d.start_model_server()
    else:  # the same model server for every arm
        d.model_server = model.model_server
    d.start_workers(workers)
    sent = d.send_round(messages)
    start = min(t for msgs in sent.values() for _, _, t in msgs)
    done = d.wait_answered(sent, timeout)
    figures = {"workers": workers, **summary(d.latencies(sent), len(users) * messages, done - start),
               "turns": sum(len(d.turns(u)) for u in users), "turns_by_worker": d.answered_by()}
    d.stop_workers()
    return figures, d


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=6)
    p.add_argument("--messages", type=int, default=4, help="messages per user")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--slots", type=int, default=8, help="sequences the model server decodes together")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    users = [7000 + i for i in range(args.users)]
    gguf = assemble_gguf(Settings())
    root = Path(tempfile.mkdtemp(prefix="stackmind-bench-deploy-"))
    pg = PostgresServer(fast=False).start()
    chroma = ChromaServer(root / "chroma").start()
    arms: list[dict[str, Any]] = []
    first: Deployment | None = None
    try:
        for n in args.workers:
            console.print(f"{n} worker(s): {args.users} users x {args.messages} messages ...")
            figures, d = run_arm(root, pg, chroma, gguf, first, n, users, args.messages, args.timeout, args.slots)
            first = first or d
            if d is not first:
                d.model_server = None  # not this arm's to stop
                d.__exit__()
            arms.append(figures)
            console.print(figures)
    finally:
        if first is not None:
            first.__exit__()
        chroma.stop()
        pg.stop()
    base = arms[0]
    table = Table(title=f"{args.users} users x {args.messages} messages, one model server (llama.cpp, embedded model)")
    for col in ("workers", "messages/s", "p50 reply s", "p95 reply s", "turns", "vs first: msg/s", "p50", "p95"):
        table.add_column(col, justify="right")
    for a in arms:
        table.add_row(str(a["workers"]), f"{a['messages_per_s']:.3f}", f"{a['p50_s']:.1f}", f"{a['p95_s']:.1f}",
                      str(a["turns"]), f"{a['messages_per_s'] / base['messages_per_s']:.2f}x",
                      f"{a['p50_s'] / base['p50_s']:.2f}x", f"{a['p95_s'] / base['p95_s']:.2f}x")
    Console().print(table)
    out = {"users": args.users, "messages": args.messages, "arms": arms}
    print(json.dumps(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
