"""The raw-WebAssembly engine and byte-level mode: real wasmtime, small modules, no big compile."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackmind.sandbox import OUTCOMES, Limits, Sandbox, Wasm

W = "wasi_snapshot_preview1"
HELLO = f'''(module
  (import "{W}" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "{W}" "random_get" (func $r (param i32 i32) (result i32)))
  (import "{W}" "clock_time_get" (func $c (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello, wasm\\n")
  (func (export "_start")
    (drop (call $r (i32.const 64) (i32.const 8)))
    (drop (call $c (i32.const 0) (i64.const 0) (i32.const 72)))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 12))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (drop (call $w (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))))'''


@pytest.fixture
def sb(tmp_path) -> Sandbox:  # noqa: ANN001
    return Sandbox(cache_dir=tmp_path / "unused-cache")  # the raw engine never touches it


def test_wasi_command_prints_and_is_traced(sb: Sandbox) -> None:
    r = sb.run(Wasm(HELLO))
    assert r.outcome == "ok" and r.exit_code == 0
    assert r.stdout == "hello, wasm\n" and r.stderr == "hello, wasm\n"
    assert r.trace is not None
    assert r.trace.counts == {"wasi:random_get": 1, "wasi:clock_time_get": 1, "wasi:fd_write": 2,
                              "export:_start:ok": 1}
    assert r.trace.entropy == pytest.approx(1.9219, abs=1e-3)
    assert r.fuel_used is not None and 0 < r.fuel_used < 1000


def test_binary_and_wat_give_the_same_result(sb: Sandbox) -> None:
    import wasmtime

    binary = wasmtime.wat2wasm(HELLO)
    assert sb.run_wasm(binary).stdout == sb.run_wasm(HELLO).stdout == "hello, wasm\n"


def test_exports_are_called_and_their_outcomes_counted(sb: Sandbox) -> None:
    r = sb.run_wasm('''(module
      (func (export "answer") (result i32) i32.const 42)
      (func (export "add") (param i32 i64) (result i64) (i64.add (i64.extend_i32_u (local.get 0)) (local.get 1)))
      (func (export "boom") unreachable)
      (func (export "div") (param i32) (result i32) (i32.div_s (i32.const 1) (local.get 0))))''')
    assert r.outcome == "error"
    assert "answer() -> 42" in r.detail and "add() -> 0" in r.detail
    assert "boom() trapped: trap: unreachable" in r.detail
    assert "div() trapped: trap: integer division by zero" in r.detail
    assert r.trace is not None
    assert r.trace.counts == {"export:answer:ok": 1, "export:add:ok": 1, "export:boom:trap": 1,
                              "export:div:trap": 1}
    assert r.trace.entropy == pytest.approx(2.0)  # four keys, one count each


@pytest.mark.parametrize(("module", "outcome", "words"), [
    (b"", "invalid", "not a valid module"),
    (b"\x00asm\x01\x00\x00\x00\x01", "invalid", "not a valid module"),
    (b"\x7fELF\x02\x01\x01\x00" + bytes(56), "invalid", "not a valid module"),
    ("(module (func (export \"f\") (result i32) i64.const 1))", "invalid", "type mismatch"),
    ("(module (func", "invalid", "not valid WAT"),
    ('(module (import "env" "system" (func (param i32))))', "invalid", "unknown import env::system"),
    (f'(module (import "{W}" "fd_write" (func (param i32))))', "invalid", "wrong type"),
    ('(module (import "env" "mem" (memory 1)))', "invalid", "unknown import"),
])
def test_invalid_modules_say_why(sb: Sandbox, module: bytes | str, outcome: str, words: str) -> None:
    r = sb.run_wasm(module)
    assert r.outcome == outcome
    assert words in r.detail


def test_fuel_stops_a_loop_deterministically(sb: Sandbox) -> None:
    loop = '(module (func (export "_start") (local i32) (loop $l (local.set 0 (i32.add (local.get 0) (i32.const 1))) (br $l))))'
    a = sb.run_wasm(loop, Limits(fuel=100_000))
    b = sb.run_wasm(loop, Limits(fuel=100_000))
    assert a.outcome == b.outcome == "out_of_fuel"
    assert a.fuel_used == b.fuel_used == 100_000


def test_deadline_stops_a_loop(sb: Sandbox) -> None:
    r = sb.run_wasm('(module (func (export "_start") (loop $l (br $l))))', Limits(deadline_s=0.3))
    assert r.outcome == "timeout"
    assert 0.25 < r.wall_s < 3


def test_memory_cap(sb: Sandbox) -> None:
    lim = Limits(memory_bytes=8 << 20)
    assert sb.run_wasm("(module (memory 1000))", lim).outcome == "memory"
    grow = '''(module (memory (export "memory") 1)
      (func (export "_start") (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable))'''
    r = sb.run_wasm(grow, lim)
    assert r.outcome == "memory" and "memory at its limit" in r.detail


def test_output_limit(sb: Sandbox) -> None:
    flood = f'''(module
      (import "{W}" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 1000))
        (loop $l (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (br $l))))'''
    r = sb.run_wasm(flood, Limits(output_bytes=10_000))
    assert r.outcome == "output_limit"
    assert len(r.stdout) == 10_000 and r.truncated == ("stdout",)


def test_no_filesystem_no_env_no_args(sb: Sandbox) -> None:
    probe = f'''(module
      (import "{W}" "fd_prestat_get" (func $pg (param i32 i32) (result i32)))
      (import "{W}" "environ_sizes_get" (func $es (param i32 i32) (result i32)))
      (import "{W}" "args_sizes_get" (func $as (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "prestat3") (result i32) (call $pg (i32.const 3) (i32.const 0)))
      (func (export "env_count") (result i32) (drop (call $es (i32.const 0) (i32.const 4))) (i32.load (i32.const 0)))
      (func (export "arg_count") (result i32) (drop (call $as (i32.const 0) (i32.const 4))) (i32.load (i32.const 0))))'''
    r = sb.run_wasm(probe)
    assert r.outcome == "ok"
    assert "prestat3() -> 8" in r.detail  # EBADF: no preopened folder
    assert "env_count() -> 0" in r.detail and "arg_count() -> 0" in r.detail


def test_stdin_is_what_the_caller_gives(sb: Sandbox) -> None:
    echo = f'''(module
      (import "{W}" "fd_read" (func $r (param i32 i32 i32 i32) (result i32)))
      (import "{W}" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 50))
        (drop (call $r (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (i32.store (i32.const 4) (i32.load (i32.const 8)))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))'''
    assert sb.run_wasm(echo, stdin=b"from the caller").stdout == "from the caller"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=256))
def test_random_bytes_never_crash_the_host(sb: Sandbox, data: bytes) -> None:
    r = sb.run_wasm(b"\x00asm\x01\x00\x00\x00" + data if data[:1] == b"\x01" else data, Limits(fuel=100_000))
    assert r.outcome in OUTCOMES
    if r.outcome == "invalid":
        assert r.detail


def test_mutated_valid_modules_are_contained(sb: Sandbox) -> None:
    """Flip bytes of a real module, as an agent emitting bytes would: every result is an outcome."""
    import wasmtime

    base = bytearray(wasmtime.wat2wasm(HELLO))
    rng = random.Random(7)
    seen = set()
    for _ in range(150):
        mutant = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            mutant[rng.randrange(8, len(mutant))] = rng.randrange(256)
        r = sb.run_wasm(bytes(mutant), Limits(fuel=200_000, deadline_s=2))
        assert r.outcome in OUTCOMES
        seen.add(r.outcome)
    assert "invalid" in seen and len(seen) >= 2
    assert os.getcwd()  # the host process is alive and well


def test_examples_and_the_intrinsic_reward(sb: Sandbox) -> None:
    from sandbox_helpers import REPO

    from stackmind.sandbox import intrinsic_reward

    ex = REPO / "sandbox" / "examples"
    hello = sb.run_wasm((ex / "hello.wat").read_text())
    assert hello.outcome == "ok" and hello.stdout == "hello from the sandbox\n"
    exports = sb.run_wasm((ex / "exports.wat").read_text())
    assert exports.outcome == "error" and "answer() -> 42" in exports.detail
    assert intrinsic_reward(exports) == pytest.approx(1.58496, abs=1e-4)
    busy = sb.run_wasm((ex / "busy.wat").read_text())
    assert busy.outcome == "ok" and busy.stdout == "tick\n" * 3
    # Varied behaviour earns more than a single call; bytes that are no module earn nothing.
    assert intrinsic_reward(hello) == pytest.approx(1.0)  # one fd_write, one _start
    assert intrinsic_reward(busy) > 2.0
    assert intrinsic_reward(sb.run_wasm(b"\x00asm\x02")) == 0.0
