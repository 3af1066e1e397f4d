"""One consolidation run, top to bottom: dataset, LoRA, value model, gate, registry, serving, report.

Everything is written under ``settings.home/consolidate`` (runs, state, replay pool, lock) and
``settings.adapters_dir`` (versions). Each stage records itself in ``runs/<id>/run.json`` when it
is done, so a run killed at any moment is continued by ``resume=True`` from the last finished stage
(training from its last checkpoint); the promoted adapter changes only by one atomic rename.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stackmind.consolidate.config import ConsolidateConfig
from stackmind.consolidate.dataset import (
    Dataset,
    Example,
    atomic_write,
    build_dataset,
    hook_examples,
    write_jsonl,
)
from stackmind.consolidate.gate import GateResult, evaluate
from stackmind.consolidate.hooks import Hooks
from stackmind.consolidate.lock import exclusive
from stackmind.consolidate.registry import AdapterRegistry
from stackmind.consolidate.report import write_report
from stackmind.consolidate.train import TrainResult, train_lora
from stackmind.errors import StackmindError
from stackmind.settings import Settings
from stackmind.trace import MAX_WEIGHT

ProgressFn = Callable[[str], None]
TRAIN_SHARE = 0.75  # of --max-minutes given to training; the rest is for the gate and the report


class NothingToResume(StackmindError, RuntimeError):
    pass


class StaleResume(StackmindError, RuntimeError):
    """The unfinished run was trained on top of an adapter that is no longer the current one."""


class ConsolidateStateError(StackmindError, RuntimeError):
    """A file consolidation keeps between runs (state.json, a run.json) cannot be read."""


def consolidate_dir(settings: Settings) -> Path:
    return settings.home / "consolidate"


def consolidate(
    settings: Settings,
    config: ConsolidateConfig | None = None,
    *,
    dry_run: bool = False,
    max_minutes: float | None = None,
    resume: bool = False,
    hooks: Hooks | None = None,
    model_dir: Path | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Run (or with ``dry_run`` only plan) a consolidation; returns the run record (also in run.json)."""
    config = _with_learned_policies(settings, config or ConsolidateConfig())
    say = progress or (lambda _m: None)
    root = consolidate_dir(settings)
    hooks = hooks if hooks is not None else Hooks(missing={
        k: "no hooks given (the command line passes stackmind.learning.hooks.learning_hooks)"
        for k in ("hindsight examples", "value model", "game24", "policy tests")})
    if dry_run:  # reads only: the lock is not even needed
        dataset, problems, _ = _collect(settings, config, hooks, root)
        return plan(settings, config, dataset, problems, hooks, max_minutes)
    with exclusive(root / "lock"):
        record = _run(settings, config, hooks, root, resume, max_minutes, model_dir, say)
        return _nightly_synthesis(settings, root, record, say) if config.synthesis else record


def _with_learned_policies(settings: Settings, config: ConsolidateConfig) -> ConsolidateConfig:
    """The policies the agent wrote and kept (docs/synthesis.md) join the ``slow`` data like human ones."""
    try:
        from stackmind.policies.review import learned_dir
    except ImportError:
        return config
    learned = learned_dir(settings.home)
    if not learned.is_dir() or any(Path(d).resolve() in (learned.resolve(), *learned.resolve().parents)
                                   for d in config.policies_dirs):
        return config
    return config.model_copy(update={"policies_dirs": [*config.policies_dirs, learned]})


def _nightly_synthesis(settings: Settings, root: Path, record: dict[str, Any], say: ProgressFn) -> dict[str, Any]:
    """With ``synthesis`` set (STACKMIND_CONSOLIDATE_SYNTHESIS=1): re-measure the agent's own policies
    and write new ones (`stackmind.learning.synthesize.nightly`), after the new adapter is promoted;
    recorded in run.json."""
    from stackmind.learning.synthesize import SynthesisConfig, nightly

    config = SynthesisConfig()
    say("synthesis: re-measuring kept policies and writing new ones")
    try:
        result = nightly(settings, config=config, progress=say)
        record["synthesis"] = {k: result[k] for k in ("written", "kept", "pending", "discarded", "dropped", "notes")}
        record["synthesis"]["retired"] = [r["name"] for r in result["remeasured"] if r.get("retired")]
    except Exception as e:  # the night's training is done; a failed round must not undo it
        record["synthesis"] = {"error": f"{type(e).__name__}: {e}"}
    _save(root / "runs" / record["run"], record)
    return record


def _run(settings: Settings, config: ConsolidateConfig, hooks: Hooks, root: Path, resume: bool,
         max_minutes: float | None, model_dir: Path | None, say: ProgressFn) -> dict[str, Any]:
    t_start = time.monotonic()
    deadline = t_start + max_minutes * 60 * TRAIN_SHARE if max_minutes else None
    registry = AdapterRegistry.of(settings)
    run_dir = _unfinished(root) if resume else None
    if resume and run_dir is None:
        say("no unfinished run to resume: starting a new one")
    if run_dir is not None:
        _refuse_stale(run_dir, registry)
    if run_dir is None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        run_dir = root / "runs" / stamp
        n = 1
        while run_dir.exists():
            n += 1
            run_dir = root / "runs" / f"{stamp}-{n}"
        run_dir.mkdir(parents=True)
    current = registry.current()
    record = _load(run_dir) or {"run": run_dir.name, "started": _now(), "stage": "started", "notes": [],
                                "base": current.name if current else None}
    if resume:
        record["notes"].append(f"resumed at {_now()} from stage {record['stage']}")
    _save(run_dir, record)

    # 1. dataset (frozen in the run folder, so a resumed run trains on the same examples)
    if (run_dir / "dataset" / "counts.json").is_file():
        dataset = Dataset.load(run_dir / "dataset")
    else:
        dataset, problems, _ = _collect(settings, config, hooks, root)
        record["notes"] += [p for p in problems if p not in record["notes"]]
        record["skipped"] = problems
        for problem in problems:
            say(f"skipped: {problem}")
        _save(run_dir, record)  # before the frozen dataset: a kill after it keeps what was skipped
        dataset.save(run_dir / "dataset")
    record["dataset"] = dataset.counts
    if not dataset.train or dataset.counts.get("new", 0) == 0:
        record.update(outcome="nothing new to learn", stage="done", finished=_now())
        record["notes"].append("no new successful trajectories, labels or policy examples since the last run")
        return _finish(run_dir, record, say)

    record["parent"] = current.name if current else None
    from stackmind.llm.embedded import ensure_model

    model_dir = model_dir or settings.model_path or ensure_model(settings)

    # 2. LoRA training
    if record.get("train") is None:
        rows = dataset.training_rows()
        say(f"training a LoRA adapter on {len(rows)} rows ({dataset.counts['new']} new, "
            f"{dataset.counts['replay']} replayed)")
        result = train_lora(model_dir, rows, run_dir, config,
                            current_adapter=current.path if current else None, deadline=deadline,
                            probe=dataset.train[0].prompt, progress=say)
        record["train"] = result.to_dict()
        record["stage"] = "trained"
        _save(run_dir, record)
    train = TrainResult.from_dict(record["train"])

    # 3. value model, retrained in the same run
    if record.get("value") is None:
        if hooks.retrain_value is None:
            record["value"] = {"skipped": hooks.missing.get("value model", "no value hook")}
        else:
            say("retraining the value model")
            record["value"] = dict(hooks.retrain_value(settings))
        _save(run_dir, record)

    # 4. gate
    if record.get("gate") is None:
        gate = evaluate(model_dir, train.adapter_dir, current.path if current else None, dataset.heldout, config,
                        checks=hooks.checks, margins=hooks.margins, llm_for=hooks.llm_for, progress=say)
        record["gate"] = gate.to_dict()
        record["gate"]["skipped"].update({k: v for k, v in hooks.missing.items() if k in ("game24", "policy tests")})
        record["stage"] = "gated"
        _save(run_dir, record)
    gate = GateResult.from_dict(record["gate"])

    # 5. registry: every candidate is kept; only a passing one is promoted
    if record.get("version") is None:
        version = registry.register(train.adapter_dir, {
            "parent": record["parent"], "run": run_dir.name, "rank": train.rank, "init": train.init,
            "dataset": dataset.counts, "train": {k: v for k, v in record["train"].items() if k != "log"},
            "gate": record["gate"], "base_model": str(model_dir),
        })
        record["version"] = version.name
        record["stage"] = "registered"
        _save(run_dir, record)
    if gate.passed and not record.get("promoted"):
        registry.promote(record["version"])
        record.update(promoted=True, previous=record["parent"])
        _remember_trained(root, dataset)
        record["stage"] = "promoted"
        _save(run_dir, record)
    record["outcome"] = (f"promoted {record['version']}" if gate.passed
                         else f"kept {record['parent'] or 'the base model'}: {record['version']} did not pass the gate")

    # 6. serving: hot-load into a configured vLLM server
    if gate.passed and settings.backend == "openai" and settings.openai_base_url and not record.get("served"):
        from stackmind.consolidate.serving import HotLoadError, hot_load

        try:
            record["served"] = hot_load(settings, registry.get(record["version"]))
        except HotLoadError as e:
            record["notes"].append(f"hot-load failed: {e}")
    record.update(stage="done", finished=_now())
    return _finish(run_dir, record, say)


def plan(settings: Settings, config: ConsolidateConfig, dataset: Dataset, problems: list[str], hooks: Hooks,
         max_minutes: float | None) -> dict[str, Any]:
    """What a run would do, for ``--dry-run``."""
    current = AdapterRegistry.of(settings).current()
    rows = dataset.training_rows()
    return {
        "dry_run": True,
        "dataset": dataset.counts,
        "examples": [{"source": e.source, "origin": e.origin, "weight": e.weight, "prompt": _short(e.prompt),
                      "target": _short(e.target)} for e in dataset.train[:20]],
        "heldout": [{"source": e.source, "origin": e.origin, "prompt": _short(e.prompt)} for e in dataset.heldout[:10]],
        "train_rows": len(rows),
        "init": f"continue {current.name}" if current is not None and config.init == "continue" else
                f"fresh adapter, rank {config.rank}",
        "training": {"learning_rate": config.learning_rate, "epochs": config.epochs, "max_steps": config.max_steps,
                     "batch_size": config.batch_size, "max_length": config.max_length},
        "gate": {"margin": config.gate_margin, "heldout": len(dataset.heldout),
                 "exact_match_examples": min(config.exact_match_examples, len(dataset.heldout)),
                 "checks": sorted(hooks.checks)},
        "value_model": "retrain" if hooks.retrain_value else f"skipped: {hooks.missing.get('value model')}",
        "hindsight": "hook" if hooks.examples else f"skipped: {hooks.missing.get('hindsight examples')}",
        "max_minutes": max_minutes,
        "problems": problems,
        "would_run": bool(dataset.train) and dataset.counts.get("new", 0) > 0,
    }


# ---- state between runs ----------------------------------------------------------------------


def _collect(settings: Settings, config: ConsolidateConfig, hooks: Hooks,
             root: Path) -> tuple[Dataset, list[str], dict[str, Any]]:
    state = _state(root)
    since = dt.datetime.fromisoformat(state["last_success"]) if state.get("last_success") else None
    extra: list[Example] = []
    problems: list[str] = []
    if hooks.examples is not None:
        try:
            extra = list(hook_examples(hooks.examples(settings, since), settings, config))
        except Exception as e:  # the labeller's failure should not cost the night's other data
            problems.append(f"hindsight examples skipped: {type(e).__name__}: {e}")
    replay_pool = _replay_pool(root / "replay.jsonl", problems)
    dataset, p = build_dataset(settings, config, trained_keys=set(state.get("trained_keys", [])),
                               replay_pool=replay_pool, extra=extra)
    return dataset, problems + p, state


def _state(root: Path) -> dict[str, Any]:
    path = root / "state.json"
    data = _read_json(path) if path.is_file() else {}
    return data


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConsolidateStateError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg}); restore it, or move "
                                    "it aside (consolidation then starts over from what it finds)") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConsolidateStateError(f"{path}: cannot be read ({e}); move it aside") from e
    if not isinstance(data, dict):
        raise ConsolidateStateError(f"{path}:1: must be a JSON object; restore it, or move it aside")
    return data


def _refuse_stale(run_dir: Path, registry: AdapterRegistry) -> None:
    """A resumed run must continue on the adapter it started from: if another run (or a person)
    promoted a different one since, its checkpoint is out of date. It is marked abandoned."""
    why = _stale(run_dir, registry)
    if why is None:
        return
    record = _load(run_dir) or {}
    record.update(stage="done", outcome=f"abandoned: {why}", finished=_now())
    _save(run_dir, record)
    raise StaleResume(f"cannot resume run {run_dir.name}: {why}, so its checkpoint would train and promote an "
                      "out-of-date adapter. It is marked abandoned (nothing was promoted); start a fresh run "
                      "with `stackmind consolidate`")


def _stale(run_dir: Path, registry: AdapterRegistry) -> str | None:
    record = _load(run_dir) or {}
    if "base" in record:
        base = record["base"]
    elif "parent" in record:  # runs recorded before "base": the adapter training started from
        base = record["parent"]
    else:
        return None  # killed before anything was built on the current adapter
    current = registry.current()
    now = current.name if current else None
    if base == now:
        return None
    return (f"it started on {base or 'the base model'}, but {now or 'the base model'} is current now")


def stale_run(settings: Settings, run_dir: Path) -> str | None:
    """Why an unfinished run cannot be resumed any more (None: it can)."""
    return _stale(run_dir, AdapterRegistry.of(settings))


def _replay_pool(path: Path, problems: list[str]) -> list[Example]:
    """The examples trained in earlier runs; a line that does not read is skipped and reported."""
    if not path.is_file():
        return []
    pool = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ex = Example.from_dict(row)
            if not ex.messages or not all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                          and m.get("role") in ("system", "user", "assistant") for m in ex.messages):
                raise ValueError("messages must be a list of {role, content}")
            if not any(m["role"] == "assistant" for m in ex.messages):
                raise ValueError("no assistant turn to train on")
            if not math.isfinite(ex.weight) or not 0 <= ex.weight <= MAX_WEIGHT:
                raise ValueError(f"weight must be from 0 to {MAX_WEIGHT:g}")
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
            problems.append(f"{path}:{i}: {type(e).__name__}: {e}; line skipped")
            continue
        pool.append(ex)
    return pool


def _remember_trained(root: Path, dataset: Dataset) -> None:
    """After a promotion: these examples are no longer new, and join the replay pool."""
    state = _state(root)
    keys = set(state.get("trained_keys", []))
    fresh = [e for e in dataset.train if e.source != "replay" and e.key not in keys]
    pool = [e.to_dict() for e in _replay_pool(root / "replay.jsonl", [])]
    write_jsonl(root / "replay.jsonl", pool + [e.to_dict() for e in fresh])
    state["trained_keys"] = sorted(keys | {e.key for e in fresh})
    state["last_success"] = _now()
    atomic_write(root / "state.json", json.dumps(state))


def _unfinished(root: Path) -> Path | None:
    runs = sorted((root / "runs").glob("*")) if (root / "runs").is_dir() else []
    for run_dir in reversed(runs):
        try:
            rec = _load(run_dir)
        except ConsolidateStateError:
            continue  # a run.json that does not read cannot be resumed
        if rec is not None and rec.get("stage") != "done":
            return run_dir
    return None


def unfinished_run(settings: Settings) -> Path | None:
    return _unfinished(consolidate_dir(settings))


def _load(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "run.json"
    return _read_json(path) if path.is_file() else None


def _save(run_dir: Path, record: dict[str, Any]) -> None:
    atomic_write(run_dir / "run.json", json.dumps(record, indent=2, default=str))


def _finish(run_dir: Path, record: dict[str, Any], say: ProgressFn) -> dict[str, Any]:
    _save(run_dir, record)
    record["report"] = str(write_report(run_dir, record))
    _save(run_dir, record)
    say(f"{record['outcome']}; report: {record['report']}")
    return record


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _short(x: Any, n: int = 160) -> str:
    text = x if isinstance(x, str) else " | ".join(m["content"] for m in x if m["role"] != "system")
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
