"""Small data questions about a list: sum, mean, median, range, counts above a threshold, the k-th
smallest or largest, frequencies, the mode, sorting, sums of the even numbers, products."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from random import Random

from stackmind.tasks.goals.generators.base import NUMBER, Draft, Template, numeric, ordinal, pick
from stackmind.tasks.goals.goal import Check

ROUND2 = " Round to 2 decimal places. Answer with the number."
ANIMALS = ("cat", "dog", "owl", "fox", "bee", "elk", "yak", "emu")


def numbers(r: Random, low: int = 1, high: int = 999, size: tuple[int, int] = (7, 12)) -> list[int]:
    return [r.randint(low, high) for _ in range(r.randint(*size))]


def shown(r: Random, xs: list[int] | list[str]) -> str:
    """A list as people write it: in brackets, with commas, or with spaces."""
    items = [str(x) for x in xs]
    return pick(r, ["[" + ", ".join(items) + "]", ", ".join(items), " ".join(items)])


def total(r: Random) -> Draft:
    xs = numbers(r)
    text = pick(r, [f"What is the sum of the numbers {shown(r, xs)}?", f"Add up this list: {shown(r, xs)}.",
                    f"Here is a list: {shown(r, xs)}. What is its total?"])
    return numeric(text + NUMBER, sum(xs))


def mean(r: Random) -> Draft:
    xs = numbers(r, 1, 200)
    text = pick(r, [f"What is the mean of {shown(r, xs)}?", f"Find the average of the numbers {shown(r, xs)}.",
                    f"Compute the arithmetic mean of this list: {shown(r, xs)}."])
    return numeric(text + ROUND2, Fraction(sum(xs), len(xs)), places=2, tolerance=0.01)


def median(r: Random) -> Draft:
    xs = numbers(r, 1, 500, (5, 11))
    s, n = sorted(xs), len(xs)
    value = Fraction(s[n // 2]) if n % 2 else Fraction(s[n // 2 - 1] + s[n // 2], 2)
    text = pick(r, [f"What is the median of {shown(r, xs)}?", f"Find the median of the list {shown(r, xs)}.",
                    f"Here are some numbers: {shown(r, xs)}. What is their median?"])
    return numeric(text + NUMBER, value)


def spread(r: Random) -> Draft:
    xs = numbers(r, -200, 999)
    text = pick(r, [f"What is the difference between the largest and the smallest number in {shown(r, xs)}?",
                    f"What is the range (maximum minus minimum) of {shown(r, xs)}?"])
    return numeric(text + NUMBER, max(xs) - min(xs))


def above(r: Random) -> Draft:
    xs = numbers(r, 1, 100, (8, 15))
    t = r.randint(20, 80)
    text = pick(r, [f"How many numbers in {shown(r, xs)} are greater than {t}?",
                    f"Count the entries of the list {shown(r, xs)} that exceed {t}.",
                    f"In the list {shown(r, xs)}, how many values are strictly above {t}?"])
    return numeric(text + NUMBER, sum(x > t for x in xs))


def kth(r: Random) -> Draft:
    xs = r.sample(range(1, 1000), r.randint(7, 12))
    k = r.randint(2, 4)
    if r.random() < 0.5:
        text = pick(r, [f"What is the {ordinal(k)} smallest number in {shown(r, xs)}?",
                        f"Sort {shown(r, xs)} from smallest to largest. Which number is {ordinal(k)}?"])
        return numeric(text + NUMBER, sorted(xs)[k - 1])
    text = pick(r, [f"What is the {ordinal(k)} largest number in {shown(r, xs)}?",
                    f"Sort {shown(r, xs)} from largest to smallest. Which number is {ordinal(k)}?"])
    return numeric(text + NUMBER, sorted(xs, reverse=True)[k - 1])


def frequency(r: Random) -> Draft:
    if r.random() < 0.5:
        xs = numbers(r, 1, 9, (10, 18))
        x = pick(r, [str(v) for v in xs])
        text = pick(r, [f"How many times does {x} appear in {shown(r, xs)}?",
                        f"Count how often the number {x} occurs in the list {shown(r, xs)}."])
        return numeric(text + NUMBER, xs.count(int(x)))
    words = [pick(r, ANIMALS[:5]) for _ in range(r.randint(8, 14))]
    w = pick(r, words)
    text = pick(r, [f"In the list {', '.join(words)}, how many times does '{w}' appear?",
                    f"How often does the word '{w}' occur in: {' '.join(words)}?"])
    return numeric(text + NUMBER, words.count(w))


def mode(r: Random) -> Draft:
    while True:
        xs = numbers(r, 1, 15, (9, 14))
        (top, k), *rest = Counter(xs).most_common()
        if not rest or rest[0][1] < k:
            break
    text = pick(r, [f"Which number appears most often in {shown(r, xs)}?",
                    f"What is the mode of the list {shown(r, xs)}?"])
    return numeric(text + NUMBER, top)


def sort_list(r: Random) -> Draft:
    xs = numbers(r, -50, 300, (6, 10))
    descending = r.random() < 0.4
    order = "largest to smallest" if descending else "smallest to largest"
    text = pick(r, [f"Sort {shown(r, xs)} from {order}.", f"Put these numbers in order from {order}: {shown(r, xs)}."])
    answer = ", ".join(str(x) for x in sorted(xs, reverse=descending))
    return Draft(text + " Answer with the numbers separated by commas.", answer, Check("list"))


def even_sum(r: Random) -> Draft:
    xs = numbers(r, 1, 500, (8, 14))
    if r.random() < 0.5:
        text = pick(r, [f"What is the sum of the even numbers in {shown(r, xs)}?",
                        f"Add up only the even entries of {shown(r, xs)}."])
        return numeric(text + NUMBER, sum(x for x in xs if x % 2 == 0))
    text = pick(r, [f"How many odd numbers are there in {shown(r, xs)}?",
                    f"Count the odd values in the list {shown(r, xs)}."])
    return numeric(text + NUMBER, sum(x % 2 for x in xs))


def product(r: Random) -> Draft:
    xs = numbers(r, 2, 40, (4, 6))
    text = pick(r, [f"What is the product of the numbers {shown(r, xs)}?",
                    f"Multiply together all the numbers in {shown(r, xs)}."])
    value = 1
    for x in xs:
        value *= x
    return numeric(text + NUMBER, value)


TEMPLATES: list[Template] = [total, mean, median, spread, above, kth, frequency, mode, sort_list, even_sum, product]
