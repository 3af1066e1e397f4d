#!/usr/bin/env bash
# `stackmind run GOAL` N times, each with a fresh data dir (the model cache shared, as a user's second
# run would have it); prints each answer, its steps and seconds, and how many were EXPECTED.
#   bash bench/run_fresh.sh [N] [GOAL] [EXPECTED]
n=${1:-10}; goal=${2:-"What is 17 * 23? Answer with the number."}; expected=${3:-391}
ok=0
for i in $(seq 1 "$n"); do
  home=$(mktemp -d)
  ans=$(STACKMIND_HOME=$home stackmind run "$goal" --json 2>/dev/null | python -c "import json,sys; d=json.load(sys.stdin); print(d['answer'], d['steps'], d['wall_seconds'])")
  echo "run $i: $ans"
  case "$ans" in "$expected "*) ok=$((ok+1));; esac
  rm -rf "$home"
done
echo "right: $ok/$n"
