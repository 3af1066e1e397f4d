"""``@python(...)``: run Python in the sandbox VM and observe what it printed.

    @python(print(17 * 23))
    @python(code="import math\\nprint(math.comb(10, 3))")

The code runs only inside the WebAssembly sandbox (`stackmind.sandbox`), never on the host. By
default an episode keeps one interpreter (a session, in ``ctx.state["python_session"]``), so
variables and imports carry over from one call to the next and a call costs milliseconds; the agent
closes it with the episode. The observation is the guest's stdout, its stderr, and how the run
ended when it did not end cleanly (a timeout, a memory limit, ...). A program with no ``print`` shows
the value of its last line, as a notebook shows a cell's (`show_last_value`). The interpreter starts
with the standard modules a short calculation most often needs already imported (`PRELUDE`).
"""

from __future__ import annotations

import ast
import re
import textwrap

from stackmind.sandbox import Limits, PythonSession, RunResult, Sandbox
from stackmind.tools import Invocation, ToolContext, ToolError, ToolResult

_FENCE = re.compile(r"^\s*```(?:python|py)?\s*\n(.*?)\n?\s*```\s*$", re.DOTALL)


def code_of(invocation: Invocation) -> str:
    """The code an invocation carries: ``code="..."`` when that is its one argument, else the
    raw text between the parentheses (so ``@python(print(1), print(2))`` runs both prints)."""
    code = invocation.kwargs.get("code")
    if isinstance(code, str) and len(invocation.kwargs) == 1 and not invocation.args:
        text = code
    else:
        text = invocation.raw
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    return textwrap.dedent(text).strip("\n")


def show_last_value(code: str) -> str:
    """``code`` so that, when it has no ``print`` at all, it prints the value of its last line: an
    expression's value (unless None), or the name an assignment on that line sets. A small model
    often ends its program with the result in a variable, sees an empty observation, and writes the
    same program again. Only the source changes here (parsed, never run, on the host); line numbers
    stay as they were."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code  # the guest reports it (a syntax error, a null byte, nesting too deep)
    if not tree.body or any(isinstance(n, ast.Name) and n.id == "print" for n in ast.walk(tree)):
        return code
    last = tree.body[-1]
    if isinstance(last, ast.Expr):
        lines = [line.encode() for line in code.split("\n")]  # ast's columns count UTF-8 bytes
        start, end = last.lineno - 1, (last.end_lineno or last.lineno) - 1
        lines[end] = lines[end][:last.end_col_offset] + b")" + lines[end][last.end_col_offset:]
        lines[start] = lines[start][:last.col_offset] + b"__value__ = (" + lines[start][last.col_offset:]
        return b"\n".join(lines).decode() + "\nif __value__ is not None:\n    print(__value__)"
    targets = (last.targets if isinstance(last, ast.Assign)
               else [last.target] if isinstance(last, ast.AugAssign | ast.AnnAssign) and last.value else [])
    names = [t.id for t in targets if isinstance(t, ast.Name)]
    if names and len(names) == len(targets):
        return code + f"\nprint({names[-1]})"
    return code


# What an episode's interpreter has imported before its first program: the modules a short program
# for a calculation, a date or a list most often needs (a small model often leaves the import out).
PRELUDE = "import math, datetime, calendar, statistics, itertools, re; from datetime import date, timedelta"


class PythonTool:
    name = "python"
    # No example call here: the system prompt lists this, and a small model that did not know what to
    # do copied it ("three tips for writing clear Python code" answered @python(print(17 * 23)), 391).
    # The fallback worked example shows a call (`DemoLibrary.fallbacks`), where copying is caught.
    description = ("run Python code in a sandbox and see what it prints; "
                   "math, datetime, date, timedelta, calendar, statistics, itertools and re are imported")

    def __init__(self, limits: Limits | None = None, session: bool = True, max_chars: int = 4000) -> None:
        self.limits = limits or Limits()
        self.use_session = session
        self.max_chars = max_chars

    def _sandbox(self, ctx: ToolContext) -> Sandbox:
        sandbox = ctx.state.get("sandbox")
        if not isinstance(sandbox, Sandbox):
            sandbox = Sandbox(ctx.settings, self.limits)
            ctx.state["sandbox"] = sandbox
        return sandbox

    def run(self, code: str, ctx: ToolContext) -> RunResult:
        sandbox = self._sandbox(ctx)
        if not self.use_session:  # the prelude is the program's first line
            return sandbox.run_python(f"{PRELUDE}\n{code}", self.limits)
        session = ctx.state.get("python_session")
        if not isinstance(session, PythonSession):
            session = sandbox.session(self.limits)
            ctx.state["python_session"] = session  # closed by the agent with the episode
            session.run(PRELUDE)
        return session.run(code)

    def __call__(self, invocation: Invocation, ctx: ToolContext) -> ToolResult:
        code = code_of(invocation)
        if not code.strip():
            raise ToolError("@python needs code to run: @python(print(17 * 23))")
        result = self.run(show_last_value(code), ctx)
        meta = result.to_dict()
        meta.pop("stdout")
        meta.pop("stderr")
        return ToolResult(result.observation(self.max_chars), ok=result.ok, meta=meta)
