from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "memory.py"


@pytest.mark.slow
def test_bench_runs_small_and_reports_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_memory", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "memory.json"
    assert bench.main(["--sizes", "150", "400", "--queries", "8", "--e2e", "60", "--pool", "120",
                       "--owners", "3", "--home", str(tmp_path / "home"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["sizes"]) == {"150", "400"}
    assert result["vectors"] == {"embedded": 120, "mixed": 280}
    for size in ("150", "400"):
        r = result["sizes"][size]["recall"]
        assert 0 < r["p50_ms"] <= r["p95_ms"]
    assert result["insert_e2e_per_s"] > 0 and result["insert_index_per_s"] > 0
    assert "memory recall" in capsys.readouterr().out
