"""`stackmind policy ...` end to end through the real command line (typer's runner)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from stackmind.interfaces.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
LOCATED = re.compile(r"^(.+?):(\d+):(\d+): (error|warning): .+")


def run(*args: str):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["policy", *args])
    assert "Traceback" not in result.output, result.output
    return result


def test_check_the_starter_library_and_traces() -> None:
    r = run("check", str(REPO / "policies"), str(REPO / "traces"))
    assert r.exit_code == 0, r.output
    traces = len(list((REPO / "traces").glob("*.trace.yaml")))
    assert f"ok: 10 policies, {traces} traces: 0 error(s), 0 warning(s)" in r.stdout


def test_check_lists_every_error_located_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.policy.yaml").write_text("name: a\ndescripton: x\nexamples: []\ntraining: {}\n", encoding="utf-8")
    (bad / "b.policy.yaml").write_bytes(b"name: b\n\xff\xfe\x00")
    (bad / "c.policy.yaml").write_text("a: &x [1]\nb: *x\n", encoding="utf-8")
    (bad / "d.policy.yaml").write_text("name: d\n" + "x" * 100_000 + "\n", encoding="utf-8")
    (bad / "e.trace.yaml").write_text("goal: g\nsteps:\n  - thought: '@nosuch(1)'\n", encoding="utf-8")
    (bad / "f.policy.yaml").write_text("[" * 10_000, encoding="utf-8")
    r = run("check", str(bad))
    assert r.exit_code == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines and all(LOCATED.match(ln) for ln in lines), lines
    files = {Path(LOCATED.match(ln).group(1)).name for ln in lines}  # type: ignore[union-attr]
    assert files == {"a.policy.yaml", "b.policy.yaml", "c.policy.yaml", "d.policy.yaml", "e.trace.yaml",
                     "f.policy.yaml"}
    assert sum(ln.startswith(str(bad / "a.policy.yaml")) for ln in lines) >= 3  # all of a file's errors
    assert "failed:" in r.stdout


def test_check_json(tmp_path: Path) -> None:
    (tmp_path / "x.policy.yaml").write_text("name: x\n", encoding="utf-8")
    r = run("check", str(tmp_path), "--json")
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert data["ok"] is False and data["problems"][0]["line"] == 1


def test_new_scaffold_checks_clean_and_refuses_overwrite(tmp_path: Path) -> None:
    r = run("new", "my_policy", "--dir", str(tmp_path))
    assert r.exit_code == 0, r.output
    path = tmp_path / "my_policy.policy.yaml"
    assert path.is_file()
    assert run("check", str(path)).exit_code == 0
    assert run("new", "my_policy", "--dir", str(tmp_path)).exit_code == 1
    assert run("new", "9bad", "--dir", str(tmp_path)).exit_code == 1


def test_list_show_graph(tmp_path: Path) -> None:
    d = str(REPO / "policies")
    r = run("list", "-d", d)
    assert r.exit_code == 0 and r.stdout.count("\n@") + r.stdout.startswith("@") == 10
    rows = json.loads(run("list", "-d", d, "--json").stdout)
    assert {r["name"]: r["fast"] for r in rows}["hindsight_compress"] == "reward_prediction_error"
    r = run("show", "decompose", "-d", d)
    assert r.exit_code == 0 and "[policy] Learning policy @decompose" in r.stdout and "[trajectory]" in r.stdout
    assert run("show", "nope", "-d", d).exit_code == 1
    png, html = tmp_path / "g.png", tmp_path / "g.html"
    r = run("graph", "-d", d, "--png", str(png), "--html", str(html))
    assert r.exit_code == 0 and "@decompose -> @solve_with_program" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "<svg" in html.read_text(encoding="utf-8")
    g = json.loads(run("graph", "-d", d, "--json").stdout)
    assert g["cycles"] == [] and {"from": "decompose", "to": "solve_with_program", "examples": [5]} in g["edges"]


def test_graph_reports_cycles(tmp_path: Path) -> None:
    for a, b in (("a", "b"), ("b", "a")):
        (tmp_path / f"{a}.policy.yaml").write_text(
            f"name: {a}\ndescription: d\nexamples: [{{goal: g, response: '@{b}()'}}]\ntraining: {{slow: {{}}}}\n",
            encoding="utf-8")
    r = run("graph", "-d", str(tmp_path))
    assert r.exit_code == 1 and "cycle: @a -> @b -> @a" in r.stderr


def test_schema_validates_the_starter_library(tmp_path: Path) -> None:
    r = run("schema")
    schema = json.loads(r.stdout)
    for path in (REPO / "policies").glob("*.policy.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "description": "d", "examples": [], "training": {}, "oops": 1}, schema)
    out = tmp_path / "s.json"
    assert run("schema", "-o", str(out)).exit_code == 0 and json.loads(out.read_text()) == schema


def test_test_rejects_a_bad_split() -> None:
    r = run("test", "decompose", "--split", "nope", "-d", str(REPO / "policies"))
    assert r.exit_code == 1 and "--split must be" in r.stderr


@pytest.mark.slow
def test_policy_test_runs_through_the_agent() -> None:
    r = run("test", "solve_with_program", "--split", "heldout", "--max-steps", "1", "--json",
            "-d", str(REPO / "policies"))
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["n"] == 1 and data["cases"][0]["expected"] == "76"
    assert 0.0 <= data["pass_rate_pushed"] <= 1.0 and 0.0 <= data["pass_rate_not_pushed"] <= 1.0


@pytest.mark.slow
def test_policy_test_on_a_goal_family_runs_both_arms_with_the_goals_verifiers(settings) -> None:  # noqa: ANN001
    r = run("test", "solve_with_program", "--family", "arithmetic", "--split", "dev", "--limit", "1",
            "--max-steps", "2", "--json", "-d", str(REPO / "policies"))
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    row = data["table"]["arithmetic"]
    assert data["goals"] == 1 and data["split"] == "dev" and data["max_steps"] == 2
    assert row["pushed"]["n"] == row["not pushed"]["n"] == 1
    assert "points_over_not pushed" in row["pushed"]
    # each arm an episode of its own, in the test's own data dir, with the verifier's reward
    from stackmind.trace import Episode

    eps = [Episode.load(p) for p in (settings.home / "policy-tests").rglob("*.trace.yaml")]
    assert len(eps) == 2 and all(e.reward in (0.0, 1.0) for e in eps)
    assert sorted(e.meta.get("policies", []) for e in eps) == [[], ["solve_with_program"]]


def test_policy_test_on_an_unknown_family_says_which_exist() -> None:
    r = run("test", "solve_with_program", "--family", "nope", "-d", str(REPO / "policies"))
    assert r.exit_code == 1 and "nope" in r.stderr
