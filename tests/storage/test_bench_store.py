from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "store.py"


@pytest.mark.server
def test_store_bench_runs_small_and_reports_both_stores(tmp_path: Path, postgres_server,  # noqa: ANN001
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_store", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "store.json"
    url = postgres_server.create_database("bench_store")
    assert bench.main(["--ops", "30", "--threads", "2", "--steps", "5", "--database-url", url, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["stores"]) == {"sqlite", "postgresql"}
    assert set(result["stores"]["sqlite"]) == set(result["stores"]["postgresql"])
    assert all(v["per_s"] > 0 for figures in result["stores"].values() for v in figures.values())
    assert "PG / SQLite" in capsys.readouterr().out
