"""Each class of file a person can edit, malformed, through the command that reads it.

Held means: no traceback; a file that can be skipped is skipped and named with its line, the rest of
the work is done; a file that cannot be skipped is one error line naming it and what to do; and
nothing a file says makes the command's time or memory unbounded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import Cases, env_for, one_error_line, stackmind

GOOD = "goal: What is the secret word of the tower?\nreward: 1.0\nanswer: zanzibar\nsteps:\n  - thought: I know it\n"

# name -> (text, what the report must say); None: the file is valid (null means absent) and is used.
BAD_TRACES: dict[str, tuple[str, str | None]] = {
    "goal-null": ("goal: null\nreward: 1.0\nanswer: x\n", "goal is empty"),
    "goal-list": ("goal: [a, b]\nreward: 1.0\n", "goal must be str"),
    "meta-null": ("goal: meta left empty\nmeta: null\nreward: 1.0\nanswer: x\nsteps:\n  - thought: t\n", None),
    "weight-inf": ("goal: g\nmeta: {weight: .inf}\nreward: 1.0\nanswer: x\n", "meta.weight must be a number"),
    "weight-1e11": ("goal: g\nmeta:\n  weight: 100000000000\nreward: 1.0\nanswer: x\n", "meta.weight must be"),
    "weight-text": ("goal: g\nmeta: {weight: 1e11}\nreward: 1.0\nanswer: x\n", "meta.weight must be"),
    "weight-negative": ("goal: g\nmeta: {weight: -5}\nreward: 1.0\nanswer: x\n", "meta.weight must be"),
    "reward-nan": ("goal: g\nreward: .nan\nanswer: x\n", "reward must be a finite number"),
    "reward-huge": ("goal: g\nreward: 1.0e+300\nanswer: x\n", "reward must be a finite number"),
    "steps-null": ("goal: no steps\nsteps:\nreward: 1.0\nanswer: x\n", None),
    "steps-text": ("goal: g\nsteps: hello\n", "steps must be a list"),
    "id-path": ("goal: g\nid: ../../escape\nreward: 1.0\n", "id must be"),
    "nested-deep": ("goal: g\nmeta: " + "[" * 5000 + "]" * 5000 + "\n", "nesting deeper than"),
    "nested-substeps": ("goal: g\nsteps:\n" + "".join("  " * i + "  - thought: t\n" + "  " * i + "    substeps:\n"
                                                   for i in range(40)), "nest"),
    "alias-bomb": ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                   "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\ngoal: [*c, *c, *c, *c, *c, *c, *c, *c]\n",
                   "anchors and aliases"),
    "many-values": ("goal: g\nmeta:\n  l: [" + "1," * 400_000 + "1]\n", "more than 200,000 values"),
    "binary": ("goal: g\x00\x01\x02\n", "NUL byte"),
    "not-utf8": ("", "not UTF-8"),  # written as bytes below
    "yaml-syntax": ("goal: g\nsteps:\n  - thought: 4 * 6 = 24 (left: 1 24)\n", "must be quoted"),
    "a-list": ("- just\n- a list\n", "a trace is a mapping"),
    "binary-tag": ("goal: g\nmeta: {x: !!binary aGVsbG8=}\n", "not allowed"),
    "unknown-key": ("goal: g\nweight: 100000000000\n", "unknown key 'weight'"),
}


@pytest.mark.fault("malformed trace file")
def test_bad_traces_are_reported_and_skipped_by_consolidation(home: Path, work: Path, cases: Cases) -> None:
    episodes = home / "episodes"
    episodes.mkdir(parents=True)
    (episodes / "good.trace.yaml").write_text(GOOD)
    for name, (text, _) in BAD_TRACES.items():
        path = episodes / f"{name}.trace.yaml"
        if name == "not-utf8":
            path.write_bytes(b"goal: \xff\xfe caf\xe9\n")
        else:
            path.write_text(text)
    env = env_for(home, STACKMIND_CONSOLIDATE_HELDOUT_FRACTION="0", STACKMIND_MEMORY="0")
    ran = stackmind(["consolidate", "--dry-run", "--json"], env, work, timeout=120)
    assert ran.rc == 0, ran.output[-3000:]
    assert "Traceback" not in ran.output
    assert ran.seconds < 60 and ran.max_rss_mb < 1500, (ran.seconds, ran.max_rss_mb)
    plan = json.loads(ran.stdout)
    problems = plan["problems"]
    for name, (_text, message) in BAD_TRACES.items():
        cases.tried(name)
        mine = [p for p in problems if f"/{name}.trace.yaml:" in p]
        if message is None:
            assert not mine, mine
        else:
            assert len(mine) == 1 and message in mine[0], (name, mine)
            line = mine[0].split(".trace.yaml:", 1)[1].split(":", 1)[0]
            assert line.isdigit(), mine[0]  # file:line
    # the good trace and the two valid ones (null meta, empty steps) are trained; the weight is bounded
    assert plan["dataset"]["new_episode"] == 3, plan["dataset"]
    assert plan["train_rows"] <= 3 * 100


@pytest.mark.fault("malformed trace file")
def test_a_trace_with_a_huge_weight_is_refused_before_it_can_fill_memory(home: Path, work: Path) -> None:
    """The issue's case: weight 1e11 made the dry run grow to 11.6 GB in a minute."""
    episodes = home / "episodes"
    episodes.mkdir(parents=True)
    (episodes / "big.trace.yaml").write_text("goal: g\nmeta: {weight: 100000000000}\nreward: 1.0\nanswer: x\n")
    ran = stackmind(["consolidate", "--dry-run"], env_for(home, STACKMIND_MEMORY="0"), work, timeout=90)
    assert ran.rc == 0 and "Traceback" not in ran.output, ran.output[-2000:]
    assert ran.max_rss_mb < 1500 and "big.trace.yaml:2:" in ran.stdout and "meta.weight" in ran.stdout


SETTINGS_CASES: dict[str, tuple[dict[str, str], str | bytes | None, str | None, list[str]]] = {
    # name -> (environment, stackmind.toml, .env, what the one line names)
    "env-not-a-number": ({"STACKMIND_MAX_STEPS": "abc"}, None, None, ["STACKMIND_MAX_STEPS", "max_steps"]),
    "env-out-of-bounds": ({"STACKMIND_MAX_STEPS": "100000000"}, None, None, ["STACKMIND_MAX_STEPS", "1000"]),
    "env-inf-timeout": ({"STACKMIND_OPENAI_TIMEOUT_S": "inf"}, None, None, ["STACKMIND_OPENAI_TIMEOUT_S", "finite"]),
    "env-bad-backend": ({"STACKMIND_BACKEND": "carrier-pigeon"}, None, None, ["STACKMIND_BACKEND", "openai"]),
    "toml-wrong-type": ({}, 'max_steps = "eight"\n', None, ["stackmind.toml:1", "max_steps"]),
    "toml-wrong-type-line-3": ({}, 'temperature = 0.0\nmodel = "m"\nrender_budget_tokens = [1]\n', None,
                               ["stackmind.toml:3", "render_budget_tokens"]),
    "toml-broken-syntax": ({}, "max_steps = 8\ntemperature = \n", None, ["stackmind.toml:2", "not valid TOML"]),
    "toml-unclosed-string": ({}, 'model = "unclosed\n', None, ["stackmind.toml:1", "not valid TOML"]),
    "toml-unknown-key": ({}, "max_step = 8\n", None, ["stackmind.toml:1", "max_steps"]),
    "toml-nan": ({}, "temperature = nan\n", None, ["stackmind.toml:1", "temperature"]),
    "dotenv-bad-value": ({}, None, "STACKMIND_RECALL_K=lots\n", [".env:1", "STACKMIND_RECALL_K"]),
    "toml-not-utf8": ({}, b"model = \"caf\xe9\"\n", None, ["stackmind.toml: not UTF-8"]),
}


@pytest.mark.fault("malformed settings")
@pytest.mark.parametrize("name", sorted(SETTINGS_CASES))
def test_bad_settings_are_one_line_naming_them(name: str, home: Path, work: Path) -> None:
    env_extra, toml, dotenv, named = SETTINGS_CASES[name]
    if isinstance(toml, bytes):
        (work / "stackmind.toml").write_bytes(toml)
    elif toml is not None:
        (work / "stackmind.toml").write_text(toml)
    if dotenv is not None:
        (work / ".env").write_text(dotenv)
    ran = stackmind(["status"], env_for(home, **env_extra), work, timeout=60)
    line = one_error_line(ran)
    for word in named:
        assert word in line, (word, line)


def _adapters(home: Path, n: int) -> Path:
    """n promoted adapter versions, as consolidation leaves them (the files only)."""
    from stackmind.consolidate.registry import AdapterRegistry

    src = home.parent / "saved-adapter"
    src.mkdir(parents=True, exist_ok=True)
    (src / "adapter_config.json").write_text("{}")
    registry = AdapterRegistry(home / "adapters")
    for _ in range(n):
        current = registry.current()
        v = registry.register(src, {"parent": current.name if current else None, "rank": 8})
        registry.promote(v.name)
    return home / "adapters"


@pytest.mark.fault("malformed adapter registry")
def test_a_torn_history_line_does_not_break_rollback(home: Path, work: Path, cases: Cases) -> None:
    adapters = _adapters(home, 3)
    history = adapters / "history.jsonl"
    history.write_bytes(history.read_bytes()[:-25])  # killed while writing the last promotion
    env = env_for(home)
    cases.tried("adapters list with a torn history")
    ran = stackmind(["adapters", "list"], env, work)
    assert ran.rc == 0 and "Traceback" not in ran.output, ran.output
    cases.tried("rollback with a torn history")
    ran = stackmind(["adapters", "rollback"], env, work)
    assert ran.rc == 0 and "Traceback" not in ran.output, ran.output
    assert "history.jsonl:3: torn" in ran.stderr and "rolled back to v0002" in ran.stdout
    cases.tried("a promotion appended after a torn line")
    ran = stackmind(["adapters", "promote", "v0003"], env, work)
    assert ran.rc == 0, ran.output
    lines = history.read_text().splitlines()
    assert json.loads(lines[-1])["version"] == "v0003" and json.loads(lines[-2])["event"] == "rollback"
    cases.tried("rollback again reads every whole line")
    ran = stackmind(["adapters", "rollback"], env, work)
    assert ran.rc == 0 and "rolled back to v0002" in ran.stdout, ran.output


ADAPTER_META: dict[str, str] = {
    "broken-json": '{"parent": "v0001", "rank": ',
    "not-an-object": "[1, 2, 3]",
    "huge-rank": '{"parent": "v0001", "rank": 1000000000}',
    "rank-text": '{"parent": "v0001", "rank": "sixteen"}',
    "parent-number": '{"parent": 7, "rank": 8}',
    "empty": "",
}


@pytest.mark.fault("malformed adapter registry")
def test_broken_adapter_metadata_files_are_warnings(home: Path, work: Path, cases: Cases) -> None:
    """One registry, one broken stackmind.json per version after the first: listed with warnings,
    no bad rank reaches the vLLM command, and rollback walks back through them."""
    names = sorted(ADAPTER_META)
    adapters = _adapters(home, len(names) + 1)
    for i, name in enumerate(names, 2):
        (adapters / f"v{i:04d}" / "stackmind.json").write_text(ADAPTER_META[name])
    env = env_for(home)
    ran = stackmind(["adapters", "list"], env, work)
    assert ran.rc == 0 and "Traceback" not in ran.output, ran.output
    served = stackmind(["serve", "--vllm"], env, work)  # reads the ranks: a bad one must not reach vLLM
    assert served.rc == 0 and "1000000000" not in served.stdout, served.output
    for i, name in enumerate(names, 2):
        cases.tried(name)
        warned = f"v{i:04d}/stackmind.json:1" in ran.stderr
        assert warned and f"v{i:04d}" in ran.stdout, (name, ran.stderr)
    cases.tried("rollback past them")
    ran = stackmind(["adapters", "rollback"], env, work)
    assert ran.rc == 0 and f"rolled back to v{len(names):04d}" in ran.stdout, ran.output


DATABASES: dict[str, bytes | None] = {
    "random-bytes": os.urandom(8192),
    "empty-header": b"SQLite format 3\x00" + b"\x00" * 100,
    "truncated": None,  # a real database cut to a third
    "text-file": b"this is not a database\n" * 100,
}


@pytest.mark.fault("corrupt stack database")
@pytest.mark.parametrize("name", sorted(DATABASES))
def test_a_corrupt_stack_database_is_one_line(name: str, home: Path, work: Path) -> None:
    home.mkdir(parents=True)
    db = home / "stackmind.db"
    content = DATABASES[name]
    if content is None:
        from stackmind.stack import Stack
        from stackmind.storage import SQLiteStackStore

        store = SQLiteStackStore(db)
        stack = Stack(store, "s")
        for _ in range(300):
            stack.push("thought", "x" * 400)
        store.close()
        db.write_bytes(db.read_bytes()[: db.stat().st_size // 3])
    else:
        db.write_bytes(content)
    args = ["stack", "show", "s"] if name in ("truncated", "text-file") else ["status"]
    line = one_error_line(stackmind(args, env_for(home), work))
    assert str(db) in line and "move it aside" in line, line


@pytest.mark.fault("unusable data dir")
@pytest.mark.parametrize("layout", ["home-is-a-file", "parent-is-a-file", "cannot-be-made"])
def test_a_data_dir_that_cannot_be_a_folder_is_one_line(layout: str, tmp_path: Path, work: Path,
                                                        cases: Cases) -> None:
    """(Run as root here, so a folder without read permission cannot be tried: `check_home` also
    refuses one, with os.access.)"""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be\n")
    home = {"home-is-a-file": blocker, "parent-is-a-file": blocker / "home",
            "cannot-be-made": Path("/sys/stackmind-reliability-home")}[layout]
    env = env_for(home, STACKMIND_BACKEND="openai", STACKMIND_OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    commands = {"home-is-a-file": [["status"], ["memory", "stats"], ["run", "What is 2 + 2?"], ["chat"],
                                   ["consolidate"], ["adapters", "list"]],
                "parent-is-a-file": [["stack", "show"], ["run", "What is 2 + 2?"], ["consolidate", "--dry-run"]],
                # status only reads: a data dir that does not exist yet is an empty one
                "cannot-be-made": [["memory", "stats"], ["run", "What is 2 + 2?"]]}[layout]
    for args in commands:
        cases.tried(" ".join(args))
        line = one_error_line(stackmind(args, env, work, stdin=""))
        where = str(home) if layout == "cannot-be-made" else str(blocker)
        assert where in line and ("STACKMIND_HOME" in line or "write" in line), line


TREES: dict[str, str] = {  # each gave a traceback (or a blank page) at a9429b1
    "graph-not-a-mapping": "tree: {nodes: [{id: 1}], edges: [], graph: 5}",
    "node-a-list": "tree: {nodes: [[1, 2]], edges: []}",
    "a-chain-3000-deep": "tree:\n  nodes:\n" + "".join(
        f"  - {{id: {i}, parent: {i - 1 if i else 'null'}}}\n" for i in range(3000)) + "  edges: []\n",
    "no-root": "tree: {nodes: [{id: 1, parent: 2}, {id: 2, parent: 1}], edges: []}",
}
TREES_HELD_BEFORE: dict[str, str] = {  # already one line at a9429b1: kept so that they stay so
    "nodes-not-a-list": "tree: {nodes: 5, edges: []}",
    "missing-parent": "tree: {nodes: [{id: 1, parent: 7}], edges: []}",
    "edge-without-target": "tree: {nodes: [{id: 1}], edges: [{source: 1}]}",
    "value-not-a-number": "tree: {nodes: [{id: 1, value: high}], edges: []}",
    "parent-unhashable": "tree: {nodes: [{id: 1, parent: [2]}], edges: []}",
    "no-nodes": "tree: {nodes: [], edges: []}",
}


def _tree_show(name: str, tree: str, home: Path, work: Path) -> None:
    episodes = home / "episodes"
    episodes.mkdir(parents=True)
    (episodes / f"{name}.trace.yaml").write_text(f"goal: g\n{tree}\n")
    line = one_error_line(stackmind(["tree", "show", name], env_for(home), work))
    assert f"{name}.trace.yaml" in line, line


@pytest.mark.fault("malformed search tree")
@pytest.mark.parametrize("name", sorted(TREES))
def test_tree_show_on_a_malformed_tree_is_one_line(name: str, home: Path, work: Path) -> None:
    _tree_show(name, TREES[name], home, work)


@pytest.mark.control("malformed search tree")
@pytest.mark.parametrize("name", sorted(TREES_HELD_BEFORE))
def test_tree_show_still_reports_what_it_did(name: str, home: Path, work: Path) -> None:
    _tree_show(name, TREES_HELD_BEFORE[name], home, work)
