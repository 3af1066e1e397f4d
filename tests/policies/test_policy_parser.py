"""Policy and trace files: the starter library reads cleanly; every problem is located."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackmind.policies import FileProblems, check, load_policy, parse_policy, read
from stackmind.policies.parser import parse_trace
from stackmind.trace import Episode, Step

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
TRACES = REPO / "traces"
DECOMPOSE = (POLICIES / "decompose.policy.yaml").read_text(encoding="utf-8")

MINIMAL = """\
name: {name}
description: d
examples:
  - goal: g
    response: {response}
training:
  fast: {{trigger: similarity}}
"""


def problems_of(paths: list[Path]) -> list[str]:
    return [str(p) for p in check(paths).errors]


# ---- the starter library ----------------------------------------------------------------------

def test_starter_library_checks_clean() -> None:
    report = check([POLICIES, TRACES])
    assert report.errors == [], "\n".join(map(str, report.errors))
    assert report.warnings == []
    names = {p.name for p in report.policies}
    assert len(names) >= 8
    assert {"decompose", "retry_with_variation", "retrieve_similar", "analogy", "ask_questions", "simplify",
            "hindsight_compress", "solve_with_program"} <= names
    for p in report.policies:
        assert len(p.examples) >= 4, p.name
        assert len(p.trajectories) >= 1, p.name
        assert any(f"@{p.name}(" in (s.action or "") + s.thought for t in p.trajectories for s in t.steps), p.name
    assert len(report.traces) >= 3


def test_game24_trace_steps_reach_24() -> None:
    ep = read(TRACES / "game24-4-6-8-8.trace.yaml")
    assert isinstance(ep, Episode) and ep.kind == "guided" and ep.reward == 1.0
    lefts = [s.thought for s in ep.steps if "(left:" in s.thought]
    assert len(lefts) == 3 and lefts[-1].endswith("(left: 24)")


def test_one_parser_reads_policies_traces_and_episodes(tmp_path: Path) -> None:
    assert read(POLICIES / "decompose.policy.yaml").name == "decompose"  # type: ignore[union-attr]
    ep = Episode(goal="2 + 2?", steps=[Step(thought="@python(print(2 + 2))", observation="4",
                                            substeps=[Step(thought="inner")])], answer="4")
    path = ep.save(tmp_path)
    again = read(path)
    assert again == ep
    plain_yaml = tmp_path / "x.yaml"
    plain_yaml.write_text(ep.to_text(), encoding="utf-8")
    assert read(plain_yaml) == ep


def test_substeps_round_trip_and_are_optional() -> None:
    ep = Episode(goal="g", steps=[Step(thought="@decompose(goal='g')", substeps=[
        Step(thought="a", substeps=[Step(thought="b", action="@python(print(1))", observation="1")])])])
    text = ep.to_text()
    assert "substeps:" in text
    assert Episode.from_text(text) == ep
    assert "substeps" not in Episode(goal="g", steps=[Step(thought="x")]).to_text()


# ---- every problem, located -------------------------------------------------------------------

def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return p


@pytest.mark.parametrize("text, where, words", [
    (DECOMPOSE.replace("description:", "descriptoin:", 1), ":3:1:", "did you mean 'description'"),
    (DECOMPOSE.replace("    aim: improve\n", "    aim: improv\n", 1), ":14:10:", "'improve', 'predict' or 'control'"),
    (DECOMPOSE.replace("threshold: 0.7", "threshold: [0.7]"), ":", "threshold"),
    (DECOMPOSE.replace("training:\n", "trainin:\n"), ":2:1:", "missing 'training'"),
    (MINIMAL.format(name="x", response="r").replace("examples:\n  - goal: g\n    response: r\n", "examples: []\n"),
     ":3:11:", "at least 1"),
    (MINIMAL.format(name="9lives", response="r"), ":1:7:", "letters, digits and _"),
    (MINIMAL.format(name="x", response="r") + "tests:\n  match: {kind: regex, value: '(('}\n", ":9:10:",
     "regex does not compile"),
    (MINIMAL.format(name="x", response="r").replace("goal: g", "goal: [1, 2]"), ":4:11:", "valid string"),
    ("name: x\n  bad: indent\n", ":2:6:", "YAML syntax"),
    ("name: x\nname: y\n", ":2:1:", "duplicate key 'name'"),
    ("- just\n- a list\n", ":1:1:", "a policy is a mapping"),
    ("", ":1:1:", "empty file"),
], ids=["unknown-key", "bad-choice", "wrong-type", "missing-section", "empty-examples", "bad-name",
        "bad-regex", "list-for-text", "yaml-syntax", "duplicate-key", "not-a-mapping", "empty"])
def test_schema_errors_name_line_and_column(tmp_path: Path, text: str, where: str, words: str) -> None:
    path = write(tmp_path, "p.policy.yaml", text)
    found = problems_of([path])
    assert found, "expected a problem"
    assert any(where in f and words in f for f in found), found
    assert all(f.startswith(str(path) + ":") for f in found)


def test_all_problems_of_a_file_are_listed(tmp_path: Path) -> None:
    text = "name: x\ndescripton: d\nexamples:\n  - goal: 1\n    respons: r\ntraining: {fast: {trigger: sometimes}}\n"
    found = problems_of([write(tmp_path, "p.policy.yaml", text)])
    assert len(found) >= 5, found
    assert any(":2:1:" in f and "descripton" in f for f in found)
    assert any(":5:5:" in f and "respons" in f for f in found)
    assert any(":6:" in f and "trigger" in f for f in found)


def test_duplicate_names_across_files(tmp_path: Path) -> None:
    write(tmp_path, "a.policy.yaml", MINIMAL.format(name="twin", response="r"))
    b = write(tmp_path, "b.policy.yaml", MINIMAL.format(name="twin", response="r"))
    found = problems_of([tmp_path])
    assert len(found) == 1 and found[0].startswith(f"{b}:1:7:") and "duplicate policy name @twin" in found[0]


def test_policy_named_like_a_tool(tmp_path: Path) -> None:
    found = problems_of([write(tmp_path, "p.policy.yaml", MINIMAL.format(name="python", response="r"))])
    assert found and ":1:7:" in found[0] and "tool" in found[0]


def test_unknown_invocation_is_located_inside_a_block(tmp_path: Path) -> None:
    text = MINIMAL.format(name="x", response="|\n      first line\n      then @decompse(goal='g')")
    path = write(tmp_path, "p.policy.yaml", text)
    found = [str(p) for p in check([path, POLICIES]).errors]
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}:7:12:") and "did you mean @decompose?" in found[0]


def test_bad_arguments_to_a_known_policy(tmp_path: Path) -> None:
    text = MINIMAL.format(name="x", response="\"@decompose(gaol='g')\"")
    found = [str(p) for p in check([write(tmp_path, "p.policy.yaml", text), POLICIES]).errors]
    assert any("no parameter 'gaol'" in f for f in found) and any("needs goal=..." in f for f in found)


def test_unclosed_invocation(tmp_path: Path) -> None:
    text = MINIMAL.format(name="x", response="\"now @python(print(1)\"")
    found = problems_of([write(tmp_path, "p.policy.yaml", text)])
    assert len(found) == 1 and ":5:20:" in found[0] and "no closing ')'" in found[0]


def test_composite_cycles_are_errors(tmp_path: Path) -> None:
    write(tmp_path, "a.policy.yaml", MINIMAL.format(name="a", response="\"@b(goal='x')\"").replace(
        "examples:", "parameters: [{name: goal}]\nexamples:"))
    write(tmp_path, "b.policy.yaml", MINIMAL.format(name="b", response="\"@a(goal='x')\"").replace(
        "examples:", "parameters: [{name: goal}]\nexamples:"))
    found = problems_of([tmp_path])
    assert len(found) == 1 and "composite cycle @a -> @b -> @a" in found[0] and "a.policy.yaml:6:" in found[0]


def test_self_invocation_is_a_cycle(tmp_path: Path) -> None:
    text = MINIMAL.format(name="loop", response="\"@loop()\"")
    found = problems_of([write(tmp_path, "p.policy.yaml", text)])
    assert any("composite cycle @loop -> @loop" in f for f in found)


def test_trace_invoking_unknown_policy(tmp_path: Path) -> None:
    text = 'goal: g\nkind: guided\nsteps:\n  - thought: "first @hindsight_compres(goal=\'g\')"\n'
    path = write(tmp_path, "t.trace.yaml", text)
    found = [str(p) for p in check([path], known=list(check([POLICIES]).policies)).errors]
    assert len(found) == 1 and found[0].startswith(f"{path}:4:21:") and "@hindsight_compress?" in found[0]


def test_trace_errors_are_located(tmp_path: Path) -> None:
    found = problems_of([write(tmp_path, "t.trace.yaml", "goal: g\nsteps:\n  - thougt: x\n")])
    assert len(found) == 1 and ":3:5:" in found[0] and "unknown step key 'thougt'" in found[0]


def test_undecodable_text(tmp_path: Path) -> None:
    found = problems_of([write(tmp_path, "p.policy.yaml", b"name: x\ndescription: caf\xe9\n")])
    assert len(found) == 1 and ":2:17:" in found[0] and "UTF-8" in found[0]


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    report = check([tmp_path / "nope", tmp_path])
    assert any("no such file" in str(p) for p in report.errors)
    assert any("no *.policy.yaml" in str(p) for p in report.warnings)


# ---- hostile input is refused quickly ----------------------------------------------------------

@pytest.mark.parametrize("name, text, words", [
    ("billion laughs", "a: &a [lol, lol, lol]\nb: &b [*a, *a, *a]\nc: &c [*b, *b, *b]\nd: [*c, *c, *c]\n",
     "aliases"),
    ("huge line", "name: " + "x" * 2_000_000, "characters"),
    ("long line", "description: " + "x" * 50_000, "characters long"),
    ("NUL byte", "name: x\ndescription: a\x00b\n", "NUL"),
    ("deep flow nesting", "a: " + "[" * 5000 + "]" * 5000, "nested"),
    ("deep nesting across lines", "a: [\n" + "  [\n" * 100_000, "nested"),
    ("deep block nesting", "\n".join(" " * i + "- x:" for i in range(0, 400, 2)), "nested"),
    ("many keys", "".join(f"k{i}: 1\n" for i in range(60_000)), "values"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 and "\n" not in v else "")
def test_hostile_input_is_refused_quickly(name: str, text: str, words: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(FileProblems) as err:
        parse_policy(text, "hostile.policy.yaml")
    assert time.perf_counter() - t0 < 2.0, name
    p = err.value.problems[0]
    assert p.path == "hostile.policy.yaml" and p.line >= 1 and p.column >= 1
    assert words in p.message, p.message


def test_hostile_trace_is_refused_quickly() -> None:
    t0 = time.perf_counter()
    with pytest.raises(FileProblems):
        parse_trace("goal: g\nsteps:\n" + "  - thought: x\n    substeps:\n" * 1 + "[" * 3000, "t.trace.yaml")
    assert time.perf_counter() - t0 < 2.0


# ---- fuzzing: no input crashes the parser; every rejection has a location ---------------------

_tokens = st.sampled_from([
    "name: ", "description: ", "examples:\n", "  - goal: ", "    response: ", "training:\n", "  fast: ",
    "{trigger: similarity}", "\n", "  ", "- ", ": ", "#", "'", '"', "|\n", ">", "@decompose(", ")", "[", "]",
    "{", "}", "&a ", "*a", "!!python/object:os.system ", "\t", "\x00", "\ufeff", "%YAML 1.2\n", "---\n", "...",
    "? ", "!!binary ", "0x1F", "1e400", "null", "~", "yes", "\\u0000", "\r\n", "\u2028",
])
_text = st.lists(_tokens | st.text(max_size=8), max_size=40).map("".join)


def _assert_located(e: FileProblems, path: str) -> None:
    assert e.problems
    for p in e.problems:
        assert p.path == path and p.line >= 1 and p.column >= 1 and p.message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_text)
def test_fuzz_policy_parser(text: str) -> None:
    try:
        parse_policy(text, "fuzz.policy.yaml")
    except FileProblems as e:
        _assert_located(e, "fuzz.policy.yaml")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(DECOMPOSE)), st.integers(0, 40), _text)
def test_fuzz_mutated_policy(at: int, cut: int, insert: str) -> None:
    text = DECOMPOSE[:at] + insert + DECOMPOSE[at + cut:]
    try:
        parse_policy(text, "fuzz.policy.yaml")
    except FileProblems as e:
        _assert_located(e, "fuzz.policy.yaml")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_bytes_through_check(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    d = tmp_path_factory.mktemp("fuzz")
    (d / "f.policy.yaml").write_bytes(data)
    (d / "f.trace.yaml").write_bytes(data)
    report = check([d])
    for p in report.problems:
        assert p.line >= 1 and p.column >= 1 and p.path.startswith(str(d))


def test_load_policy_reads_a_file() -> None:
    p = load_policy(POLICIES / "solve_with_program.policy.yaml")
    assert p.where("examples", 0, "response")[1] > 1
    assert p.training.fast is not None and p.training.fast.trigger == "similarity"


TRACE = (TRACES / "game24-composite-1-3-4-6.trace.yaml").read_text(encoding="utf-8")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(TRACE)), st.integers(0, 40), _text)
def test_fuzz_mutated_trace(at: int, cut: int, insert: str) -> None:
    text = TRACE[:at] + insert + TRACE[at + cut:]
    try:
        parse_trace(text, "fuzz.trace.yaml")
    except FileProblems as e:
        _assert_located(e, "fuzz.trace.yaml")
