"""A deterministic test double for search logic: a Backend that plays the Game of 24 by rule.

Proposals list the steps that combine the numbers left (exact), plus one step with wrong arithmetic
and one with a number that is not there, which the verifier must discard. Judgements say "sure" when
the numbers can still make 24 (exhaustive check) and "impossible" otherwise; ``noisy`` flips some.
"""

from __future__ import annotations

import itertools
import re
from fractions import Fraction

from stackmind.llm.base import Completion, Request
from stackmind.tasks.game24 import combine, fmt


def solvable(nums: list[Fraction]) -> bool:
    if len(nums) == 1:
        return nums[0] == 24
    for i, j in itertools.permutations(range(len(nums)), 2):
        rest = [n for k, n in enumerate(nums) if k not in (i, j)]
        for op in "+-*/":
            r = combine(nums[i], op, nums[j])
            if r is not None and solvable(rest + [r]):
                return True
    return False


def _numbers(prompt: str) -> list[Fraction]:
    line = re.findall(r"Numbers: ([^\n]*)\n", prompt)[-1]
    return [Fraction(x) for x in line.split()]


class Game24Double:
    name = "double:game24"

    def __init__(self, *, max_steps: int = 30, noisy: bool = False) -> None:
        self.max_steps = max_steps
        self.noisy = noisy
        self.requests: list[Request] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def propose(self, nums: list[Fraction]) -> str:
        lines = []
        for i, j in itertools.combinations(range(len(nums)), 2):
            a, b = max(nums[i], nums[j]), min(nums[i], nums[j])
            rest = [n for k, n in enumerate(nums) if k not in (i, j)]
            for op in "+*-/":
                r = combine(a, op, b)
                if r is None:
                    continue
                left = " ".join(fmt(x) for x in sorted(rest + [r]))
                lines.append(f"{fmt(a)} {op} {fmt(b)} = {fmt(r)} (left: {left})")
        # Two bad lines the verifier must drop.
        lines.insert(1, f"{fmt(nums[0])} + {fmt(nums[-1])} = 1000 (left: 1000)")
        lines.insert(2, "97 * 2 = 194 (left: 194)")
        return "\n".join(lines[: self.max_steps + 2])

    def judge(self, nums: list[Fraction], k: int) -> str:
        good = solvable(nums)
        if self.noisy and k == 0:
            good = not good
        return "quick check\nVerdict: " + ("sure" if good else "impossible")

    def generate(self, request: Request) -> list[Completion]:
        self.requests.append(request)
        out = []
        for p in request.prompts:
            assert isinstance(p, str)
            if "Numbers:" not in p:  # anything else (e.g. a throughput probe): count on
                out.append(Completion(["4 5 6 7"] * request.n, self.count_tokens(p), 4 * request.n))
                continue
            nums = _numbers(p)
            if "Next steps:" in p.rsplit("Numbers:", 1)[-1]:
                texts = [self.propose(nums) for _ in range(request.n)]
            else:
                texts = [self.judge(nums, k) for k in range(request.n)]
            out.append(Completion(texts, self.count_tokens(p), sum(self.count_tokens(t) for t in texts)))
        return out
