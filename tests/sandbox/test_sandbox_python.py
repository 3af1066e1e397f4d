"""The CPython-WASI engine: real wasmtime, the real compiled module (from the shared cache)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from sandbox_helpers import CorpusProgram, load_corpus

from stackmind.sandbox import Limits, Python, Sandbox
from stackmind.sandbox.python_engine import compiled_path, file_lock

pytestmark = pytest.mark.slow
BENIGN = load_corpus("benign")


@pytest.mark.parametrize("prog", BENIGN, ids=[p.path.name for p in BENIGN])
def test_benign_corpus(sandbox: Sandbox, prog: CorpusProgram) -> None:
    r = sandbox.run(Python(prog.source))
    assert r.outcome == "ok", r.stderr
    assert r.stdout.strip() == prog.stdout


def test_result_fields(sandbox: Sandbox) -> None:
    r = sandbox.run_python("import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(4)")
    assert (r.outcome, r.exit_code, r.stdout, r.stderr) == ("error", 4, "out\n", "err\n")
    assert r.fuel_used is not None and r.fuel_used > 1_000_000
    assert 0 < r.wall_s < 5
    assert r.engine == "python"


def test_warm_run_starts_well_under_a_second(sandbox: Sandbox) -> None:
    times = []
    for _ in range(3):
        t = time.perf_counter()
        assert sandbox.run_python("print(1)").ok
        times.append(time.perf_counter() - t)
    assert min(times) < 0.5, times


def test_files_in_and_out_of_scratch(sandbox: Sandbox) -> None:
    r = sandbox.run_python(
        "import os\nprint(open('data/in.txt').read().upper())\nos.makedirs('out')\n"
        "open('out/result.txt', 'w').write('done')\nprint(sorted(os.listdir('/')))",
        files={"data/in.txt": "hello"},
    )
    assert r.outcome == "ok", r.stderr
    assert r.stdout.splitlines() == ["HELLO", "['data', 'out']"]
    assert r.files == {"/data/in.txt": b"hello", "/out/result.txt": b"done"}
    assert r.file_calls > 0


def test_each_run_is_fresh(sandbox: Sandbox) -> None:
    sandbox.run_python("open('left.txt', 'w').write('x')\nimport builtins\nbuiltins.leak = 1")
    r = sandbox.run_python("import os, builtins\nprint(os.listdir('/'), hasattr(builtins, 'leak'))")
    assert r.stdout.strip() == "[] False"


def test_limits_map_to_outcomes(sandbox: Sandbox) -> None:
    assert sandbox.run_python("while True: pass", Limits(deadline_s=0.5)).outcome == "timeout"
    r = sandbox.run_python("while True: pass", Limits(fuel=50_000_000))
    assert r.outcome == "out_of_fuel" and r.fuel_used == 50_000_000
    assert sandbox.run_python("x = bytearray(300 << 20)", Limits(memory_bytes=64 << 20)).outcome == "memory"
    r = sandbox.run_python("print('x' * 5000)", Limits(output_bytes=1000))
    assert r.outcome == "output_limit" and len(r.stdout) == 1000 and r.truncated == ("stdout",)
    r = sandbox.run_python("open('big', 'wb').write(b'0' * 5000)", Limits(scratch_bytes=4096))
    assert r.outcome == "error" and "No space left" in r.stderr
    r = sandbox.run_python("import os\nfor i in range(10_000): os.listdir('/')", Limits(file_calls=100))
    assert r.outcome == "error" and "file calls" in r.detail


def test_invalid_code_is_refused_before_the_vm(sandbox: Sandbox) -> None:
    r = sandbox.run_python("print(1)\0")
    assert r.outcome == "invalid" and "NUL" in r.detail


def test_no_host_environment(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKMIND_SECRET_FOR_TEST", "hunter2")
    r = sandbox.run_python("import os; print(sorted(os.environ))")
    assert r.stdout.strip() == "['HOME', 'PYTHONTZPATH', 'TMPDIR']"


def test_session_keeps_state_and_restarts_after_a_trap(sandbox: Sandbox) -> None:
    with sandbox.session(Limits(deadline_s=1)) as s:
        assert s.run("import math\nx = 40").ok
        r = s.run("x + math.floor(2.5)")  # a final expression is echoed, as in a REPL
        assert r.stdout == "42\n" and r.engine == "python-session"
        assert s.run("open('kept.txt', 'w').write('k')").ok
        assert s.run("while True: pass").outcome == "timeout"
        r = s.run("print(open('kept.txt').read()); print(x)")
        assert r.session_restarted and "deadline" in r.session_restarted
        assert r.stdout == "k\n" and "NameError" in r.stderr  # files survive, variables do not


def test_session_turns_are_fast(sandbox: Sandbox) -> None:
    with sandbox.session() as s:
        s.run("pass")
        t = time.perf_counter()
        for i in range(10):
            assert s.run(f"y = {i} * 2").ok
        assert (time.perf_counter() - t) / 10 < 0.1


def test_compiled_module_is_cached_by_hash_and_version(sandbox: Sandbox) -> None:
    import importlib.metadata

    path = compiled_path(sandbox.python.cache_dir)
    assert path.exists() and path.stat().st_size > 50 << 20
    assert f"wasmtime{importlib.metadata.version('wasmtime')}" in path.name
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    info = Sandbox(cache_dir=sandbox.python.cache_dir).warm()
    assert not info.compiled and info.seconds < 30


def test_file_lock_serialises_processes(tmp_path: Path) -> None:
    lock = tmp_path / "compile.lock"
    order: list[str] = []
    waited: list[str] = []
    with file_lock(lock):
        def other() -> None:
            with file_lock(lock, on_wait=waited.append):
                order.append("second")
        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.3)
        order.append("first")
    t.join(5)
    assert order == ["first", "second"] and waited


def test_unusable_cache_folder_is_a_sandbox_error(tmp_path: Path) -> None:
    from stackmind.sandbox import SandboxError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SandboxError, match="STACKMIND_CACHE"):
        Sandbox(cache_dir=blocker / "sandbox").warm()
    assert os.path.exists(blocker)


def test_prelude_is_importable_and_read_only(sandbox: Sandbox) -> None:
    r = sandbox.run_python(
        "from stackmind_guest import check\nok = check(lambda x: x * 2, [((2,), 4), ((3,), 7)])\n"
        "try:\n    open('/prelude/stackmind_guest.py', 'a').write('pwned')\nexcept OSError as e:\n"
        "    print(type(e).__name__)\n"
    )
    assert r.outcome == "ok", r.stderr
    assert r.stdout.splitlines() == ["FAIL <lambda>(3,): got 6, expected 7", "1/2 passed", "PermissionError"]
    assert "pwned" not in (Path(__file__).resolve().parents[2] / "sandbox/prelude/stackmind_guest.py").read_text()
