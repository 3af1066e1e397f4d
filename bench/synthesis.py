"""Policy synthesis on a task family: candidates written, kept, discarded, and held-out success with vs
without the kept policies.

    python bench/synthesis.py --csv /work/shared/data/game24/game24_dev.csv --range 0:12 --heldout-range 12:20
    python bench/synthesis.py --family leap-year --range 0:16 --heldout-range 16:28

Families: ``game24`` (dev puzzles, the exact verifier) and ``leap-year`` (the starter trace
traces/leap-year-questions.trace.yaml: "How many days are there in February YEAR?", rows A:B of a fixed,
seeded list of years in which century years are over-represented; the numeric check against the
calendar's answer).

1. Experience: each puzzle of ``--range`` is attempted ``--samples`` times in one batched call (the
   agent's one-step answer, sampled), and valued once by the LLM judge (the value the search would
   have predicted). Each puzzle becomes an episode: a failed attempt, then a successful one if any
   sample was right (the verifier decides). `stackmind.value.after_episode` labels them and logs RPEs.
2. A synthesis round (`synthesize_round`) on those episodes, in a fresh data dir: held-out tasks are
   the experience puzzles a candidate was not written from plus the fresh puzzles of
   ``--heldout-range`` (the exact verifier grades both arms).
3. Prints and writes JSON (``--out``): episodes, surprises, clusters, candidates written / kept /
   discarded / dropped, and the held-out success with vs without each candidate (kept ones summed).
"""

from __future__ import annotations

import argparse
import calendar
import json
import random
import tempfile
import time
from pathlib import Path

from stackmind.llm import load_llm
from stackmind.learning.grounding import TRIAL_SYSTEM, HeldoutTask, final_answer, game24_task
from stackmind.learning.synthesize import Cluster, SynthesisConfig, synthesize_round
from stackmind.settings import Settings
from stackmind.tasks.game24 import Game24, answer_expression, check_expression, load_puzzles
from stackmind.tasks.text import TextGoal
from stackmind.trace import Episode, Step
from stackmind.value import after_episode


def leap_years(seed: int = 0) -> list[int]:
    """A fixed list of years: centuries (the rule's exception) mixed with ordinary and leap years."""
    rng = random.Random(seed)
    centuries = [y for y in range(1500, 3100, 100)]
    others = rng.sample([y for y in range(1601, 3000) if y % 100], 24)
    years = centuries + others
    rng.shuffle(years)
    return years


def leap_task(year: int, origin: str = "") -> HeldoutTask:
    days = 29 if calendar.isleap(year) else 28
    return HeldoutTask(f"How many days are there in February {year}?", str(days), "numeric", origin)


def leap_experience(settings: Settings, llm, years, samples: int, max_tokens: int, seed: int) -> list[Episode]:  # type: ignore[no-untyped-def]
    """One episode per year from sampled one-step answers, valued by the LLM judge, checked by the calendar."""
    tasks = [leap_task(y, f"leap-year:{y}") for y in years]
    goals = [TextGoal(t.goal) for t in tasks]
    judge = llm.generate([g.value_spec(g.root()).prompt for g in goals], max_tokens=40, temperature=0.0,
                         seed=seed, stop=["\n\n"])
    predicted = [g.read_value(s) for g, s in zip(goals, judge.texts, strict=True)]
    prompts = [[{"role": "system", "content": TRIAL_SYSTEM},
                {"role": "user", "content": f"[goal] {t.goal}\n\nCurrent goal: {t.goal}"}] for t in tasks]
    gen = llm.generate(prompts, n=samples, max_tokens=max_tokens, temperature=0.7, seed=seed)
    out = []
    for t, year, value, replies in zip(tasks, years, predicted, gen.texts, strict=True):
        ok = [r for r in replies if t.reward(r) >= 1]
        bad = [r for r in replies if r not in ok]
        steps = []
        if bad:
            steps.append(Step(thought=" ".join(bad[0].split()), observation=f"the calendar says: not {final_answer(bad[0])}",
                              value=value))
        if ok:
            steps.append(Step(thought=" ".join(ok[0].split()), value=value))
        ep = Episode(goal=t.goal, steps=steps, answer=t.answer if ok else final_answer(bad[0]), reward=1.0 if ok else 0.0,
                     model=llm.name, meta={"task": "leap-year", "year": year})
        ep.save(settings.episodes_dir)
        after_episode(settings, ep)
        out.append(ep)
    return out


def experience(settings: Settings, llm, puzzles, samples: int, max_tokens: int, seed: int) -> list[Episode]:  # type: ignore[no-untyped-def]
    """One episode per puzzle from sampled one-step attempts, valued by the judge, verified exactly."""
    tasks = [Game24(p) for p in puzzles]
    judge = llm.generate([t.value_spec(t.root()).prompt for t in tasks], max_tokens=40, temperature=0.0,
                         seed=seed, stop=["\n\n", "Numbers:"])
    predicted = [t.read_value(s) for t, s in zip(tasks, judge.texts, strict=True)]
    prompts = [[{"role": "system", "content": TRIAL_SYSTEM}, {"role": "user", "content": f"[goal] {t.goal}\n\n"
                                                                                          f"Current goal: {t.goal}"}]
               for t in tasks]
    gen = llm.generate(prompts, n=samples, max_tokens=max_tokens, temperature=0.7, seed=seed)
    out = []
    for t, p, value, replies in zip(tasks, puzzles, predicted, gen.texts, strict=True):
        ok = [r for r in replies if check_expression(answer_expression(final_answer(r)), t.numbers)]
        bad = [r for r in replies if r not in ok]
        steps = []
        if bad:
            steps.append(Step(thought=" ".join(bad[0].split()), observation="the verifier says: not 24", value=value))
        if ok:
            steps.append(Step(thought=" ".join(ok[0].split()), value=value))
        ep = Episode(goal=t.goal, steps=steps, answer=answer_expression(final_answer((ok or bad)[0])),
                     reward=1.0 if ok else 0.0, model=llm.name, meta={"task": "game24", "puzzle": p.index})
        ep.save(settings.episodes_dir)
        after_episode(settings, ep)
        out.append(ep)
    return out


def _rows(items: list, spec: str) -> list:  # type: ignore[type-arg]
    a, _, b = spec.partition(":")
    return items[int(a or 0):int(b) if b else None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=("game24", "leap-year"), default="game24")
    ap.add_argument("--csv", type=Path, default=Path("/work/shared/data/game24/game24_dev.csv"))
    ap.add_argument("--range", default="0:12", help="experience puzzles or years (rows A:B)")
    ap.add_argument("--heldout-range", default="12:20", help="fresh held-out puzzles or years (rows A:B)")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--home", type=Path, default=None, help="data dir (default: a fresh temporary one)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="stackmind-bench-synthesis-"))
    settings = Settings(home=home).ensure_dirs()
    t0 = time.perf_counter()
    llm = load_llm(settings)
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    if args.family == "game24":
        puzzles = load_puzzles(args.csv, args.range)
        fresh = [game24_task(p.numbers, f"{args.csv.name}:{p.index}")
                 for p in load_puzzles(args.csv, args.heldout_range)]
        eps = experience(settings, llm, puzzles, args.samples, args.max_tokens, args.seed)
    else:
        years = leap_years(args.seed)
        fresh = [leap_task(y, f"leap-year:{y}") for y in _rows(years, args.heldout_range)]
        eps = leap_experience(settings, llm, _rows(years, args.range), args.samples, args.max_tokens, args.seed)
    exp_s = time.perf_counter() - t1
    solved = sum((e.reward or 0) >= 1 for e in eps)
    print(f"experience: {len(eps)} {args.family} tasks, {solved} solved by some sample ({exp_s:.0f} s)", flush=True)

    def fresh_tasks(_c: Cluster, exclude: set[str]) -> list[HeldoutTask]:
        return [t for t in fresh if t.goal not in exclude]

    config = SynthesisConfig(trial_max_tokens=args.max_tokens, seed=args.seed)
    t2 = time.perf_counter()
    report = synthesize_round(settings, llm, config=config, extra_tasks=fresh_tasks,
                              progress=lambda m: print("  " + m, flush=True))
    round_s = time.perf_counter() - t2
    data = report.to_dict()
    grounded = [c for c in data["candidates"] if c["grounding"]]
    kept = [c for c in grounded if c["status"] == "kept"]

    def total(rows: list[dict], key: str) -> int:
        return sum(c["grounding"][key] for c in rows)

    summary = {
        "command": "python bench/synthesis.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out"),
        "model": llm.name, "home": str(home),
        "family": args.family, "experience_puzzles": len(eps), "experience_solved": solved, "fresh_heldout_puzzles": len(fresh),
        "episodes": data["episodes"], "surprises": data["surprises"], "clusters": len(data["clusters"]),
        "written": data["written"], "kept": data["kept"], "discarded": data["discarded"], "dropped": data["dropped"],
        "heldout_tasks_of_kept": sum(c["grounding"]["n"] for c in kept),
        "heldout_success_with_kept": total(kept, "success_with"),
        "heldout_success_without_kept": total(kept, "success_without"),
        "all_candidates_success_with": total(grounded, "success_with"),
        "all_candidates_success_without": total(grounded, "success_without"),
        "all_candidates_heldout_tasks": sum(c["grounding"]["n"] for c in grounded),
        "seconds": {"load": round(load_s, 1), "experience": round(exp_s, 1), "round": round(round_s, 1)},
        "usage": llm.usage.to_dict(),
        "round": data,
    }
    print(f"candidates written {summary['written']}, kept {summary['kept']}, discarded {summary['discarded']}, "
          f"dropped {summary['dropped']}")
    for c in grounded:
        g = c["grounding"]
        ratio = f"{g['success_with']}/{g['n']} vs {g['success_without']}/{g['n']}"
        print(f"  @{c['name']} v{c['version']}: {c['status']}: held-out solved with vs without {ratio}, "
              f"{g['stack_tokens']} stack tokens, ROI {g['roi_per_1k_tokens']:.3f} per 1k tokens")
    if kept:
        w, wo, n = summary["heldout_success_with_kept"], summary["heldout_success_without_kept"], summary[
            "heldout_tasks_of_kept"]
        print(f"held-out success with vs without the kept policies: {w}/{n} vs {wo}/{n}"
              + (f" (ratio {w / wo:.2f})" if wo else ""))
    else:
        print("no policy was kept: held-out success with vs without kept policies is the same (none pushed)")
    print(f"seconds: {summary['seconds']}")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2, default=str))
        print(f"wrote {args.out}")
    else:
        print(json.dumps({k: v for k, v in summary.items() if k != "round"}, indent=2, default=str))


if __name__ == "__main__":
    main()
