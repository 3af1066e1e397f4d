"""Write the goal suite's data files from its generators (fixed seeds: the same files every run).

    python bench/make_goals.py            # (re)write stackmind/tasks/goals/data/<family>.jsonl
    python bench/make_goals.py --check    # exit 1 if the committed files differ from the generators
    python bench/make_goals.py --out DIR  # write somewhere else

Prints the goals per family and split. After changing a generator, run it and commit the files.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from stackmind.tasks.goals import SPLITS, data_file
from stackmind.tasks.goals.generators import dumps, generate_suite, write_suite


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="folder to write (default: the package's data folder)")
    ap.add_argument("--check", action="store_true", help="compare with the files instead of writing them")
    args = ap.parse_args()
    suite = generate_suite()
    stale = []
    if args.check:
        for family, goals in suite.items():
            target = (args.out / f"{family}.jsonl") if args.out else data_file(family)
            if not target.is_file() or target.read_text(encoding="utf-8") != dumps(goals):
                stale.append(str(target))
    else:
        for path in write_suite(args.out).values():
            print(f"wrote {path}")
    print(f"{'family':<12}" + "".join(f"{s:>9}" for s in SPLITS))
    for family, goals in suite.items():
        counts = Counter(g.split for g in goals)
        print(f"{family:<12}" + "".join(f"{counts[s]:>9}" for s in SPLITS))
    if stale:
        print("out of date (run python bench/make_goals.py and commit):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
