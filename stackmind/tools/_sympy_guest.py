"""GUEST SIDE: the sympy fallback of ``@wolfram``, run only inside the sandbox VM.

The host never imports this module: `stackmind.tools.wolfram` reads its text and runs it as a guest
program (the CPython-WASI guest ships sympy), under the sandbox's deadline, fuel and memory limits.
It reads the query from stdin and prints one JSON line: ``{"answer": text or null, "why": ...}``.
sympy's parser evaluates what it reads, so it must never see model-written text on the host.

What it answers: arithmetic, simplification, equations (``solve ... = ...``), derivatives, integrals,
factoring and expansion. Names are whitelisted, attribute access and dunders are refused, so a query
is mathematics or nothing.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

MAX_ANSWER = 2000
MAX_DIGITS = 3000  # a whole number longer than this is shown rounded (its exact digits are useless text)

_VERBS = re.compile(
    r"^\s*(?P<verb>solve|simplify|factor|expand|differentiate|derivative of|diff|d/dx|integrate|integral of|"
    r"limit|evaluate|compute|calculate|what is|what's)\b[\s:]*", re.I)
_SAFE = re.compile(r"^[\w\s+\-*/^().,=<>!']*$")
_NAMES = (
    "sin", "cos", "tan", "exp", "log", "ln", "sqrt", "pi", "E", "I", "oo", "factorial", "Abs",
    "asin", "acos", "atan", "sinh", "cosh", "tanh", "binomial", "gcd", "lcm", "floor", "ceiling",
    "Rational", "Integer", "Float", "Symbol", "Add", "Mul", "Pow",
)


def answer(query: str) -> str | None:
    """A mathematical answer from sympy, or None when the query is not mathematics it can read."""
    text = query.strip().rstrip("?").strip()
    m = _VERBS.match(text)
    verb = m.group("verb").lower() if m else ""
    body = text[m.end():] if m else text
    body = re.sub(r"\b(dx|dy|dt)\b\s*$", "", body).strip()
    body = re.sub(r"\s+(with respect to|wrt|for)\s+([a-z])\s*$", r" , \2", body, flags=re.I)
    if not body or not _SAFE.match(body) or "__" in body or "lambda" in body:
        return None
    import sympy as sp
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    names = {n: getattr(sp, n) for n in _NAMES if hasattr(sp, n)}
    names["ln"] = sp.log
    if any(w not in names for w in re.findall(r"[A-Za-z_]{2,}", body)):
        return None  # words that are not function names: prose, not mathematics
    transformations = (*standard_transformations, implicit_multiplication_application, convert_xor)

    def parse(src: str, evaluate: bool = True) -> Any:
        if not src.strip():
            raise ValueError("empty")
        return parse_expr(src, local_dict=dict(names), global_dict={"Integer": sp.Integer, "Float": sp.Float,
                          "Rational": sp.Rational, "Symbol": sp.Symbol, "Function": sp.Function},
                          transformations=transformations, evaluate=evaluate)

    def show(x: Any) -> str:
        if getattr(x, "is_Integer", False) and abs(int(x)).bit_length() > MAX_DIGITS * 3.33:
            return f"{sp.sstr(sp.N(x, 15))} (a whole number of about {int(abs(int(x)).bit_length() * 0.30103)} digits)"
        return sp.sstr(x)

    try:
        main, _, var_text = body.partition(" , ")
        var = parse(var_text) if var_text.strip() else None
        if "=" in main and verb in ("solve", ""):
            left, _, right = main.partition("=")
            eq = sp.Eq(parse(left), parse(right))
            if isinstance(eq, sp.logic.boolalg.BooleanAtom):
                return f"{query.strip()}: {bool(eq)}"
            symbols = sorted(eq.free_symbols, key=str)
            target = var if var is not None else (symbols[0] if symbols else None)
            if target is None:
                return f"{query.strip()}: {bool(sp.simplify(eq.lhs - eq.rhs) == 0)}"
            solutions = sp.solve(eq, target)
            return f"solve {show(eq.lhs)} = {show(eq.rhs)} for {target}: " + (
                ", ".join(f"{target} = {show(s)}" for s in solutions) if solutions else "no solution")
        expr = parse(main)
        symbols = sorted(getattr(expr, "free_symbols", set()), key=str)
        x = var if var is not None else (symbols[0] if symbols else sp.Symbol("x"))
        if verb in ("differentiate", "derivative of", "diff", "d/dx"):
            return f"d/d{x} {show(expr)} = {show(sp.simplify(sp.diff(expr, x)))}"
        if verb in ("integrate", "integral of"):
            return f"integral of {show(expr)} d{x} = {show(sp.integrate(expr, x))} + C"
        if verb == "factor":
            return f"{show(expr)} = {show(sp.factor(expr))}"
        if verb == "expand":
            return f"{show(expr)} = {show(sp.expand(expr))}"
        if verb == "solve":
            return f"solve {show(expr)} = 0 for {x}: " + ", ".join(f"{x} = {show(s)}" for s in sp.solve(expr, x))
        shown = sp.sstr(parse(main, evaluate=False))
        simplified = sp.simplify(expr)
        if getattr(simplified, "is_number", False):
            if simplified.is_Integer or simplified.is_Float:
                return f"{shown} = {show(simplified)}"
            return f"{shown} = {show(simplified)} ≈ {show(sp.N(simplified, 15))}"
        return f"{shown} = {show(simplified)}"
    except (MemoryError, RecursionError):
        raise  # a limit, not a question sympy cannot read: main() says so
    except Exception:  # sympy could not read or work it: not our kind of question
        return None


def main() -> None:
    query = sys.stdin.read()
    try:
        text = answer(query)
    except MemoryError:
        print(json.dumps({"answer": None, "why": "memory"}))
        return
    except RecursionError:
        print(json.dumps({"answer": None, "why": "recursion"}))
        return
    if text is not None and len(text) > MAX_ANSWER:
        text = text[: MAX_ANSWER - 3] + "..."
    print(json.dumps({"answer": text, "why": None}, ensure_ascii=False))


if __name__ == "__main__":
    main()
