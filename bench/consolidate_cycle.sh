#!/usr/bin/env bash
# A real consolidation cycle, on the embedded model (CPU is fine, only slow):
#   1. episodes: BFS on Game of 24 dev puzzles (EXP rows), saved in a fresh data dir;
#   2. before: the same BFS benchmark on held-out puzzles (HELD rows; skipped when HELD is empty: on two CPU
#      cores a BFS puzzle takes minutes), with no adapter;
#   3. `stackmind consolidate`: LoRA on those episodes + the starter traces and policies, the value model
#      retrained, the gate (held-out split, policy tests, a one-shot Game of 24 slice GATE), promotion;
#   4. after: the held-out benchmark again, now with the promoted adapter (if the gate promoted one).
# Prints the report (examples per hour, gate before/after) and the held-out solve counts; the JSON files
# stay in $STACKMIND_HOME/bench. Run from the repository root (the starter policies/ and traces/).
#
#   bash bench/consolidate_cycle.sh                      # EXP=0:4 HELD= GATE=60:80 CALLS=4 MINUTES=20
#   HELD=50:56 bash bench/consolidate_cycle.sh           # also BFS on held-out puzzles before and after
set -euo pipefail
CSV=${CSV:-../shared/data/game24/game24_dev.csv}
EXP=${EXP:-0:4}
HELD=${HELD:-}
GATE=${GATE:-60:80}
CALLS=${CALLS:-4}
MINUTES=${MINUTES:-20}
export STACKMIND_HOME=${STACKMIND_HOME:-$(mktemp -d -t stackmind-cycle-XXXX)}
echo "== data dir: $STACKMIND_HOME"
t0=$(date +%s)

bench() {  # $1: rows, $2: name
  stackmind bench game24 --csv "$CSV" --range "$1" --strategy bfs --max-calls "$CALLS" \
    --out "$STACKMIND_HOME/bench/$2.json" > /dev/null
  python -c 'import json, sys; s = json.load(open(sys.argv[1]))["summary"]
print("%s: solved %d of %d puzzles, %.0f s" % (sys.argv[2], s["solved"], s["puzzles"], s["total_wall_seconds"]))' \
    "$STACKMIND_HOME/bench/$2.json" "$2"
}

mkdir -p "$STACKMIND_HOME/bench"
echo "== 1. experience episodes (rows $EXP)"
bench "$EXP" experience
if [ -n "$HELD" ]; then
  echo "== 2. held-out before (rows $HELD)"
  bench "$HELD" heldout-before
fi
echo "== 3. consolidate"
STACKMIND_CONSOLIDATE_GAME24_CSV="$CSV" STACKMIND_CONSOLIDATE_GAME24_RANGE="$GATE" \
  stackmind consolidate --max-minutes "$MINUTES"
stackmind consolidate --report
stackmind adapters list
if [ -n "$HELD" ]; then
  echo "== 4. held-out after (rows $HELD)"
  bench "$HELD" heldout-after
fi
echo "== cycle took $(( $(date +%s) - t0 )) s"
