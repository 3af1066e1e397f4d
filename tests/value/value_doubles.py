"""A deterministic Game-of-24 backend for value tests: proposes every verified step, judges by rule.

Judgements are "sure" when 24 can still be made (exact) and "impossible" otherwise, or, with
``wrong=True``, the reverse (a judge that is confidently wrong, so its RPEs are large).
"""

from __future__ import annotations

import re
from fractions import Fraction

from stackmind.llm.base import Completion, Request
from stackmind.tasks.game24 import fmt
from stackmind.value.game24_states import solvable


def _numbers(prompt: str) -> list[Fraction]:
    line = re.findall(r"Numbers: ([^\n]*)\n", prompt)[-1]
    return [Fraction(x) for x in line.split()]


class Game24Rules:
    name = "double:game24-rules"

    def __init__(self, *, wrong: bool = False) -> None:
        self.wrong = wrong

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, request: Request) -> list[Completion]:
        out = []
        for p in request.prompts:
            assert isinstance(p, str)
            nums = _numbers(p)
            if "Next steps:" in p.rsplit("Numbers:", 1)[-1]:
                lines = []
                for i in range(len(nums)):
                    for j in range(i + 1, len(nums)):
                        a, b = max(nums[i], nums[j]), min(nums[i], nums[j])
                        rest = [n for k, n in enumerate(nums) if k not in (i, j)]
                        for op, r in (("+", a + b), ("*", a * b), ("-", a - b)) + ((("/", a / b),) if b else ()):
                            left = " ".join(fmt(x) for x in sorted(rest + [r]))
                            lines.append(f"{fmt(a)} {op} {fmt(b)} = {fmt(r)} (left: {left})")
                texts = ["\n".join(lines)] * request.n
            else:
                good = solvable(nums) != self.wrong
                texts = ["Verdict: " + ("sure" if good else "impossible")] * request.n
            out.append(Completion(texts, self.count_tokens(p), sum(self.count_tokens(t) for t in texts)))
        return out
