"""`stackmind consolidate`, `stackmind adapters ...` and `stackmind serve --vllm`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from stackmind.interfaces._app import JSON_OPTION, app, console, fail, out, print_json, settings

if TYPE_CHECKING:
    from stackmind.consolidate import AdapterVersion
    from stackmind.settings import Settings

adapters_app = typer.Typer(help="LoRA adapters made by consolidation: list, promote, roll back.",
                           no_args_is_help=True)
app.add_typer(adapters_app, name="adapters")

EX_TEMPFAIL = 75  # another run holds the lock: cron may try again later


@app.command()
def consolidate(
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the dataset and the plan; train nothing."),
    max_minutes: float | None = typer.Option(None, "--max-minutes", min=0.1,
                                             help="Time budget: training stops and saves in time for the gate."),
    report: bool = typer.Option(False, "--report", help="Show the last run's report and exit."),
    resume: bool = typer.Option(False, "--resume", help="Continue the last unfinished run (e.g. after a kill)."),
    fresh: bool = typer.Option(False, "--fresh", help="Start a fresh adapter instead of continuing the promoted one."),
    rank: int | None = typer.Option(None, "--rank", help="LoRA rank for a fresh adapter (8, 16, 32, 64)."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop training after this many steps."),
    json: bool = JSON_OPTION,
) -> None:
    """Turn the day's experience into weights: LoRA + value model, gated promotion, report."""
    from pydantic import ValidationError

    from stackmind.consolidate import (
        AdapterVerificationError,
        ConsolidateConfig,
        ConsolidationLocked,
        consolidate_dir,
        last_report,
        unfinished_run,
    )
    from stackmind.consolidate import consolidate as run_consolidation

    s = settings()
    if report:
        path = last_report(consolidate_dir(s))
        if path is None:
            raise fail("no consolidation report yet: run `stackmind consolidate` first")
        if json:
            print_json({"report": str(path), "pictures": [str(p) for p in sorted(path.parent.glob("*.png"))]})
            return
        from rich.markdown import Markdown

        out.print(Markdown(path.read_text()))
        console.print(f"report: {path} (pictures beside it)")
        return
    overrides: dict[str, object] = {}
    if fresh:
        overrides["init"] = "fresh"
    if rank is not None:
        overrides["rank"] = rank
    if max_steps is not None:
        overrides["max_steps"] = max_steps
    try:
        config = ConsolidateConfig(**overrides)
    except ValidationError as e:
        raise fail("; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())) from e
    if not resume and not dry_run and (left := unfinished_run(s)) is not None:
        from stackmind.consolidate.run import stale_run

        why = stale_run(s, left)
        console.print(f"note: run {left.name} did not finish; " + (
            f"it cannot be resumed ({why}). " if why else "`stackmind consolidate --resume` continues it. ")
            + "Starting a new run.", markup=False, highlight=False, soft_wrap=True)
    try:
        from stackmind.learning.hooks import learning_hooks

        record = run_consolidation(s, config, dry_run=dry_run, max_minutes=max_minutes, resume=resume,
                                   hooks=learning_hooks(s, config), progress=lambda m: console.print(f"[dim]consolidate:[/] {m}", markup=True,
                                                                    highlight=False))
    except ConsolidationLocked as e:
        raise fail(str(e), code=EX_TEMPFAIL) from e
    except AdapterVerificationError as e:
        raise fail(f"{e}. The run can be retried with --resume after a fix.") from e
    if json:
        print_json(record)
        return
    if dry_run:
        _show_plan(record)
        return
    out.print(record["outcome"])
    out.print(f"report: {record['report']}")


def _show_plan(plan: dict[str, object]) -> None:
    from rich.table import Table

    counts = plan["dataset"]
    assert isinstance(counts, dict)
    table = Table(title="consolidation dataset", show_header=True)
    table.add_column("part")
    table.add_column("examples", justify="right")
    for k, v in counts.items():
        table.add_row(str(k), str(v))
    out.print(table)
    examples = plan["examples"]
    assert isinstance(examples, list)
    for e in examples:
        out.print(f"  [{e['source']} {e['origin']} x{e['weight']:g}] {e['prompt']}  ->  {e['target']}")
    for key in ("train_rows", "init", "training", "gate", "value_model", "hindsight", "max_minutes"):
        out.print(f"{key}: {plan[key]}")
    for p in plan["problems"] or []:  # type: ignore[union-attr]
        out.print(f"problem: {p}")
    out.print("would run: yes" if plan["would_run"] else "would run: no (nothing new to learn)")


@adapters_app.command("list")
def adapters_list(json: bool = JSON_OPTION) -> None:
    """Versions with lineage, gate metrics and which one is promoted."""
    from stackmind.consolidate import AdapterRegistry

    registry = AdapterRegistry.of(settings())
    current = registry.current()
    versions = registry.versions()
    _warn(registry.problems)
    if json:
        print_json({"current": current.name if current else None,
                    "versions": [{"name": v.name, "path": str(v.path), **v.meta} for v in versions]})
        return
    if not versions:
        out.print("no adapters yet: `stackmind consolidate` makes the first")
        return
    from rich.table import Table

    table = Table(show_header=True)
    for col in ("", "version", "parent", "created", "rank", "held-out loss (cur -> cand)", "gate"):
        table.add_column(col)
    for v in versions:
        gate = v.meta.get("gate") or {}
        loss = f"{_f(gate.get('current', {}).get('loss'))} -> {_f(gate.get('candidate', {}).get('loss'))}" if gate else ""
        table.add_row("*" if current and current.name == v.name else "", v.name, str(v.parent or "base"),
                      str(v.meta.get("created", "")), str(v.rank or ""), loss,
                      "" if not gate else "pass" if gate.get("passed") else "fail")
    out.print(table)
    out.print(f"current: {current.name if current else 'base model (no adapter promoted)'}")


def _warn(problems: list[str]) -> None:
    for p in problems:
        console.print(f"warning: {p}", markup=False, highlight=False, soft_wrap=True)


def _f(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


@adapters_app.command("promote")
def adapters_promote(version: str = typer.Argument(..., help="The version to serve, e.g. v0003.")) -> None:
    """Serve VERSION from now on (an atomic switch; nothing is deleted)."""
    from stackmind.consolidate import AdapterRegistry, ConsolidationLocked, RegistryError, consolidate_dir
    from stackmind.consolidate.lock import exclusive

    s = settings()
    registry = AdapterRegistry.of(s)
    try:
        with exclusive(consolidate_dir(s) / "lock", what="adapter promotion"):
            v = registry.promote(version, reason="manual")
    except ConsolidationLocked as e:
        raise fail(str(e), code=EX_TEMPFAIL) from e
    except RegistryError as e:
        raise fail(str(e)) from e
    finally:
        _warn(registry.problems)
    out.print(f"promoted {v.name}")
    _hot_load_if_served(s, v)


@adapters_app.command("rollback")
def adapters_rollback() -> None:
    """Serve the adapter that was promoted before the current one (or the base model)."""
    from stackmind.consolidate import AdapterRegistry, ConsolidationLocked, RegistryError, consolidate_dir
    from stackmind.consolidate.lock import exclusive

    s = settings()
    registry = AdapterRegistry.of(s)
    try:
        with exclusive(consolidate_dir(s) / "lock", what="adapter rollback"):
            v = registry.rollback()
    except ConsolidationLocked as e:
        raise fail(str(e), code=EX_TEMPFAIL) from e
    except RegistryError as e:
        raise fail(str(e)) from e
    finally:
        _warn(registry.problems)
    out.print(f"rolled back to {v.name if v else 'the base model'}")
    if v is not None:
        _hot_load_if_served(s, v)


def _hot_load_if_served(s: Settings, version: AdapterVersion) -> None:
    from stackmind.consolidate import HotLoadError, hot_load

    if s.backend == "openai" and s.openai_base_url:
        try:
            name = hot_load(s, version)
        except HotLoadError as e:
            raise fail(str(e)) from e
        out.print(f"hot-loaded into {s.openai_base_url} as {name}")


@app.command()
def serve(
    vllm: bool = typer.Option(False, "--vllm", help="Print (or --launch) the vLLM server command for a GPU host."),
    launch: bool = typer.Option(False, "--launch", help="With --vllm: run it instead of printing it."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    max_lora_rank: int | None = typer.Option(None, "--max-lora-rank", help="Default: the largest registered rank."),
    model: str | None = typer.Option(None, "--model", help="Base model (default: the embedded model)."),
) -> None:
    """Serve the model over an OpenAI-compatible API: the embedded model on llama.cpp here (continuous
    batching, grammars, streaming, adapters hot-loaded by POST /v1/load_lora_adapter), or vLLM on a
    GPU host (--vllm). The promoted adapter is loaded at start and served as the default."""
    from stackmind.consolidate.serving import shell_line, vllm_serve_command

    s = settings()
    if not vllm:
        from stackmind.llm.llamacpp import embedded_llamacpp
        from stackmind.llm.server import serve as serve_http

        settings_used = s.model_copy(update={"model_path": Path(model)}) if model else s
        backend = embedded_llamacpp(settings_used)
        console.print(f"serving {s.model} on http://{host}:{port}/v1 (llama.cpp, {settings_used.llamacpp_slots} "
                      f"slots{', adapter ' + str(backend.default_adapter) if backend.default_adapter else ''}); "
                      f"then: STACKMIND_BACKEND=openai STACKMIND_OPENAI_BASE_URL=http://{host}:{port}/v1")
        serve_http(backend, s.model, host=host, port=port)
        return
    cmd = vllm_serve_command(s, max_lora_rank=max_lora_rank, port=port, model=Path(model) if model else None)
    if not launch:
        out.print(shell_line(cmd))
        console.print(f"then: STACKMIND_BACKEND=openai STACKMIND_OPENAI_BASE_URL=http://localhost:{port}/v1")
        return
    if shutil.which("vllm") is None:
        raise fail("vllm is not installed here: pip install vllm on a GPU host, or run the printed command there")
    os.execvpe(cmd[0], cmd, {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"})
