"""``@wolfram(query)``: ask Wolfram|Alpha; without a key, work the mathematics out with sympy.

    @wolfram(integrate x^2 sin x dx)
    @wolfram(query="solve x^2 - 5x + 6 = 0")

With ``WOLFRAMALPHA_API_KEY`` set (`Settings.wolframalpha_api_key`), the query goes to the
`wolframalpha` client's async ``aquery`` and the answer is the primary pods' plain text. Without a
key, or when the service cannot be reached, sympy answers what it can: arithmetic, simplification,
equations (``solve ... = ...``), derivatives and integrals. sympy runs inside the sandbox VM (the
guest program `_sympy_guest.py`; the CPython-WASI guest ships sympy), never on the host: its parser
evaluates what it reads, and a query such as ``9^9^9^9`` would run forever. Under the sandbox's
deadline, fuel and memory limits (`SYMPY_LIMITS`) such a query ends in seconds with an observation
that names the limit. The result text becomes the agent's observation frame.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackmind.sandbox import Limits, Sandbox, SandboxError
from stackmind.tools import Invocation, ToolContext, ToolError, ToolResult

MAX_QUERY = 500
MAX_ANSWER = 2000


class WolframTool:
    name = "wolfram"
    description = 'ask Wolfram|Alpha (or sympy for mathematics): @wolfram(query="solve x^2 = 4")'

    def __init__(self, url: str | None = None, timeout_s: float = 30.0, limits: Limits | None = None) -> None:
        self.url = url  # None: the client's own https://api.wolframalpha.com/v2/query
        self.timeout_s = timeout_s
        self.limits = limits or SYMPY_LIMITS  # the sympy fallback's, in the sandbox

    def __call__(self, invocation: Invocation, ctx: ToolContext) -> ToolResult:
        query = invocation.arg("query")
        if not isinstance(query, str) or not query.strip():
            raise ToolError('@wolfram needs a question: @wolfram(query="integrate x^2")')
        query = query.strip()
        if len(query) > MAX_QUERY:
            raise ToolError(f"@wolfram's query is {len(query)} characters; keep it under {MAX_QUERY}")
        key = ctx.settings.wolframalpha_api_key
        if key is not None and key.get_secret_value():
            try:
                text = _run(self.aquery(query, key.get_secret_value()))
                return ToolResult(_clip(text), meta={"source": "wolframalpha"})
            except Exception as e:  # the service is down or refused: sympy may still answer
                fallback = self.sympy(query, ctx)
                if fallback.text is not None:
                    return ToolResult(_clip(fallback.text), meta={"source": "sympy", "wolfram_error": _safe(e, key)})
                if fallback.limit is not None:
                    return ToolResult(_limit_text(fallback.limit), ok=False,
                                      meta={"source": "sympy", "limit": fallback.limit, "wolfram_error": _safe(e, key)})
                return ToolResult(f"Wolfram|Alpha could not answer: {_safe(e, key)}", ok=False,
                                  meta={"source": "wolframalpha"})
        answer = self.sympy(query, ctx)
        if answer.limit is not None:
            return ToolResult(_limit_text(answer.limit), ok=False, meta={"source": "sympy", "limit": answer.limit})
        if answer.text is None:
            return ToolResult(
                "No Wolfram|Alpha key is set (WOLFRAMALPHA_API_KEY) and sympy could not read this as "
                "mathematics; write it as an expression, e.g. 'solve x^2 - 4 = 0' or 'diff sin(x)*x'.",
                ok=False, meta={"source": "sympy"})
        return ToolResult(_clip(answer.text), meta={"source": "sympy"})

    def sympy(self, query: str, ctx: ToolContext) -> MathAnswer:
        """The sympy fallback, in the episode's sandbox (made once per episode, like @python's)."""
        sandbox = ctx.state.get("sandbox")
        if not isinstance(sandbox, Sandbox):
            sandbox = Sandbox(ctx.settings, self.limits)
            ctx.state["sandbox"] = sandbox
        try:
            return sympy_result(query, sandbox, self.limits)
        except SandboxError as e:  # the VM itself could not start: no mathematics without it
            raise ToolError(f"sympy runs in the sandbox, which could not start: {e}") from e

    async def aquery(self, query: str, app_id: str) -> str:
        """Wolfram|Alpha's answer as plain text: the primary (or 'Result') pods, else every pod."""
        import wolframalpha

        kwargs: dict[str, Any] = {"timeout": self.timeout_s}
        if self.url:
            kwargs["url"] = self.url  # the client reads its endpoint from the instance
        client = wolframalpha.Client(app_id, **kwargs)
        res = await client.aquery(query)
        if str(res.get("@success", "true")).lower() == "false" or not res.get("pod"):
            tips = res.get("didyoumeans") or res.get("tips")
            raise LookupError(f"Wolfram|Alpha did not understand {query!r}" + (f" ({tips})" if tips else ""))
        pods = list(res.pods)
        chosen = [p for p in pods if p.primary or p.get("@title") == "Result"] or pods
        lines = []
        for pod in chosen:
            texts = [t for t in pod.texts if t]
            if texts:
                lines.append(f"{pod.get('@title', 'Result')}: " + "; ".join(texts))
        if not lines:
            raise LookupError(f"Wolfram|Alpha returned no text for {query!r}")
        return "\n".join(lines)


def _run(coro: Any) -> Any:
    """Run a coroutine from sync code, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _safe(error: BaseException, key: Any) -> str:
    text = f"{type(error).__name__}: {error}"
    secret = key.get_secret_value() if key is not None else ""
    return text.replace(secret, "<key>") if secret else text


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ANSWER else text[: MAX_ANSWER - 3] + "..."


# ---- the sympy fallback, in the sandbox ------------------------------------------------------------

GUEST_PROGRAM = Path(__file__).with_name("_sympy_guest.py")
MiB = 1 << 20
# sympy's import costs the guest about 1.5 s and 6e9 instructions; these leave room for real work and
# stop a runaway (9^9^9^9, factorial(10^9)) in seconds.
SYMPY_LIMITS = Limits(deadline_s=10.0, fuel=40_000_000_000, memory_bytes=256 * MiB, output_bytes=64 * 1024,
                      file_calls=1000, scratch_bytes=MiB, scratch_entries=16)


@dataclass(frozen=True)
class MathAnswer:
    """What the sandboxed sympy made of a query: an answer, nothing (not mathematics it can read),
    or a limit it hit (``limit`` says which, in words)."""

    text: str | None
    limit: str | None = None


def sympy_result(query: str, sandbox: Sandbox | None = None, limits: Limits | None = None) -> MathAnswer:
    """Ask sympy inside the sandbox VM (never on the host: its parser evaluates what it reads)."""
    limits = limits or SYMPY_LIMITS
    sandbox = sandbox or Sandbox(limits=limits, prelude=False)
    run = sandbox.run_python(GUEST_PROGRAM.read_text(encoding="utf-8"), limits, stdin=query.encode("utf-8"))
    if run.outcome in ("timeout", "out_of_fuel", "memory"):
        return MathAnswer(None, run.detail or run.outcome)
    if run.outcome != "ok":
        return MathAnswer(None, f"{run.outcome}: {run.detail}" if run.detail else run.outcome)
    try:
        data = json.loads(run.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return MathAnswer(None, "the sandboxed sympy gave no answer")
    if data.get("why") == "memory":
        return MathAnswer(None, f"MemoryError (limit {limits.memory_bytes // MiB} MiB)")
    if data.get("why") == "recursion":
        return MathAnswer(None, "the expression is nested too deeply (RecursionError)")
    text = data.get("answer")
    return MathAnswer(text if isinstance(text, str) else None)


def sympy_answer(query: str, sandbox: Sandbox | None = None, limits: Limits | None = None) -> str | None:
    """sympy's answer (computed in the sandbox), or None when it has none or hit a limit."""
    return sympy_result(query, sandbox, limits).text


def _limit_text(limit: str) -> str:
    return (f"sympy stopped: the computation hit the sandbox's limit ({limit}). The query is too big to "
            "work out exactly; ask for something smaller, or estimate it (logarithms, @python with floats).")
