"""The only door: nothing in the `stackmind` package runs text on the host.

Scans every module's AST for exec/eval/compile-to-run, for subprocesses and os.system/exec/spawn
calls that could start a host Python, and for runpy/code.interact. stackmind/sandbox is scanned too:
it runs guests only through wasmtime. A finding is allowed only by name in ALLOWED, with a reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import stackmind

PACKAGE = Path(stackmind.__file__).resolve().parent

BUILTINS = {"exec", "eval", "compile", "__import__", "breakpoint"}
MODULE_CALLS = {
    "os": {"system", "popen", "execv", "execve", "execl", "execle", "execlp", "execvp", "execvpe",
           "spawnv", "spawnve", "spawnl", "spawnle", "spawnlp", "spawnvp", "posix_spawn",
           "posix_spawnp", "fork", "forkpty"},
    "subprocess": {"run", "call", "check_call", "check_output", "Popen", "getoutput", "getstatusoutput"},
    "runpy": {"run_path", "run_module"},
    "code": {"interact", "InteractiveInterpreter", "InteractiveConsole"},
    "pty": {"spawn"},
    "multiprocessing": {"Process", "Pool"},
    "asyncio": {"create_subprocess_exec", "create_subprocess_shell"},
}
DANGEROUS_MODULES = {"subprocess", "runpy", "code", "pty", "multiprocessing", "pexpect"}
# (relative path, call) -> why it is safe. Keep this short; every entry is a reviewed exception.
ALLOWED: dict[tuple[str, str], str] = {
    ("stackmind/interfaces/cli_consolidate.py", "os.execvpe()"):
        "`stackmind serve --vllm --launch` replaces itself with the fixed vLLM server command; "
        "no generated text reaches it",
}


def findings(path: Path) -> list[str]:
    return findings_in(path.read_text(encoding="utf-8"), path.relative_to(PACKAGE.parent).as_posix())


def findings_in(source: str, rel: str) -> list[str]:
    tree = ast.parse(source, filename=rel)
    aliases: dict[str, str] = {}  # local name -> module.function it stands for
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in DANGEROUS_MODULES:
                    found.append(f"{rel}:{node.lineno}: import {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            for a in node.names:
                if root in MODULE_CALLS and a.name in MODULE_CALLS[root]:
                    aliases[a.asname or a.name] = f"{root}.{a.name}"
                    found.append(f"{rel}:{node.lineno}: from {node.module} import {a.name}")
                elif root in DANGEROUS_MODULES:
                    found.append(f"{rel}:{node.lineno}: from {node.module} import {a.name}")
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in BUILTINS:
                found.append(f"{rel}:{node.lineno}: {f.id}()")
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                mod, name = f.value.id, f.attr
                if name in MODULE_CALLS.get(mod, set()):
                    found.append(f"{rel}:{node.lineno}: {mod}.{name}()")
                if mod == "builtins" and name in BUILTINS:
                    found.append(f"{rel}:{node.lineno}: builtins.{name}()")
            elif isinstance(f, ast.Name) and f.id in aliases:
                found.append(f"{rel}:{node.lineno}: {aliases[f.id]}()")
    return [x for x in found if (rel, x.split(": ", 1)[1]) not in ALLOWED]


def test_no_host_execution_anywhere_in_the_package() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert any(p.parts[-2] == "sandbox" for p in files), "the scan must cover stackmind/sandbox"
    bad = [f for p in files for f in findings(p)]
    assert not bad, "code that could run text on the host:\n" + "\n".join(bad)


def test_the_scanner_catches_what_it_should() -> None:
    got = findings_in(
        "import subprocess\nfrom os import system as s\nimport os, builtins\n"
        "eval('1')\nexec('x=1')\nos.system('id')\ns('id')\nos.execv('/bin/sh', [])\n"
        "builtins.exec('1')\ncompile('1', 'f', 'exec')\n", "probe.py",
    )
    kinds = {g.split(": ", 1)[1] for g in got}
    assert kinds >= {"import subprocess", "from os import system", "eval()", "exec()", "os.system()",
                     "os.execv()", "builtins.exec()", "compile()"}
