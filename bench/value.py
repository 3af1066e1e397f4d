"""Value benchmark: the learned value model against the LLM judgement, on held-out Game of 24 states.

    python bench/value.py                                   # the dev file next to the checkout
    python bench/value.py --puzzles game24_dev.csv --judge-states 32 --json value.json

Where the labels come from (said again in the output):
- **solver**: every state reachable from a dev puzzle by verified steps (depth 1: three numbers
  left, depth 2: two), labelled 1 when 24 can still be made from the numbers left, decided exactly
  by exhaustive search with fractions (`stackmind.value.game24_states`). Puzzles are split: the
  model trains on one set of puzzles and is measured on other, held-out puzzles.
- **rollouts**: the hindsight labels (returns-to-go, Monte-Carlo) of the agent's own Game of 24
  episodes in STACKMIND_HOME/episodes, when there are any; added to training only.

In one process: train the head (MiniLM + MLP), score every held-out state with it, then ask the LLM
judge (the embedded model, the task's sure/likely/impossible prompt, 3 samples, as the search asks
it) about a seeded, balanced sample of those states (half can still reach 24; --judge-states; it decodes at about 6-15 tokens/s on
2 cores, so the sample is modest). AUC and Brier of both on that same sample, of the model on the
whole held-out set, candidates scored per second by each, ratios, and JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from stackmind.settings import Settings
from stackmind.tasks.base import State
from stackmind.tasks.game24 import Game24, load_puzzles
from stackmind.value import TrainConfig, ValueModel, calibration, label_episode
from stackmind.value.game24_states import dataset
from stackmind.value.labels import Label
from stackmind.value.metrics import reliability_diagram

console = Console(stderr=True)
DEFAULT_PUZZLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "game24" / "game24_dev.csv"


def state_of(label: Label) -> State:
    """The search State a solver label describes (the judge reads the numbers left from it)."""
    game = Game24([int(x) for x in label.meta["puzzle"].split()])
    state = game.root()
    for thought in [*label.stack, label.thought]:
        (state,) = [c for c in game.children(state, [thought])]
    return state


def rollout_labels(settings: Settings) -> list[Label]:
    from stackmind.trace import load_episodes

    if not settings.episodes_dir.is_dir():
        return []
    out = []
    for ep in load_episodes(settings.episodes_dir):
        if ep.tree and ep.tree.get("graph", {}).get("task") == "game24":
            out += [lab for lab in label_episode(ep, source="rollout") if lab.kind in ("return_to_go", "monte_carlo")]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--puzzles", type=Path, default=DEFAULT_PUZZLES, help="a CSV shaped like game24_dev.csv")
    ap.add_argument("--train-puzzles", type=int, default=400, help="puzzles the model trains on")
    ap.add_argument("--test-puzzles", type=int, default=100, help="held-out puzzles it is measured on")
    ap.add_argument("--per-depth", type=int, default=10, help="states per depth per puzzle")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--judge-states", type=int, default=32, help="held-out states the LLM judge is asked about")
    ap.add_argument("--judge-batch", type=int, default=8, help="states per judge call (x3 samples each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--search", type=int, default=0,
                    help="also run BFS on this many held-out puzzles with each scorer and count successes")
    ap.add_argument("--search-calls", type=int, default=12, help="LLM-call budget of each search")
    ap.add_argument("--search-log", type=Path, default=None,
                    help="JSON lines, one per finished search; a rerun with the same log skips the searches "
                         "already in it (same seed and budget), so a long run can stop and go on")
    ap.add_argument("--png", type=Path, default=None, help="reliability diagram of both scorers")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    settings = Settings()
    puzzles = load_puzzles(args.puzzles)
    rng = random.Random(args.seed)
    rng.shuffle(puzzles)
    test_p = puzzles[:args.test_puzzles]
    train_p = puzzles[args.test_puzzles:args.test_puzzles + args.train_puzzles]
    console.print(f"labelling states of {len(train_p)} train and {len(test_p)} held-out puzzles (exact solver)")
    train = dataset(train_p, per_depth=args.per_depth, seed=args.seed)
    test = dataset(test_p, per_depth=args.per_depth, seed=args.seed + 1)
    rollouts = rollout_labels(settings)
    test_goals = {lab.goal for lab in test}
    rollouts = [lab for lab in rollouts if lab.goal not in test_goals]

    # ---- the learned model
    model = ValueModel(seed=args.seed)
    t0 = time.perf_counter()
    fit = model.fit(train + rollouts, config=TrainConfig(epochs=args.epochs, seed=args.seed))
    train_s = time.perf_counter() - t0
    fresh = ValueModel(seed=args.seed)  # a cold text cache, so scoring pays for embedding
    fresh.head.load_state_dict(model.head.state_dict())
    goal_states = [(lab.goal, state_of(lab)) for lab in test]
    t0 = time.perf_counter()
    by_goal: dict[str, list[int]] = {}
    for i, (goal, _) in enumerate(goal_states):
        by_goal.setdefault(goal, []).append(i)
    p_model = [0.0] * len(test)
    for goal, idx in by_goal.items():  # one batched score() per puzzle, as one search step would
        for i, v in zip(idx, fresh.score(goal, [goal_states[i][1] for i in idx]), strict=True):
            p_model[i] = v
    model_s = time.perf_counter() - t0
    y = [lab.target for lab in test]

    # ---- the LLM judge on a sample of the same held-out states
    from stackmind.llm import load_llm
    from stackmind.search import LLMJudge

    # A balanced sample (half reaching 24, half not), so that a modest sample still measures ranking.
    srng = random.Random(args.seed + 7)
    pos = [i for i, lab in enumerate(test) if lab.target >= 0.5]
    neg = [i for i, lab in enumerate(test) if lab.target < 0.5]
    half = args.judge_states // 2
    sample = sorted(srng.sample(pos, min(half, len(pos))) + srng.sample(neg, min(args.judge_states - half, len(neg))))
    console.print(f"loading the embedded model; the judge scores {len(sample)} states, 3 samples each")
    llm = load_llm(settings)
    p_judge: list[float] = []
    t0 = time.perf_counter()
    for k in range(0, len(sample), args.judge_batch):
        chunk = sample[k:k + args.judge_batch]
        judge = LLMJudge(llm, Game24([int(x) for x in test[chunk[0]].meta["puzzle"].split()]), seed=args.seed)
        # The task's value prompt depends only on the numbers left, so one judge serves any puzzle.
        p_judge += judge.score(test[chunk[0]].goal, [goal_states[i][1] for i in chunk])
        console.print(f"  judge: {len(p_judge)}/{len(sample)} states, {time.perf_counter() - t0:.0f} s")
    judge_s = time.perf_counter() - t0
    y_s = [y[i] for i in sample]
    m_s = [p_model[i] for i in sample]

    # The sample is balanced; weighting each class back to its held-out share gives the Brier score
    # each scorer would have on the natural mix of states (what the search meets).
    rate = sum(1 for v in y if v >= 0.5) / len(y)
    s_rate = sum(1 for v in y_s if v >= 0.5) / len(y_s)
    weights = [rate / s_rate if v >= 0.5 else (1 - rate) / (1 - s_rate) for v in y_s]

    def weighted_brier(p: list[float]) -> float:
        return round(sum(w * (q - v) ** 2 for w, q, v in zip(weights, p, y_s, strict=True)) / sum(weights), 4)

    model_all = calibration(y, p_model).to_dict()
    model_sample = {**calibration(y_s, m_s).to_dict(), "brier_natural_mix": weighted_brier(m_s)}
    judge_sample = {**calibration(y_s, p_judge).to_dict(), "brier_natural_mix": weighted_brier(p_judge)}
    model_rate = len(test) / model_s
    judge_rate = len(sample) / judge_s
    result = {
        "labels": {"source": "exact Game of 24 solver on dev puzzles (states at depth 1 and 2), "
                             "plus hindsight labels of the agent's own game24 episodes when present",
                   "puzzles_file": str(args.puzzles), "train_puzzles": len(train_p), "test_puzzles": len(test_p),
                   "train_states": len(train), "rollout_labels": len(rollouts), "test_states": len(test),
                   "test_positive_rate": round(sum(y) / len(y), 4), "judge_states": len(sample), "judge_sample": "balanced: half reaching 24, half not"},
        "learned": {"train_seconds": round(train_s, 2), "score_seconds": round(model_s, 3),
                    "candidates_per_s": round(model_rate, 2), "heldout_all": model_all,
                    "heldout_judge_sample": model_sample},
        "llm_judge": {"model": llm.name, "samples": 3, "score_seconds": round(judge_s, 2),
                      "candidates_per_s": round(judge_rate, 4), "heldout_judge_sample": judge_sample,
                      "usage": llm.usage.to_dict()},
        "ratios": {"throughput_learned_over_judge": round(model_rate / judge_rate, 1)},
        "check": {"auc_learned_beats_judge": (model_sample["auc"] or 0) > (judge_sample["auc"] or 0),
                  "brier_learned_beats_judge": model_sample["brier"] < judge_sample["brier"],
                  "brier_natural_mix_learned_beats_judge":
                      model_sample["brier_natural_mix"] < judge_sample["brier_natural_mix"]},
    }
    if args.search:
        from stackmind.search import Budget, solve

        config = {"strategy": "bfs", "seed": args.seed, "llm_calls": args.search_calls}
        done: dict[tuple[str, str], dict[str, Any]] = {}
        if args.search_log and args.search_log.exists():
            for line in args.search_log.read_text(encoding="utf-8").splitlines():
                rec = json.loads(line) if line.strip() else None
                if rec and rec.get("config") == config:
                    done[(rec["puzzle"], rec["scorer"])] = rec
            console.print(f"search log {args.search_log}: {len(done)} searches already done, skipped")
        runs: dict[str, list[dict[str, Any]]] = {"learned": [], "llm_judge": []}
        puzzles_s = test_p[:args.search]
        for k, p in enumerate(puzzles_s, 1):
            for name in runs:
                rec = done.get((p.text, name))
                if rec is None:
                    game = Game24(p)
                    scorer = fresh if name == "learned" else LLMJudge(llm, game, seed=args.seed)
                    res = solve(game, llm, strategy="bfs", scorer=scorer,
                                budget=Budget(llm_calls=args.search_calls), seed=args.seed)
                    rec = {"puzzle": p.text, "scorer": name, "config": config, "success": res.success,
                           "answer": res.answer, "stopped": res.stopped, "seconds": round(res.wall_seconds, 1),
                           "llm_calls": res.usage.calls, "nodes": len(res.tree)}
                    if args.search_log:
                        with args.search_log.open("a", encoding="utf-8") as f:
                            f.write(json.dumps(rec) + "\n")
                runs[name].append(rec)
            tally = ", ".join(f"{n} {sum(r['success'] for r in rs)}" for n, rs in runs.items())
            console.print(f"  search {k}/{len(puzzles_s)} ({p.text}): solved so far: {tally}; "
                          f"this puzzle {runs['learned'][-1]['seconds']:.0f} s / {runs['llm_judge'][-1]['seconds']:.0f} s")
        result["search"] = {name: {"puzzles": len(r), "solved": sum(x["success"] for x in r),
                                   "seconds": round(sum(x["seconds"] for x in r), 1), "runs": r}
                            for name, r in runs.items()}
        result["search"]["config"] = config
        result["check"]["search_learned_solves_at_least_judge"] = (
            result["search"]["learned"]["solved"] >= result["search"]["llm_judge"]["solved"])
    table = Table(title="value: learned model vs LLM judge, held-out Game of 24 states")
    for col in ("scorer", "states", "AUC", "Brier", "Brier (natural mix)", "ECE", "candidates/s"):
        table.add_column(col, justify="right")
    table.add_row("learned (all held-out)", str(len(test)), str(model_all["auc"]), str(model_all["brier"]),
                  str(model_all["brier"]), str(model_all["ece"]), f"{model_rate:.1f}")
    table.add_row("learned (judge sample)", str(len(sample)), str(model_sample["auc"]),
                  str(model_sample["brier"]), str(model_sample["brier_natural_mix"]), str(model_sample["ece"]), "")
    table.add_row("LLM judge (sample)", str(len(sample)), str(judge_sample["auc"]), str(judge_sample["brier"]),
                  str(judge_sample["brier_natural_mix"]), str(judge_sample["ece"]), f"{judge_rate:.3f}")
    table.add_row("ratio learned/judge", "", "", "", "", "", f"{model_rate / judge_rate:.0f}x")
    console.print(table)
    console.print(f"labels: {result['labels']['source']}; training {fit.train} labels took {train_s:.1f} s")
    if args.search:
        sr = result["search"]
        console.print(f"search (bfs, {args.search_calls} LLM calls each) on the same {sr['learned']['puzzles']} "
                      f"held-out puzzles: learned {sr['learned']['solved']} solved in {sr['learned']['seconds']:.0f} s, "
                      f"LLM judge {sr['llm_judge']['solved']} solved in {sr['llm_judge']['seconds']:.0f} s")
    if args.png:
        reliability_diagram({"learned": (y_s, m_s), "LLM judge": (y_s, p_judge)}, args.png,
                            title="held-out Game of 24 states (judge sample)")
    text = json.dumps(result, indent=2)
    sys.stdout.write(text + "\n")
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
