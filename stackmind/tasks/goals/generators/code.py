"""What does this Python code print? Short programs built from templates (loops, string operations,
comprehensions, integer arithmetic, recursion), each printing one line.

The expected output is computed here by construction, in plain Python over the numbers a template
drew, never by running the program text (the goal's ``data["program"]`` holds it, so a test can run
it in the sandbox and compare). Outputs that are numbers get a numeric check; lists, the list check;
text, the exact check with case kept.
"""

from __future__ import annotations

from random import Random

from stackmind.tasks.goals.generators.base import Draft, Template, exact, numeric, pick
from stackmind.tasks.goals.generators.strings import WORDS
from stackmind.tasks.goals.goal import Check

ASK = ("What does this Python code print?", "What is the output of the following Python program?",
       "Read this Python program. What does it print when it runs?")
ANSWER = "Answer with exactly what it prints."


def frame(r: Random, program: str) -> str:
    return f"{pick(r, ASK)}\n\n```python\n{program}\n```\n\n{ANSWER}"


def number_output(r: Random, program: str, value: int) -> Draft:
    d = numeric(frame(r, program), value)
    return Draft(d.text, d.answer, d.check, {"program": program})


def text_output(r: Random, program: str, printed: str) -> Draft:
    d = exact(frame(r, program), printed, case_sensitive=True)
    return Draft(d.text, d.answer, d.check, {"program": program})


def list_output(r: Random, program: str, items: list[int]) -> Draft:
    return Draft(frame(r, program), str(items), Check("list"), {"program": program})


def loop_sum(r: Random) -> Draft:
    a, s, k = r.randint(0, 20), r.randint(1, 4), r.randint(2, 9)
    b = a + r.randint(5, 40)
    program = f"total = 0\nfor i in range({a}, {b}, {s}):\n    total += i * {k}\nprint(total)"
    return number_output(r, program, sum(i * k for i in range(a, b, s)))


def filtered_squares(r: Random) -> Draft:
    xs = [r.randint(1, 30) for _ in range(r.randint(5, 9))]
    m = r.randint(2, 4)
    rem = r.randrange(m)
    program = f"nums = {xs}\nprint(sum(x * x for x in nums if x % {m} == {rem}))"
    return number_output(r, program, sum(x * x for x in xs if x % m == rem))


def slicing(r: Random) -> Draft:
    w = pick(r, WORDS)
    kind = r.randrange(3)
    if kind == 0:
        i = r.randint(0, len(w) - 3)
        j = r.randint(i + 1, len(w))
        k = r.randrange(len(w))
        return text_output(r, f's = "{w}"\nprint(s[{i}:{j}] + s[{k}])', w[i:j] + w[k])
    if kind == 1:
        n = r.randint(2, len(w) - 1)
        return text_output(r, f's = "{w}"\nprint(s[::-1][:{n}].upper())', w[::-1][:n].upper())
    a = pick(r, sorted(set(w)))
    return number_output(r, f's = "{w}"\nprint(s.replace("{a}", "zz").count("z"))',
                         w.replace(a, "zz").count("z"))


def collatz(r: Random) -> Draft:
    n0 = r.randint(6, 60)
    n, steps = n0, 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    program = (f"n = {n0}\nsteps = 0\nwhile n != 1:\n    if n % 2 == 0:\n        n = n // 2\n    else:\n"
               "        n = 3 * n + 1\n    steps += 1\nprint(steps)")
    return number_output(r, program, steps)


def division(r: Random) -> Draft:
    a, b = r.randint(100, 9999), r.randint(3, 97)
    if r.random() < 0.5:
        q, rem = divmod(a, b)
        return text_output(r, f"a = {a}\nb = {b}\nq, r = divmod(a, b)\nprint(q, r)", f"{q} {rem}")
    c = r.randint(2, 9)
    return number_output(r, f"a = {a}\nb = {b}\nprint(a // b * {c} + a % b)", a // b * c + a % b)


def list_ops(r: Random) -> Draft:
    xs = [r.randint(1, 99) for _ in range(r.randint(5, 8))]
    v, k = r.randint(1, 99), r.randint(0, 3)
    ys = sorted(xs) + [v]
    ys.pop(0)
    program = f"xs = {xs}\nxs.sort()\nxs.append({v})\nxs.pop(0)\nprint(xs[{k}] + xs[-1])"
    return number_output(r, program, ys[k] + ys[-1])


def letter_counts(r: Random) -> Draft:
    w = pick(r, WORDS)
    c, k = pick(r, sorted(set(w))), r.randint(2, 9)
    program = (f'text = "{w}"\ncounts = {{}}\nfor ch in text:\n    counts[ch] = counts.get(ch, 0) + 1\n'
               f'print(counts["{c}"] * {k} + len(counts))')
    return number_output(r, program, w.count(c) * k + len(set(w)))


def recursion(r: Random) -> Draft:
    base, c, d, n = r.randint(1, 5), r.randint(2, 3), r.randint(-3, 5), r.randint(4, 10)
    value = base
    for _ in range(n - 1):
        value = c * value + d
    tail = f"+ {d}" if d >= 0 else f"- {-d}"
    program = (f"def f(n):\n    if n <= 1:\n        return {base}\n    return {c} * f(n - 1) {tail}\n\n\n"
               f"print(f({n}))")
    return number_output(r, program, value)


def fibonacci(r: Random) -> Draft:
    a0, b0, n = r.randint(0, 5), r.randint(1, 7), r.randint(8, 25)
    a, b = a0, b0
    for _ in range(n):
        a, b = b, a + b
    program = f"a, b = {a0}, {b0}\nfor _ in range({n}):\n    a, b = b, a + b\nprint(a)"
    return number_output(r, program, a)


def join_letters(r: Random) -> Draft:
    words = r.sample([w for w in WORDS if len(w) >= 6], r.randint(3, 6))
    i, sep = r.choice([0, 1, 2, -1, -2]), pick(r, ["", "-", ".", "+"])
    listed = "[" + ", ".join(f'"{w}"' for w in words) + "]"
    program = f'words = {listed}\nprint("{sep}".join(w[{i}] for w in words))'
    return text_output(r, program, sep.join(w[i] for w in words))


def comprehension(r: Random) -> Draft:
    a, k, m = r.randint(0, 10), r.randint(2, 7), r.randint(2, 5)
    b = a + r.randint(6, 20)
    program = f"print([x * {k} for x in range({a}, {b}) if x % {m} == 0])"
    return list_output(r, program, [x * k for x in range(a, b) if x % m == 0])


def nested_loops(r: Random) -> Draft:
    a, b, m = r.randint(3, 12), r.randint(3, 12), r.randint(2, 5)
    program = (f"count = 0\nfor i in range({a}):\n    for j in range({b}):\n        if (i + j) % {m} == 0:\n"
               "            count += 1\nprint(count)")
    return number_output(r, program, sum((i + j) % m == 0 for i in range(a) for j in range(b)))


def vowels_upper(r: Random) -> Draft:
    w = pick(r, WORDS)
    program = (f'out = ""\nfor ch in "{w}":\n    if ch in "aeiou":\n        out += ch.upper()\n    else:\n'
               "        out += ch\nprint(out)")
    return text_output(r, program, "".join(ch.upper() if ch in "aeiou" else ch for ch in w))


def digit_sum(r: Random) -> Draft:
    n0 = r.randint(10**5, 10**9)
    program = f"n = {n0}\ntotal = 0\nwhile n > 0:\n    total += n % 10\n    n //= 10\nprint(total)"
    return number_output(r, program, sum(int(ch) for ch in str(n0)))


TEMPLATES: list[Template] = [loop_sum, filtered_squares, slicing, collatz, division, list_ops, letter_counts,
                             recursion, fibonacci, join_letters, comprehension, nested_loops, vowels_upper,
                             digit_sum]
