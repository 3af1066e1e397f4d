"""The search commands, over the real command line (typer), with the deterministic Game-of-24 backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from search_doubles import Game24Double
from typer.testing import CliRunner

from stackmind.interfaces import cli_search
from stackmind.interfaces.cli import app
from stackmind.llm import LLM
from stackmind.settings import Settings
from stackmind.trace import Episode

CSV = """Rank,Puzzles,AMT (s),Solved rate,1-sigma Mean (s),1-sigma STD (s)
1,1 1 4 6,4.4,99.20%,4.67,1.48
2,1 1 1 1,4.41,99.60%,4.68,1.45
3,4 9 10 13,4.45,99.20%,4.69,1.48
"""


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch) -> Game24Double:
    backend = Game24Double()
    monkeypatch.setattr(cli_search, "_load_llm", lambda s: LLM(backend))
    return backend


@pytest.mark.parametrize("strategy", ["bfs", "dfs", "mcts"])
def test_bench_game24_json(tmp_path: Path, double: Game24Double, settings: Settings, strategy: str) -> None:
    csv = tmp_path / "p.csv"
    csv.write_text(CSV)
    res = CliRunner().invoke(app, ["bench", "game24", "--csv", str(csv), "--range", "0:3",
                                   "--strategy", strategy, "--json", "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [p["puzzle"] for p in doc["puzzles"]] == ["1 1 4 6", "1 1 1 1", "4 9 10 13"]
    assert [p["success"] for p in doc["puzzles"]] == [True, False, True]
    first = doc["puzzles"][0]
    assert first["calls"] > 0 and first["prompt_tokens"] > 0 and first["completion_tokens"] > 0
    summary = doc["summary"]
    assert summary["solved"] == 2 and summary["success_rate"] == pytest.approx(2 / 3, abs=1e-3)
    assert {"calls", "prompt_tokens", "completion_tokens", "wall_seconds"} <= set(summary["median"])
    assert "search_tokens_per_s" in summary and "single_stream_tokens_per_s" in summary
    assert json.loads((tmp_path / "r.json").read_text())["summary"] == summary
    # each puzzle's episode was written with its tree, and the viewer draws it
    ep = Episode.load(first["episode"])
    assert ep.tree and ep.reward == 1.0
    shown = CliRunner().invoke(app, ["tree", "show", ep.id, "--json"])
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    html = Path(info["html"]).read_text()
    assert info["nodes"] == len(ep.tree["nodes"]) and html.count('class="node') == info["nodes"]


def test_bench_human_output_and_errors(tmp_path: Path, double: Game24Double, settings: Settings) -> None:
    csv = tmp_path / "p.csv"
    csv.write_text(CSV)
    res = CliRunner().invoke(app, ["bench", "game24", "--csv", str(csv), "--range", "2:3"])
    assert res.exit_code == 0, res.output
    assert "solved 1/1 (100%)" in res.stdout and "tokens/s during search" in res.stdout
    assert list((settings.home / "bench").glob("game24-search-bfs-*.json"))
    bad = CliRunner().invoke(app, ["bench", "game24", "--csv", str(csv), "--strategy", "astar"])
    assert bad.exit_code == 1 and "bfs, dfs, mcts" in bad.output
    bad = CliRunner().invoke(app, ["bench", "game24", "--csv", str(tmp_path / "none.csv")])
    assert bad.exit_code == 1 and "no such file" in bad.output
    bad = CliRunner().invoke(app, ["bench", "game24", "--csv", str(csv), "--range", "5"])
    assert bad.exit_code == 1 and "A:B" in bad.output
    # --split takes the file's split by row (3 rows: the last one is the only dev puzzle)
    dev = CliRunner().invoke(app, ["bench", "game24", "--csv", str(csv), "--split", "dev", "--json",
                                   "--out", str(tmp_path / "dev.json")])
    assert dev.exit_code == 0, dev.output
    assert [p["puzzle"] for p in json.loads(dev.stdout)["puzzles"]] == ["4 9 10 13"]
    bad = CliRunner().invoke(app, ["bench", "game24", "--csv", str(csv), "--split", "test"])
    assert bad.exit_code == 1 and "train, dev or heldout" in bad.output
    bad = CliRunner().invoke(app, ["bench", "game24", "--csv", str(csv), "--range", "0:2", "--split", "dev"])
    assert bad.exit_code == 1 and "no puzzles left" in bad.output


def test_tree_show_errors(settings: Settings) -> None:
    res = CliRunner().invoke(app, ["tree", "show", "nope"])
    assert res.exit_code == 1 and "no episode 'nope'" in res.output
    plain = Episode(goal="say hi", answer="hi")
    path = plain.save(settings.episodes_dir)
    res = CliRunner().invoke(app, ["tree", "show", str(path)])
    assert res.exit_code == 1 and "no search tree" in res.output
