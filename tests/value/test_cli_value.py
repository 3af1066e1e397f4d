"""`stackmind value train | eval | show | reassess` end to end (real MiniLM, real files)."""

from __future__ import annotations

import json

from typer.testing import CliRunner
from value_doubles import Game24Rules

import stackmind.interfaces.cli_value  # noqa: F401  (registers `value` on the app)
from stackmind.interfaces._app import app
from stackmind.llm.base import LLM
from stackmind.search import Budget, solve
from stackmind.settings import Settings
from stackmind.tasks.game24 import Game24
from stackmind.value import after_episode


def test_value_cli(settings: Settings, tmp_path) -> None:  # noqa: ANN001
    runner = CliRunner()
    csv = tmp_path / "p.csv"
    csv.write_text("Rank,Puzzles\n" + "".join(f"{i},{a} {b} {c} {d}\n" for i, (a, b, c, d) in enumerate(
        [(1, 1, 4, 6), (4, 9, 10, 13), (1, 2, 3, 4), (2, 2, 6, 6), (3, 3, 8, 8), (1, 5, 5, 5), (2, 3, 5, 12),
         (1, 1, 1, 1), (6, 6, 6, 6), (2, 7, 9, 13)], 1)))
    r = runner.invoke(app, ["value", "train", "--game24", str(csv), "--per-depth", "6", "--epochs", "3", "--json"])
    assert r.exit_code == 0, r.output
    trained = json.loads(r.stdout)
    assert trained["version"] == "v0001" and trained["train"] > 0 and trained["eval"] > 0

    png = tmp_path / "rel.png"
    r = runner.invoke(app, ["value", "eval", "--png", str(png), "--json"])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    assert ev["metrics"]["n"] == trained["eval"] and png.read_bytes()[:4] == b"\x89PNG"
    assert isinstance(ev["used_by_search"], bool) and ev["reason"]

    episode = solve(Game24([4, 9, 10, 13]), LLM(Game24Rules(wrong=True)), strategy="bfs", beam=2,
                    budget=Budget(llm_calls=20), stop_on_success=False).to_episode()
    after_episode(settings, episode, scorer="llm-judge")
    episode.save(settings.episodes_dir)

    r = runner.invoke(app, ["value", "show", "--json"])
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    assert shown["current"] == "v0002" and [v["kind"] for v in shown["versions"]] == ["retrain", "online"]
    assert shown["rpe"] and all(row["episode"] == episode.id for row in shown["rpe"])

    r = runner.invoke(app, ["value", "reassess", "--json"])
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)
    assert row["episode"] == episode.id and row["steps"] >= 1 and 0.0 <= row["after"] <= 1.0

    r = runner.invoke(app, ["value", "eval", "--version", "v0099"])
    assert r.exit_code == 1 and "v0099" in r.output and "value show" in r.output


def test_value_train_without_labels_says_what_to_do() -> None:
    r = CliRunner().invoke(app, ["value", "train"])
    assert r.exit_code == 1 and "value train --game24" in r.output
