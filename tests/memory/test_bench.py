from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "memory.py"


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.single_mode
def test_bench_runs_small_both_layouts_and_modes_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_memory", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "memory.json"
    common = ["--queries", "6", "--e2e", "40", "--pool", "80", "--owners", "3", "--home", str(tmp_path / "home")]
    assert bench.main(["--sizes", "100", "200", *common, "--modes", "embedded", "server", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["vectors"] == {"embedded": 80, "mixed": 120}
    for mode in ("embedded", "server"):
        for layout in ("shared", "per-owner"):
            run = result["runs"][mode][layout]
            assert set(run["sizes"]) == {"100", "200"}
            for r in run["sizes"].values():
                assert 0 < r["recall"]["p50_ms"] <= r["recall"]["p95_ms"]
            assert run["insert_e2e_per_s"] > 0 and run["insert_index_per_s"] > 0
    assert "p50 vs shared" in capsys.readouterr().out
    # A second run on the same --home reuses the built stores and fills only what is missing.
    assert bench.main(["--sizes", "200", "300", *common, "--layouts", "per-owner", "--json", str(out)]) == 0
    again = json.loads(out.read_text())["runs"]["embedded"]["per-owner"]
    assert again["resumed_from"] == 200 and set(again["sizes"]) == {"200", "300"}
