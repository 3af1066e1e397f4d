"""The consolidation report: ``report.md`` and PNG curves in the run folder.

Pictures: the training loss by step, the gate's measures before (current) and after (candidate), and
the value model's calibration when the value hook reports one. ``consolidate/last-report`` names the
latest report; `stackmind consolidate --report` shows it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stackmind.consolidate.dataset import atomic_write


def write_report(run_dir: Path, record: dict[str, Any]) -> Path:
    pictures = _plots(run_dir, record)
    lines = [f"# Consolidation {record['run']}", "", f"- started: {record.get('started')}",
             f"- finished: {record.get('finished')}", f"- outcome: **{record.get('outcome')}**", ""]
    counts = record.get("dataset", {})
    if counts:
        lines += ["## Dataset", "", "| part | examples |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in counts.items()]
        lines.append("")
    train = record.get("train")
    if train:
        lines += ["## Training", "",
                  f"- init: {train['init']}, rank {train['rank']}, device {train['device']}",
                  f"- steps: {train['steps']}, rows seen: {train['examples']}, {train['seconds']:.0f} s "
                  f"({train['examples_per_hour']:.0f} examples/hour)"
                  + (" — stopped by the time budget" if train.get("stopped_by_budget") else ""), ""]
    gate = record.get("gate")
    if gate:
        lines += ["## Gate", "", "| measure | current | candidate |", "|---|---:|---:|"]
        cur, cand = gate["current"], gate["candidate"]
        for key in ("loss", "exact_match"):
            lines.append(f"| held-out {key.replace('_', ' ')} | {_fmt(cur.get(key))} | {_fmt(cand.get(key))} |")
        for name in cand.get("checks", {}):
            lines.append(f"| {name} | {_fmt(cur['checks'].get(name))} | {_fmt(cand['checks'].get(name))} |")
        lines += ["", f"Decision (margin {gate['margin']}): **{'pass' if gate['passed'] else 'fail'}**", ""]
        lines += [f"- {r}" for r in gate["reasons"]]
        ver = gate.get("verification", {})
        if ver.get("checked"):
            lines.append(f"- saved adapter reloaded: logits within {ver['max_diff_to_trained']:.2g} of the trained "
                         f"model, {ver['max_diff_to_base']:.3g} from the base model")
        for name, why in gate.get("skipped", {}).items():
            lines.append(f"- check {name} failed to run: {why}")
        lines.append("")
    value = record.get("value")
    if value:
        lines += ["## Value model", ""]
        lines += [f"- {k}: {v}" for k, v in value.items() if k != "calibration"]
        lines.append("")
    if record.get("version"):
        lines += ["## Registry", "", f"- registered as {record['version']}"
                  + (f", promoted (previous: {record.get('previous') or 'base model'})" if record.get("promoted")
                     else ", not promoted"), ""]
    if record.get("served"):
        lines += [f"- hot-loaded into vLLM as `{record['served']}`", ""]
    skipped = record.get("skipped", [])
    if skipped:
        lines += ["## Files skipped", "", "They did not read; fix them and the next run takes them in.", ""]
        lines += [f"- {p}" for p in skipped] + [""]
    notes = [n for n in record.get("notes", []) if n not in skipped]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    for title, name in pictures:
        lines += [f"![{title}]({name})", ""]
    path = run_dir / "report.md"
    atomic_write(path, "\n".join(lines))
    atomic_write(run_dir.parent.parent / "last-report", str(path) + "\n")
    return path


def last_report(consolidate_dir: Path) -> Path | None:
    pointer = consolidate_dir / "last-report"
    if not pointer.is_file():
        return None
    path = Path(pointer.read_text().strip())
    return path if path.is_file() else None


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


def _plots(run_dir: Path, record: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: list[tuple[str, str]] = []
    log = [e for e in (record.get("train") or {}).get("log", []) if "loss" in e and "step" in e]
    if log:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([e["step"] for e in log], [e["loss"] for e in log], marker="o", ms=3)
        ax.set(xlabel="step", ylabel="training loss (assistant tokens)", title="LoRA training loss")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(run_dir / "loss.png", dpi=100)
        plt.close(fig)
        out.append(("training loss", "loss.png"))
    gate = record.get("gate")
    if gate:
        names, cur, cand = [], [], []
        for key in ("loss", "exact_match"):
            if gate["current"].get(key) is not None and gate["candidate"].get(key) is not None:
                names.append(f"held-out {key.replace('_', ' ')}")
                cur.append(gate["current"][key])
                cand.append(gate["candidate"][key])
        for name, v in gate["candidate"].get("checks", {}).items():
            if gate["current"]["checks"].get(name) is not None:
                names.append(name)
                cur.append(gate["current"]["checks"][name])
                cand.append(v)
        if names:
            fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names) + 1, 3.2), squeeze=False)
            for ax, name, a, b in zip(axes[0], names, cur, cand, strict=True):
                ax.bar(["current", "candidate"], [a, b], color=["#888888", "#2a7ab0"])
                ax.set_title(name, fontsize=9)
            fig.suptitle(f"gate: {'pass' if gate['passed'] else 'fail'}")
            fig.tight_layout()
            fig.savefig(run_dir / "eval.png", dpi=100)
            plt.close(fig)
            out.append(("evaluation before and after", "eval.png"))
    calib = (record.get("value") or {}).get("calibration")
    if isinstance(calib, dict) and calib.get("predicted"):
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.plot([0, 1], [0, 1], ls="--", color="#999999")
        ax.plot(calib["predicted"], calib["observed"], marker="o")
        ax.set(xlabel="predicted value", ylabel="observed return", title="value calibration")
        fig.tight_layout()
        fig.savefig(run_dir / "calibration.png", dpi=100)
        plt.close(fig)
        out.append(("value calibration", "calibration.png"))
    return out
