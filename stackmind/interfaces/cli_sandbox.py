"""``stackmind sandbox``: run a program in the sandbox VM, and warm its compiled module.

    stackmind sandbox run script.py
    stackmind sandbox run -c 'print(17 * 23)' --json
    stackmind sandbox run --wasm module.wat --fuel 1000000
    stackmind sandbox warm

The exit code is 0 whenever the sandbox did its job, whatever the guest did (its outcome and
exit status are in the output); it is non-zero only when the sandbox itself failed or the command
was used wrongly.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from stackmind.interfaces._app import JSON_OPTION, app, console, fail, print_json, settings
from stackmind.sandbox import Limits, Python, Sandbox, SandboxError, Wasm

sandbox_app = typer.Typer(help="Run code in the WebAssembly sandbox VM.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")

_D = Limits()


def _progress(message: str) -> None:
    console.print(f"[dim]sandbox:[/] {message}", markup=True, highlight=False)


@sandbox_app.command("run")
def run_command(
    file: Annotated[Path | None, typer.Argument(help="A Python file to run (read on the host, run in the guest).")] = None,
    code: Annotated[str | None, typer.Option("-c", "--code", help="Python code to run.")] = None,
    wasm: Annotated[Path | None, typer.Option("--wasm", help="A WebAssembly module to run: .wasm bytes or .wat text.")] = None,
    deadline: Annotated[float, typer.Option("--deadline", "-t", help="Wall-clock seconds.")] = _D.deadline_s,
    fuel: Annotated[int, typer.Option("--fuel", help="WebAssembly instructions.")] = _D.fuel,
    memory_mib: Annotated[int, typer.Option("--memory", help="Guest memory in MiB.")] = _D.memory_bytes >> 20,
    output_bytes: Annotated[int, typer.Option("--output-bytes", help="Bytes kept per stream.")] = _D.output_bytes,
    file_calls: Annotated[int, typer.Option("--file-calls", help="File operations allowed.")] = _D.file_calls,
    put: Annotated[list[str] | None, typer.Option(
        "--put", help="NAME=HOSTPATH: copy a host file into the scratch folder as NAME.")] = None,
    stdin_file: Annotated[Path | None, typer.Option("--stdin", help="A host file given to the guest as its stdin.")] = None,
    json_out: bool = JSON_OPTION,
) -> None:
    """Run a program in a fresh VM and print its output and outcome."""
    given = [x for x in (file, code, wasm) if x is not None]
    if len(given) != 1:
        raise fail("give exactly one program: a FILE.py, -c CODE, or --wasm FILE (.wasm or .wat)", code=2)
    try:
        limits = Limits(deadline_s=deadline, fuel=fuel, memory_bytes=memory_mib << 20,
                        output_bytes=output_bytes, file_calls=file_calls)
    except ValueError as e:
        raise fail(f"bad limit: {e}", code=2) from e
    try:
        files = {}
        for item in put or []:
            name, sep, host = item.partition("=")
            if not sep or not name:
                raise fail(f"--put takes NAME=HOSTPATH, not {item!r}", code=2)
            files[name] = Path(host).read_bytes()
        stdin = stdin_file.read_bytes() if stdin_file is not None else b""
        if wasm is not None:
            raw = wasm.read_bytes()
            program: Python | Wasm = Wasm(raw.decode("utf-8", "replace") if wasm.suffix == ".wat" else raw)
        elif file is not None:
            program = Python(file.read_text(encoding="utf-8", errors="replace"))
        else:
            program = Python(code or "")
    except OSError as e:
        raise fail(f"cannot read {e.filename}: {e.strerror}", code=2) from e

    sandbox = Sandbox(settings(), progress=_progress)
    try:
        result = sandbox.run(program, limits, files=files, stdin=stdin)
    except SandboxError as e:
        raise fail(str(e)) from e
    if json_out:
        print_json(result.to_dict())
        return
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    if result.stderr:
        sys.stderr.write(result.stderr)
    style = "green" if result.ok else "yellow"
    console.print(f"[{style}]{result.summary()}[/]", markup=True, highlight=False)
    if result.trace is not None and result.trace.counts:
        console.print(f"trace: {result.trace.to_dict()}", markup=False, highlight=False)


@sandbox_app.command("warm")
def warm_command(json_out: bool = JSON_OPTION) -> None:
    """Compile the CPython-WASI module once (about 3 minutes) and cache it; later runs load it."""
    sandbox = Sandbox(settings(), progress=_progress)
    try:
        with console.status("preparing the CPython-WASI module (first time: about 3 minutes)"):
            info = sandbox.warm()
    except SandboxError as e:
        raise fail(str(e)) from e
    if json_out:
        print_json({"compiled": info.compiled, "seconds": round(info.seconds, 3), "path": str(info.path)})
    else:
        console.print(info.describe(), markup=False, highlight=False)
