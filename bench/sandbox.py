"""Sandbox latency and throughput: a fresh VM per run, a session, and the host's python, in one run.

    python bench/sandbox.py [--runs 30] [--json PATH]

Runs the same fixed snippets three ways and reports warm-run latency (p50, p95) and runs/s:

- sandbox, fresh VM per run  (`Sandbox.run`: a new CPython-WASI instance each time),
- sandbox, one session       (`Sandbox.session().run`: one interpreter, a turn per snippet),
- host python subprocess     (`python -c`, no sandbox: the unsandboxed baseline).

The baseline runs only these fixed snippets; generated code never runs on the host. The compiled
module must be warm (`stackmind sandbox warm`); the load time is reported separately. Writes JSON
(default: <STACKMIND_HOME>/bench/sandbox.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from stackmind.sandbox import Limits, Sandbox
from stackmind.settings import Settings

SNIPPETS = [
    "print(17 * 23)",
    "print(sum(i * i for i in range(10_000)))",
    "import json\nprint(json.dumps({'a': [1, 2, 3]}))",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\nprint(fib(18))",
]


def measure(run: Callable[[str], str], runs: int) -> dict[str, float]:
    for s in SNIPPETS:  # warm-up, and a check that every way prints the same thing
        run(s)
    times = []
    start = time.perf_counter()
    for i in range(runs):
        t = time.perf_counter()
        run(SNIPPETS[i % len(SNIPPETS)])
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    times.sort()
    return {
        "p50_ms": round(1000 * statistics.median(times), 2),
        "p95_ms": round(1000 * times[min(len(times) - 1, int(0.95 * len(times)))], 2),
        "runs_per_s": round(runs / total, 2),
        "runs": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    settings = Settings()
    sandbox = Sandbox(settings, Limits(), progress=lambda m: print(f"sandbox: {m}", file=sys.stderr))
    info = sandbox.warm()
    print(f"module: {info.describe()}")

    expected = {s: sandbox.run_python(s).stdout for s in SNIPPETS}

    def fresh(code: str) -> str:
        r = sandbox.run_python(code)
        assert r.ok and r.stdout == expected[code], r.summary()
        return r.stdout

    session = sandbox.session()

    def turn(code: str) -> str:
        r = session.run(code)
        assert r.ok and r.stdout == expected[code], r.summary()
        return r.stdout

    def host(code: str) -> str:  # the unsandboxed baseline: fixed snippets only
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out == expected[code]
        return out

    results = {
        "sandbox_fresh": measure(fresh, args.runs),
        "sandbox_session": measure(turn, args.runs),
        "host_subprocess": measure(host, args.runs),
    }
    session.close()

    base = results["host_subprocess"]
    print(f"\n{'way':<18}{'p50 ms':>10}{'p95 ms':>10}{'runs/s':>10}{'p50 vs host':>14}{'runs/s vs host':>16}")
    for name, r in results.items():
        print(f"{name:<18}{r['p50_ms']:>10.1f}{r['p95_ms']:>10.1f}{r['runs_per_s']:>10.1f}"
              f"{r['p50_ms'] / base['p50_ms']:>13.2f}x{r['runs_per_s'] / base['runs_per_s']:>15.2f}x")
    fresh_r, sess_r = results["sandbox_fresh"], results["sandbox_session"]
    print(f"\nsession vs fresh VM: {fresh_r['p50_ms'] / sess_r['p50_ms']:.1f}x lower p50 latency, "
          f"{sess_r['runs_per_s'] / fresh_r['runs_per_s']:.1f}x the runs/s")

    report = {
        "module_load_s": round(info.seconds, 3), "module_compiled_now": info.compiled,
        "results": results, "snippets": SNIPPETS,
        "ratios_vs_host": {k: {"p50": round(v["p50_ms"] / base["p50_ms"], 3),
                               "runs_per_s": round(v["runs_per_s"] / base["runs_per_s"], 3)}
                           for k, v in results.items()},
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
    }
    out = args.json or settings.home / "bench" / "sandbox.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
