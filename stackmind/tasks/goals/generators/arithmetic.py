"""Arithmetic with numbers too large to do in one's head: products, long sums, powers, remainders,
percentages and mixed expressions. Answers are exact integers or terminating decimals."""

from __future__ import annotations

from fractions import Fraction
from random import Random

from stackmind.tasks.goals.generators.base import NUMBER, Draft, Template, numeric, pick


def product(r: Random) -> Draft:
    a, b = r.randint(1_000, 99_999), r.randint(100, 9_999)
    if r.random() < 0.5:
        a, b = b, a
    text = pick(r, [f"What is {a} * {b}?", f"Compute {a} × {b}.", f"Multiply {a} by {b}.",
                    f"What is the product of {a} and {b}?", f"Calculate {a} times {b}."])
    return numeric(text + NUMBER, a * b)


def long_sum(r: Random) -> Draft:
    xs = [r.randint(10_000, 9_999_999) for _ in range(r.randint(4, 6))]
    listed = ", ".join(str(x) for x in xs[:-1]) + f" and {xs[-1]}"
    text = pick(r, [f"What is {' + '.join(str(x) for x in xs)}?", f"What is the sum of {listed}?",
                    f"Add up these numbers: {', '.join(str(x) for x in xs)}.",
                    f"Find the total of {listed}."])
    return numeric(text + NUMBER, sum(xs))


def signed_chain(r: Random) -> Draft:
    xs = [r.randint(1_000, 999_999) for _ in range(r.randint(4, 5))]
    signs = [r.choice("+-") for _ in xs[1:]]
    expr = str(xs[0]) + "".join(f" {s} {x}" for s, x in zip(signs, xs[1:], strict=True))
    value = xs[0] + sum(x if s == "+" else -x for s, x in zip(signs, xs[1:], strict=True))
    text = pick(r, [f"What is {expr}?", f"Evaluate {expr}.", f"Work out {expr}."])
    return numeric(text + NUMBER, value)


def power(r: Random) -> Draft:
    base = r.randint(3, 29)
    exponent = r.randint(6, 14) if base < 10 else r.randint(4, 9)
    text = pick(r, [f"What is {base}^{exponent}?", f"What is {base} to the power of {exponent}?",
                    f"Compute {base} raised to the {exponent}th power.", f"Calculate {base}**{exponent}."])
    return numeric(text + NUMBER, base ** exponent)


def remainder(r: Random) -> Draft:
    a, m = r.randint(10**7, 10**10), r.randint(7, 997)
    text = pick(r, [f"What is the remainder when {a} is divided by {m}?", f"What is {a} mod {m}?",
                    f"Compute {a} modulo {m}.", f"What is left over when {a} is divided by {m}?"])
    return numeric(text + NUMBER, a % m)


def power_mod(r: Random) -> Draft:
    base, exponent, m = r.randint(2, 19), r.randint(20, 300), r.randint(11, 199)
    text = pick(r, [f"What is {base}^{exponent} mod {m}?",
                    f"What is the remainder when {base} to the power of {exponent} is divided by {m}?"])
    return numeric(text + NUMBER, pow(base, exponent, m))


def percent(r: Random) -> Draft:
    p = Fraction(r.randint(1, 199), 2) if r.random() < 0.4 else Fraction(r.randint(1, 99))
    n = r.randint(120, 99_999)
    if p.denominator == 2:
        n += n % 2  # an even number: the answer has at most two decimals
    shown = f"{float(p):g}"
    text = pick(r, [f"What is {shown}% of {n}?", f"Find {shown} percent of {n}.",
                    f"Calculate {shown}% of {n}."])
    return numeric(text + NUMBER, p * n / 100)


def mixed(r: Random) -> Draft:
    a, b, c, d = r.randint(100, 9_999), r.randint(100, 9_999), r.randint(12, 999), r.randint(1_000, 99_999)
    text = pick(r, [f"What is ({a} + {b}) * {c} - {d}?", f"Evaluate ({a} + {b}) × {c} − {d}.",
                    f"Add {a} and {b}, multiply the sum by {c}, then subtract {d}. What is the result?"])
    return numeric(text + NUMBER, (a + b) * c - d)


def quotient(r: Random) -> Draft:
    b, q = r.randint(13, 987), r.randint(1_000, 999_999)
    a = b * q
    text = pick(r, [f"What is {a} divided by {b}?", f"Compute {a} / {b}.", f"Divide {a} by {b}."])
    return numeric(text + NUMBER, q)


TEMPLATES: list[Template] = [product, long_sum, signed_chain, power, remainder, power_mod, percent, mixed,
                             quotient]
