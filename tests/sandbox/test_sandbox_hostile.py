"""The hostile-program suite: every program in sandbox/corpus/hostile is contained with the outcome
its header names, and the host is untouched afterwards (files, processes, memory, environment).

Each program's header says what to expect::

    # expect: error|timeout      outcomes that count as contained
    # absent: root:x:0           text that must not appear in its output
    # files: bomb.zip=zip-bomb   a scratch file the test generates (see conftest.GENERATORS)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sandbox_helpers import (
    CANARY_VALUE,
    CANARY_VAR,
    CorpusProgram,
    child_pids,
    load_corpus,
    rss_bytes,
    tree_state,
)

from stackmind.sandbox import Limits, Python, Sandbox, Wasm

HOSTILE = load_corpus("hostile")
# Short limits keep the suite quick; programs that spin forever end at the deadline.
LIMITS = Limits(deadline_s=2.0, memory_bytes=128 << 20, output_bytes=64 << 10, file_calls=5000,
                scratch_bytes=16 << 20)
HOST_MARKERS = [Path("/tmp/stackmind_pwned"), Path("/etc_stackmind_pwned"), Path("/etc/pwned")]
pytestmark = pytest.mark.slow


def test_the_suite_is_big_enough() -> None:
    assert len(HOSTILE) >= 30
    assert sum(p.is_wasm for p in HOSTILE) >= 10


def _host_env() -> dict[str, str]:
    # STACKMIND_* and PYTEST_* change per test (fresh homes); the rest must not change at all.
    return {k: v for k, v in os.environ.items() if not k.startswith(("STACKMIND_", "PYTEST_"))}


@pytest.fixture(scope="module")
def host_before(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    canary = tmp_path_factory.mktemp("canary")
    (canary / "secret.txt").write_text("host data")
    sandbox.run(Python("print(1)"), LIMITS)  # threads and caches the runner keeps, before the baseline
    return {
        "canary": canary, "canary_state": tree_state(canary), "children": child_pids(),
        "rss": rss_bytes(), "env": _host_env(), "threads": len(os.listdir("/proc/self/task")),
        "home": tree_state(Path.home() / ".cache" / "stackmind-test" / "sandbox"),
    }


@pytest.mark.parametrize("prog", HOSTILE, ids=[p.path.name for p in HOSTILE])
def test_hostile_program_is_contained(
    sandbox: Sandbox, prog: CorpusProgram, generated_files: dict[str, bytes],
    host_before: dict[str, object], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(CANARY_VAR, CANARY_VALUE)  # a host secret the guest must never see
    files = {name: generated_files[gen] for name, gen in prog.files.items()}
    program = Wasm(prog.source) if prog.is_wasm else Python(prog.source)
    r = sandbox.run(program, LIMITS, files=files)

    assert r.outcome in prog.expect, f"{prog.path.name}: {r.summary()}\n{r.stderr[-800:]}"
    for text in prog.absent + [CANARY_VALUE]:
        assert text not in r.stdout and text not in r.stderr, f"{prog.path.name} leaked {text!r}"
    assert r.wall_s < LIMITS.deadline_s + 3, "the deadline did not hold"
    assert len(r.stdout.encode()) <= LIMITS.output_bytes + 4 and len(r.stderr.encode()) <= LIMITS.output_bytes + 4
    assert sum(len(v) for v in r.files.values()) <= LIMITS.scratch_bytes

    # The host, after this program.
    for marker in HOST_MARKERS:
        assert not marker.exists(), f"{marker} appeared on the host"
    assert tree_state(host_before["canary"]) == host_before["canary_state"]  # type: ignore[arg-type]
    assert child_pids() == host_before["children"], "a process was started on the host"
    assert not (Path.cwd() / "passwd_link").exists() and not list(Path.cwd().glob("fill*.bin"))


def test_host_is_unaffected_after_the_whole_suite(sandbox: Sandbox, host_before: dict[str, object]) -> None:
    import gc

    gc.collect()
    assert child_pids() == host_before["children"]
    assert os.environ.get(CANARY_VAR) is None and _host_env() == host_before["env"]
    grown = rss_bytes() - int(host_before["rss"])  # type: ignore[call-overload]
    assert grown < 400 << 20, f"the host process grew by {grown >> 20} MiB over the suite"
    # Guest threads end with their runs (the runner may keep one ticker thread).
    assert len(os.listdir("/proc/self/task")) <= int(host_before["threads"]) + 2  # type: ignore[call-overload]
    # The compiled-module cache is as it was: no guest reached it.
    after = tree_state(Path.home() / ".cache" / "stackmind-test" / "sandbox")
    assert {k: v for k, v in after.items() if k.endswith(".cwasm")} == \
        {k: v for k, v in host_before["home"].items() if k.endswith(".cwasm")}  # type: ignore[union-attr]
    # And it still runs ordinary code.
    assert sandbox.run(Python("print(6 * 7)")).stdout == "42\n"
