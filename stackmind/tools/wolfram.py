"""``@wolfram(query)``: ask Wolfram|Alpha; without a key, work the mathematics out with sympy.

    @wolfram(integrate x^2 sin x dx)
    @wolfram(query="solve x^2 - 5x + 6 = 0")

With ``WOLFRAMALPHA_API_KEY`` set (`Settings.wolframalpha_api_key`), the query goes to the
`wolframalpha` client's async ``aquery`` and the answer is the primary pods' plain text. Without a
key, or when the service cannot be reached, sympy answers what it can: arithmetic, simplification,
equations (``solve ... = ...``), derivatives and integrals. sympy's parser is used with a
whitelist of names and no attribute access, so a query is never run as Python. The result text
becomes the agent's observation frame.
"""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

from stackmind.tools import Invocation, ToolContext, ToolError, ToolResult

MAX_QUERY = 500
MAX_ANSWER = 2000


class WolframTool:
    name = "wolfram"
    description = 'ask Wolfram|Alpha (or sympy for mathematics): @wolfram(query="solve x^2 = 4")'

    def __init__(self, url: str | None = None, timeout_s: float = 30.0) -> None:
        self.url = url  # None: the client's own https://api.wolframalpha.com/v2/query
        self.timeout_s = timeout_s

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
                fallback = sympy_answer(query)
                if fallback is not None:
                    return ToolResult(_clip(fallback), meta={"source": "sympy", "wolfram_error": _safe(e, key)})
                return ToolResult(f"Wolfram|Alpha could not answer: {_safe(e, key)}", ok=False,
                                  meta={"source": "wolframalpha"})
        answer = sympy_answer(query)
        if answer is None:
            return ToolResult(
                "No Wolfram|Alpha key is set (WOLFRAMALPHA_API_KEY) and sympy could not read this as "
                "mathematics; write it as an expression, e.g. 'solve x^2 - 4 = 0' or 'diff sin(x)*x'.",
                ok=False, meta={"source": "sympy"})
        return ToolResult(_clip(answer), meta={"source": "sympy"})

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


# ---- the sympy fallback ---------------------------------------------------------------------------

_VERBS = re.compile(
    r"^\s*(?P<verb>solve|simplify|factor|expand|differentiate|derivative of|diff|d/dx|integrate|integral of|"
    r"limit|evaluate|compute|calculate|what is|what's)\b[\s:]*", re.I)
_SAFE = re.compile(r"^[\w\s+\-*/^().,=<>!']*$")


def sympy_answer(query: str) -> str | None:
    """A mathematical answer from sympy, or None when the query is not mathematics it can read."""
    import sympy as sp
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    text = query.strip().rstrip("?").strip()
    m = _VERBS.match(text)
    verb = m.group("verb").lower() if m else ""
    body = text[m.end():] if m else text
    body = re.sub(r"\b(dx|dy|dt)\b\s*$", "", body).strip()
    body = re.sub(r"\s+(with respect to|wrt|for)\s+([a-z])\s*$", r" , \2", body, flags=re.I)
    if not body or not _SAFE.match(body) or "__" in body or "lambda" in body:
        return None
    names = {n: getattr(sp, n) for n in (
        "sin", "cos", "tan", "exp", "log", "ln", "sqrt", "pi", "E", "I", "oo", "factorial", "Abs",
        "asin", "acos", "atan", "sinh", "cosh", "tanh", "binomial", "gcd", "lcm", "floor", "ceiling",
        "Rational", "Integer", "Float", "Symbol", "Add", "Mul", "Pow",
    ) if hasattr(sp, n)}
    names["ln"] = sp.log
    transformations = (*standard_transformations, implicit_multiplication_application, convert_xor)

    if any(w not in names for w in re.findall(r"[A-Za-z_]{2,}", body)):
        return None  # words that are not function names: prose, not mathematics

    def parse(src: str, evaluate: bool = True) -> Any:
        if not src.strip():
            raise ValueError("empty")
        return parse_expr(src, local_dict=dict(names), global_dict={"Integer": sp.Integer, "Float": sp.Float,
                          "Rational": sp.Rational, "Symbol": sp.Symbol, "Function": sp.Function},
                          transformations=transformations, evaluate=evaluate)

    try:
        main, _, var_text = body.partition(" , ")
        var = parse(var_text) if var_text.strip() else None
        if "=" in main and verb in ("solve", ""):
            left, _, right = main.partition("=")
            eq = sp.Eq(parse(left), parse(right))
            symbols = sorted(eq.free_symbols, key=str)
            target = var if var is not None else (symbols[0] if symbols else None)
            if target is None:
                return f"{query.strip()}: {bool(sp.simplify(eq.lhs - eq.rhs) == 0)}"
            solutions = sp.solve(eq, target)
            return f"solve {sp.sstr(eq.lhs)} = {sp.sstr(eq.rhs)} for {target}: " + (
                ", ".join(f"{target} = {sp.sstr(s)}" for s in solutions) if solutions else "no solution")
        expr = parse(main)
        symbols = sorted(getattr(expr, "free_symbols", set()), key=str)
        x = var if var is not None else (symbols[0] if symbols else sp.Symbol("x"))
        if verb in ("differentiate", "derivative of", "diff", "d/dx"):
            return f"d/d{x} {sp.sstr(expr)} = {sp.sstr(sp.simplify(sp.diff(expr, x)))}"
        if verb in ("integrate", "integral of"):
            return f"integral of {sp.sstr(expr)} d{x} = {sp.sstr(sp.integrate(expr, x))} + C"
        if verb == "factor":
            return f"{sp.sstr(expr)} = {sp.sstr(sp.factor(expr))}"
        if verb == "expand":
            return f"{sp.sstr(expr)} = {sp.sstr(sp.expand(expr))}"
        if verb == "solve":
            return f"solve {sp.sstr(expr)} = 0 for {x}: " + ", ".join(f"{x} = {sp.sstr(s)}" for s in sp.solve(expr, x))
        shown = sp.sstr(parse(main, evaluate=False))
        simplified = sp.simplify(expr)
        if getattr(simplified, "is_number", False):
            value = sp.N(simplified, 15)
            if simplified.is_Integer or simplified.is_Float:
                return f"{shown} = {sp.sstr(simplified)}"
            return f"{shown} = {sp.sstr(simplified)} ≈ {sp.sstr(value)}"
        return f"{shown} = {sp.sstr(simplified)}"
    except Exception:  # sympy could not read or work it: not our kind of question
        return None
