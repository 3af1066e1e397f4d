"""Raw WebAssembly: run a module given as bytes or WAT text under fuel, a deadline and a memory cap.

This is the byte-level door (the notes' Bytemeditation experiment): an agent emits bytes, the
bytes are validated, and a valid module runs with a small WASI of the runner's own. That WASI is
written here, in Python, so that every call the module makes is counted (the behaviour trace) and
so that it can give nothing away: arguments and environment are empty, stdout and stderr are
captured under the output limit, stdin is what the caller gives, clocks and randomness work, and
every other call (files, sockets, processes) answers ENOSYS or EBADF. There are no preopened
folders: a raw module sees no filesystem at all, not even the scratch folder.

A module with ``_start`` runs as a WASI command. Otherwise every exported function whose
parameters are all numbers is called once with zeros, in export order, and each call's outcome
(returned values, or the trap) goes into the trace as ``export:<name>:ok`` or
``export:<name>:trap``.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import wasmtime as wt

from stackmind.sandbox.limits import Limits
from stackmind.sandbox.result import BehaviourTrace, Outcome, RunResult

WASI = "wasi_snapshot_preview1"
_ESUCCESS, _EBADF, _EINVAL, _ENOSYS, _ESPIPE, _EFAULT = 0, 8, 28, 52, 70, 21
_I32, _I64 = wt.ValType.i32(), wt.ValType.i64()
_MAX_EXPORT_CALLS = 64
_MAX_WAT_CHARS = 4 << 20


class _ProcExit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _OutputFull(Exception):
    pass


def _is_text(program: bytes | str) -> bool:
    if isinstance(program, str):
        return True
    head = program[:64].lstrip()
    return head.startswith(b"(") or head.startswith(b";;")


def to_wasm_bytes(program: bytes | str) -> bytes:
    """WAT text (str, or bytes that start with '(') as binary; binary as it is.
    Raises wasmtime.WasmtimeError with the parser's message for bad text."""
    if not _is_text(program):
        return bytes(program)
    text = program if isinstance(program, str) else program.decode("utf-8", "replace")
    if len(text) > _MAX_WAT_CHARS:
        raise wt.WasmtimeError(f"WAT text of {len(text)} characters is over the {_MAX_WAT_CHARS} limit")
    return wt.wat2wasm(text)


class _Wasi:
    """The runner's WASI preview1 subset, counting every call into `trace`."""

    def __init__(self, limits: Limits, stdin: bytes, trace: BehaviourTrace) -> None:
        self.limits = limits
        self.stdin = stdin
        self.stdin_pos = 0
        self.out = {1: bytearray(), 2: bytearray()}
        self.truncated: set[str] = set()
        self.trace = trace

    # memory helpers -------------------------------------------------------------------------
    @staticmethod
    def _mem(caller: wt.Caller) -> wt.Memory | None:
        m = caller.get("memory")
        return m if isinstance(m, wt.Memory) else None

    def _write(self, caller: wt.Caller, ptr: int, data: bytes) -> bool:
        m = self._mem(caller)
        if m is None or ptr < 0 or ptr + len(data) > m.data_len(caller):
            return False
        m.write(caller, data, ptr)
        return True

    def _read(self, caller: wt.Caller, ptr: int, n: int) -> bytes | None:
        m = self._mem(caller)
        if m is None or ptr < 0 or n < 0 or ptr + n > m.data_len(caller):
            return None
        return bytes(m.read(caller, ptr, ptr + n))

    # the calls ------------------------------------------------------------------------------
    def sizes_zero(self, caller: wt.Caller, a: int, b: int) -> int:  # args_sizes_get, environ_sizes_get
        ok = self._write(caller, a, b"\0\0\0\0") and self._write(caller, b, b"\0\0\0\0")
        return _ESUCCESS if ok else _EFAULT

    def get_nothing(self, caller: wt.Caller, a: int, b: int) -> int:  # args_get, environ_get
        return _ESUCCESS

    def fd_write(self, caller: wt.Caller, fd: int, iovs: int, n: int, nwritten: int) -> int:
        if fd not in self.out:
            return _EBADF
        if not 0 <= n <= 1024:
            return _EINVAL
        vecs = self._read(caller, iovs, 8 * n)
        if vecs is None:
            return _EFAULT
        total = 0
        for i in range(n):
            ptr, length = struct.unpack_from("<II", vecs, 8 * i)
            data = self._read(caller, ptr, length)
            if data is None:
                return _EFAULT
            buf = self.out[fd]
            room = self.limits.output_bytes - len(buf)
            if length > room:
                buf += data[: max(room, 0)]
                self.truncated.add("stdout" if fd == 1 else "stderr")
                raise _OutputFull()
            buf += data
            total += length
        return _ESUCCESS if self._write(caller, nwritten, struct.pack("<I", total)) else _EFAULT

    def fd_read(self, caller: wt.Caller, fd: int, iovs: int, n: int, nread: int) -> int:
        if fd != 0:
            return _EBADF
        if not 0 <= n <= 1024:
            return _EINVAL
        vecs = self._read(caller, iovs, 8 * n)
        if vecs is None:
            return _EFAULT
        total = 0
        for i in range(n):
            ptr, length = struct.unpack_from("<II", vecs, 8 * i)
            chunk = self.stdin[self.stdin_pos : self.stdin_pos + length]
            if not self._write(caller, ptr, chunk):
                return _EFAULT
            self.stdin_pos += len(chunk)
            total += len(chunk)
        return _ESUCCESS if self._write(caller, nread, struct.pack("<I", total)) else _EFAULT

    def fd_fdstat_get(self, caller: wt.Caller, fd: int, buf: int) -> int:
        if fd not in (0, 1, 2):
            return _EBADF
        # filetype character_device (2), no flags, rights: read (fd 0) or write (fd 1, 2)
        rights = (1 << 1) if fd == 0 else (1 << 6)
        stat = struct.pack("<BxHxxxxQQ", 2, 0, rights, 0)
        return _ESUCCESS if self._write(caller, buf, stat) else _EFAULT

    def fd_close(self, caller: wt.Caller, fd: int) -> int:
        return _ESUCCESS if fd in (0, 1, 2) else _EBADF

    def fd_prestat_get(self, caller: wt.Caller, fd: int, buf: int) -> int:
        return _EBADF  # no preopened folders: the module sees no filesystem

    def fd_seek(self, caller: wt.Caller, fd: int, offset: int, whence: int, out: int) -> int:
        return _ESPIPE if fd in (0, 1, 2) else _EBADF

    def clock_time_get(self, caller: wt.Caller, clock: int, precision: int, out: int) -> int:
        if clock not in (0, 1, 2, 3):
            return _EINVAL
        now = time.time_ns() if clock == 0 else time.monotonic_ns()
        return _ESUCCESS if self._write(caller, out, struct.pack("<Q", now)) else _EFAULT

    def clock_res_get(self, caller: wt.Caller, clock: int, out: int) -> int:
        if clock not in (0, 1, 2, 3):
            return _EINVAL
        return _ESUCCESS if self._write(caller, out, struct.pack("<Q", 1000)) else _EFAULT

    def random_get(self, caller: wt.Caller, buf: int, n: int) -> int:
        if not 0 <= n <= 1 << 20:
            return _EINVAL
        return _ESUCCESS if self._write(caller, buf, os.urandom(n)) else _EFAULT

    def sched_yield(self, caller: wt.Caller) -> int:
        return _ESUCCESS

    def proc_exit(self, caller: wt.Caller, code: int) -> None:
        raise _ProcExit(code)

    def table(self) -> dict[str, tuple[Callable[..., Any], list[wt.ValType], list[wt.ValType]]]:
        i32, i64 = _I32, _I64
        return {
            "args_sizes_get": (self.sizes_zero, [i32, i32], [i32]),
            "environ_sizes_get": (self.sizes_zero, [i32, i32], [i32]),
            "args_get": (self.get_nothing, [i32, i32], [i32]),
            "environ_get": (self.get_nothing, [i32, i32], [i32]),
            "fd_write": (self.fd_write, [i32, i32, i32, i32], [i32]),
            "fd_read": (self.fd_read, [i32, i32, i32, i32], [i32]),
            "fd_fdstat_get": (self.fd_fdstat_get, [i32, i32], [i32]),
            "fd_close": (self.fd_close, [i32], [i32]),
            "fd_prestat_get": (self.fd_prestat_get, [i32, i32], [i32]),
            "fd_seek": (self.fd_seek, [i32, i64, i32, i32], [i32]),
            "clock_time_get": (self.clock_time_get, [i32, i64, i32], [i32]),
            "clock_res_get": (self.clock_res_get, [i32, i32], [i32]),
            "random_get": (self.random_get, [i32, i32], [i32]),
            "sched_yield": (self.sched_yield, [], [i32]),
            "proc_exit": (self.proc_exit, [i32], []),
        }


def _same(a: list[wt.ValType], b: list[wt.ValType]) -> bool:
    return len(a) == len(b) and all(str(x) == str(y) for x, y in zip(a, b, strict=True))


def _zero(ty: wt.ValType) -> Any:
    return 0.0 if str(ty) in ("f32", "f64") else 0


class WasmEngine:
    """Runs one raw module per call, each in a fresh engine and store."""

    name = "wasm"

    def run(self, program: bytes | str, limits: Limits, stdin: bytes = b"") -> RunResult:
        start = time.perf_counter()
        trace = BehaviourTrace()
        result = self._run(program, limits, stdin, trace)
        result.wall_s = time.perf_counter() - start
        result.trace = trace
        result.engine = self.name
        return result

    def _run(self, program: bytes | str, limits: Limits, stdin: bytes, trace: BehaviourTrace) -> RunResult:
        cfg = wt.Config()
        cfg.consume_fuel = True
        cfg.epoch_interruption = True
        cfg.max_wasm_stack = 1 << 20
        cfg.parallel_compilation = False
        engine = wt.Engine(cfg)

        try:
            binary = to_wasm_bytes(program)
        except (wt.WasmtimeError, ValueError) as e:
            return RunResult("invalid", detail=f"not valid WAT: {_first_line(e)}")
        try:
            wt.Module.validate(engine, binary)
            module = wt.Module(engine, binary)
        except wt.WasmtimeError as e:
            return RunResult("invalid", detail=f"not a valid module: {_first_line(e)}")

        wasi = _Wasi(limits, stdin, trace)
        store = wt.Store(engine)
        store.set_fuel(limits.fuel)
        store.set_limits(memory_size=limits.memory_bytes, table_elements=100_000, instances=4,
                         tables=8, memories=4)
        store.set_epoch_deadline(1)
        linker = wt.Linker(engine)
        table = wasi.table()
        for imp in module.imports:
            ty = imp.type
            where = f"{imp.module}::{imp.name}"
            if imp.module != WASI or not isinstance(ty, wt.FuncType) or imp.name is None:
                return RunResult("invalid", detail=(
                    f"unknown import {where}: a raw module may import only {WASI} functions"))
            params, results = list(ty.params), list(ty.results)
            known = table.get(imp.name)
            if known is not None and not (_same(known[1], params) and _same(known[2], results)):
                return RunResult("invalid", detail=f"import {where} has the wrong type for WASI")
            if known is None and not (_same(results, [_I32]) or not results):
                return RunResult("invalid", detail=f"import {where} is not a WASI preview1 function")
            fn = known[0] if known is not None else (
                (lambda *a: _ENOSYS) if results else (lambda *a: None))
            linker.define_func(WASI, imp.name, wt.FuncType(params, results), _counted(trace, imp.name, fn),
                               access_caller=True)

        fuel_before = limits.fuel
        timer = threading.Timer(limits.deadline_s, engine.increment_epoch)
        timer.daemon = True
        timer.start()
        outcome: Outcome = "ok"
        exit_code: int | None = None
        detail = ""
        instance: wt.Instance | None = None
        try:
            try:
                instance = linker.instantiate(store, module)
            except Exception as e:  # a start function's trap or exit, or a limit at instantiation
                outcome, exit_code, detail = _classify(e, store, limits)
            if instance is not None:
                exports = instance.exports(store)
                start_fn = exports.get("_start")
                if isinstance(start_fn, wt.Func):
                    init = exports.get("_initialize")
                    try:
                        if isinstance(init, wt.Func):
                            init(store)
                        start_fn(store)
                        exit_code = 0
                    except Exception as e:
                        outcome, exit_code, detail = _classify(e, store, limits)
                    trace.add("export:_start:" + ("ok" if outcome == "ok" else "trap"))
                else:
                    outcome, detail = self._call_exports(store, instance, trace, limits)
        finally:
            timer.cancel()
        if outcome == "error" and instance is not None and _memory_full(store, instance, limits):
            outcome = "memory"
            detail = f"{detail}; memory at its limit of {limits.memory_bytes >> 20} MiB"
        try:
            fuel_used = fuel_before - store.get_fuel()
        except wt.WasmtimeError:
            fuel_used = None
        stdout = wasi.out[1].decode("utf-8", "replace")
        stderr = wasi.out[2].decode("utf-8", "replace")
        truncated = tuple(sorted(wasi.truncated))
        if truncated and outcome in ("ok", "error"):
            outcome = "output_limit"
            detail = detail or f"output passed {limits.output_bytes} bytes"
        return RunResult(outcome, stdout=stdout, stderr=stderr, exit_code=exit_code, detail=detail,
                         fuel_used=fuel_used, truncated=truncated)

    def _call_exports(self, store: wt.Store, instance: wt.Instance, trace: BehaviourTrace,
                      limits: Limits) -> tuple[Outcome, str]:
        said: list[str] = []
        worst: Outcome = "ok"
        calls = 0
        for name, ext in instance.exports(store).items():
            if not isinstance(ext, wt.Func) or calls >= _MAX_EXPORT_CALLS:
                continue
            ty = ext.type(store)
            if not all(str(p) in ("i32", "i64", "f32", "f64") for p in ty.params):
                continue
            calls += 1
            try:
                value = ext(store, *[_zero(p) for p in ty.params])
                trace.add(f"export:{name}:ok")
                said.append(f"{name}() -> {value!r}")
            except Exception as e:
                outcome, _, why = _classify(e, store, limits)
                trace.add(f"export:{name}:trap")
                said.append(f"{name}() trapped: {why}")
                if outcome != "error":  # a limit stops the whole run
                    return outcome, "; ".join(said)
                worst = "error"
        if calls == 0:
            return "ok", "no _start and no exported function to call"
        return worst, "; ".join(said)


def _memory_full(store: wt.Store, instance: wt.Instance, limits: Limits) -> bool:
    """Whether the module's memory stood within one growth step of the cap (16 MiB, or half the
    cap when that is smaller): a trap there most likely followed a refused memory.grow, so it is a
    memory outcome rather than an ordinary error. (wasmtime-py does not report refused grows.)"""
    margin = min(16 << 20, limits.memory_bytes // 2)
    for ext in instance.exports(store).values():
        if isinstance(ext, wt.Memory) and ext.data_len(store) > limits.memory_bytes - margin:
            return True
    return False


def _counted(trace: BehaviourTrace, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    key = f"wasi:{name}"

    def call(*args: Any) -> Any:
        trace.add(key)
        return fn(*args)

    return call


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _classify(e: BaseException, store: wt.Store, limits: Limits) -> tuple[Outcome, int | None, str]:
    if isinstance(e, _ProcExit):
        return ("ok" if e.code == 0 else "error"), e.code, "" if e.code == 0 else f"exit {e.code}"
    if isinstance(e, _OutputFull):
        return "output_limit", None, f"output passed {limits.output_bytes} bytes"
    if isinstance(e, wt.Trap):
        code = e.trap_code
        if code == wt.TrapCode.OUT_OF_FUEL:
            return "out_of_fuel", None, f"out of fuel ({limits.fuel:,} instructions)"
        if code == wt.TrapCode.INTERRUPT:
            return "timeout", None, f"deadline of {limits.deadline_s:g} s"
        name = code.name.lower().replace("_", " ") if code is not None else ""
        lines = [ln for ln in str(e.message).splitlines() if ln.strip() and "backtrace" not in ln]
        text = name or (lines[-1].strip() if lines else "trap")
        return "error", None, f"trap: {text}"
    if isinstance(e, wt.WasmtimeError):
        text = _first_line(e)
        if "memory" in text and ("limit" in text or "exceed" in text):
            return "memory", None, text
        return "error", None, text
    return "error", None, f"{type(e).__name__}: {_first_line(e)}"
