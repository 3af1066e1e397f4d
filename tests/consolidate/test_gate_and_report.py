from __future__ import annotations

from typer.testing import CliRunner

import stackmind.interfaces.cli_consolidate  # noqa: F401
from stackmind.consolidate import Scores, consolidate_dir, decide
from stackmind.consolidate.report import last_report, write_report
from stackmind.interfaces._app import app
from stackmind.settings import Settings

runner = CliRunner()


def test_gate_passes_within_the_margin_and_fails_beyond_it() -> None:
    ok, reasons = decide(Scores(loss=2.0, exact_match=0.5), Scores(loss=2.03, exact_match=0.49), margin=0.02)
    assert ok, reasons
    ok, reasons = decide(Scores(loss=2.0), Scores(loss=2.1), margin=0.02)
    assert not ok and "held-out loss" in reasons[0]
    ok, reasons = decide(Scores(loss=2.0, checks={"game24": 0.4}), Scores(loss=1.0, checks={"game24": 0.3}), 0.02)
    assert not ok and any("game24 0.300 < 0.400" in r for r in reasons)
    ok, _ = decide(Scores(loss=2.0), Scores(loss=float("nan")), 0.02)
    assert not ok


def test_report_has_markdown_and_pictures(settings: Settings) -> None:
    run_dir = consolidate_dir(settings) / "runs" / "20250101-000000"
    run_dir.mkdir(parents=True)
    record = {
        "run": run_dir.name, "outcome": "promoted v0001", "dataset": {"new": 3, "replay": 1, "heldout": 1},
        "train": {"init": "fresh", "rank": 8, "device": "cpu", "steps": 3, "examples": 6, "seconds": 30.0,
                  "examples_per_hour": 720.0, "log": [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 1.0}]},
        "gate": {"current": {"loss": 3.0, "exact_match": 0.0, "checks": {}},
                 "candidate": {"loss": 0.5, "exact_match": 1.0, "checks": {}}, "passed": True,
                 "reasons": ["held-out loss 0.5 vs 3.0: ok"], "margin": 0.02, "verification": {}, "skipped": {}},
        "value": {"brier": 0.2, "calibration": {"predicted": [0.1, 0.5, 0.9], "observed": [0.2, 0.4, 0.8]}},
        "version": "v0001", "promoted": True,
    }
    path = write_report(run_dir, record)
    text = path.read_text()
    assert "promoted v0001" in text and "| held-out loss | 3.0000 | 0.5000 |" in text
    for png in ("loss.png", "eval.png", "calibration.png"):
        assert (run_dir / png).read_bytes()[:4] == b"\x89PNG"
        assert f"]({png})" in text
    assert last_report(consolidate_dir(settings)) == path
    res = runner.invoke(app, ["consolidate", "--report", "--json"])
    assert res.exit_code == 0, res.output
    assert str(path) in res.stdout


def test_report_before_any_run_says_what_to_do(settings: Settings) -> None:
    res = runner.invoke(app, ["consolidate", "--report"])
    assert res.exit_code == 1 and "run `stackmind consolidate` first" in res.output

