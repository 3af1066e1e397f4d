"""`stackmind sandbox run|warm`: exit 0 whenever the sandbox did its job, JSON on request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stackmind.interfaces.cli import app

runner = CliRunner()


def _json(args: list[str]) -> dict:
    res = runner.invoke(app, ["sandbox", "run", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_wasm_file_runs_with_trace(tmp_path: Path) -> None:
    wat = tmp_path / "m.wat"
    wat.write_text('(module (func (export "f") (result i32) i32.const 9) (func (export "g") unreachable))')
    d = _json(["--wasm", str(wat)])
    assert d["outcome"] == "error" and d["trace"]["counts"] == {"export:f:ok": 1, "export:g:trap": 1}
    assert d["trace"]["entropy"] == 1.0


def test_invalid_wasm_bytes_exit_zero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"\x00asm\x01\x00\x00\x00\xff\xff")
    d = _json(["--wasm", str(bad)])
    assert d["outcome"] == "invalid" and "not a valid module" in d["detail"]


def test_usage_errors_are_not_exit_zero(tmp_path: Path) -> None:
    assert runner.invoke(app, ["sandbox", "run"]).exit_code == 2
    assert runner.invoke(app, ["sandbox", "run", "-c", "1", "--wasm", "x.wat"]).exit_code == 2
    assert runner.invoke(app, ["sandbox", "run", str(tmp_path / "missing.py")]).exit_code == 2
    assert runner.invoke(app, ["sandbox", "run", "-c", "1", "--deadline", "0"]).exit_code == 2


@pytest.mark.slow
def test_python_code_file_and_limits(tmp_path: Path) -> None:
    d = _json(["-c", "print(17 * 23)"])
    assert (d["outcome"], d["stdout"], d["exit_code"]) == ("ok", "391\n", 0)
    prog = tmp_path / "spin.py"
    prog.write_text("while True:\n    pass\n")
    d = _json([str(prog), "--deadline", "0.5"])
    assert d["outcome"] == "timeout"
    data = tmp_path / "in.txt"
    data.write_text("from the host")
    d = _json(["-c", "print(open('in.txt').read())", "--put", f"in.txt={data}"])
    assert d["stdout"] == "from the host\n" and d["files"] == ["/in.txt"]
    d = _json(["-c", "import sys; sys.exit(3)"])
    assert (d["outcome"], d["exit_code"]) == ("error", 3)  # the guest failed; the command did not


@pytest.mark.slow
def test_plain_output_and_warm() -> None:
    res = runner.invoke(app, ["sandbox", "run", "-c", "print('hi')"])
    assert res.exit_code == 0 and res.stdout == "hi\n"
    res = runner.invoke(app, ["sandbox", "warm", "--json"])
    assert res.exit_code == 0
    d = json.loads(res.stdout)
    assert d["compiled"] is False and d["path"].endswith("-fuel.cwasm")
