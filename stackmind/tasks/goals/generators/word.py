"""Multi-step word problems from templates: shopping and change, travel, ages, sharing, unit prices,
rates, savings and discounts. Money is drawn in cents and computed exactly."""

from __future__ import annotations

from fractions import Fraction
from random import Random

from stackmind.tasks.goals.generators.base import NUMBER, Draft, Template, numeric, pick

NAMES = ("Maria", "Tom", "Aisha", "Kenji", "Lena", "Omar", "Priya", "Jonas", "Sofia", "Diego", "Mei", "Noah",
         "Fatima", "Liam", "Zara", "Ivan", "Chloe", "Ravi", "Hana", "Leo")
ITEMS = (("notebook", "notebooks"), ("pen", "pens"), ("apple", "apples"), ("sandwich", "sandwiches"),
         ("ticket", "tickets"), ("candle", "candles"), ("mug", "mugs"), ("comic", "comics"),
         ("battery", "batteries"), ("plant", "plants"))
THINGS = ("marbles", "stickers", "cookies", "cards", "stamps", "beads", "coins", "pencils")


def money(cents: int) -> str:
    return f"${cents // 100}.{cents % 100:02d}" if cents % 100 else f"${cents // 100}"


def dollars(cents: int) -> Fraction:
    return Fraction(cents, 100)


def shopping(r: Random) -> Draft:
    name = pick(r, NAMES)
    (one1, many1), (one2, many2) = r.sample(ITEMS, 2)
    n1, n2 = r.randint(2, 6), r.randint(2, 6)
    p1, p2 = r.randint(3, 40) * 25, r.randint(3, 40) * 25
    total = n1 * p1 + n2 * p2
    bill = next(b for b in (2000, 5000, 10000, 20000) if b > total)  # total <= $120
    text = pick(r, [
        f"{name} buys {n1} {many1} at {money(p1)} each and {n2} {many2} at {money(p2)} each, and pays with "
        f"a {money(bill)} bill. How much change does {name} get, in dollars?",
        f"At a shop, one {one1} costs {money(p1)} and one {one2} costs {money(p2)}. {name} takes {n1} {many1} "
        f"and {n2} {many2} and hands over {money(bill)}. What change, in dollars, should {name} receive?",
    ])
    return numeric(text + NUMBER, dollars(bill - total))


def travel(r: Random) -> Draft:
    vehicle = pick(r, ["car", "train", "bus", "cyclist", "truck"])
    v1, v2 = r.randint(8, 30) * 5, r.randint(8, 30) * 5
    t1, t2 = Fraction(r.randint(2, 10), 2), Fraction(r.randint(2, 10), 2)
    h1, h2 = f"{float(t1):g}", f"{float(t2):g}"
    text = pick(r, [
        f"A {vehicle} travels at {v1} km/h for {h1} hours and then at {v2} km/h for {h2} hours. "
        "How many kilometres does it travel in total?",
        f"For the first {h1} hours of a trip a {vehicle} keeps to {v1} km/h; for the next {h2} hours it "
        f"goes {v2} km/h. What distance, in km, does it cover?",
    ])
    return numeric(text + NUMBER, v1 * t1 + v2 * t2)


def ages(r: Random) -> Draft:
    a, b = r.sample(NAMES, 2)
    young = r.randint(4, 20)
    if r.random() < 0.5:
        k, later = r.randint(2, 4), r.randint(3, 15)
        text = pick(r, [
            f"{a} is {young} years old. {b} is {k} times as old as {a}. How old will {b} be in {later} years?",
            f"{b}'s age is {k} times {a}'s, and {a} is {young}. What will {b}'s age be {later} years from now?",
        ])
        return numeric(text + NUMBER, young * k + later)
    gap = r.randint(2, 15)
    total = 2 * young + gap
    text = pick(r, [
        f"{a} is {gap} years older than {b}. Together their ages add up to {total}. How old is {a}?",
        f"The sum of the ages of {a} and {b} is {total}, and {b} is {gap} years younger than {a}. "
        f"What is {a}'s age?",
    ])
    return numeric(text + NUMBER, young + gap)


def sharing(r: Random) -> Draft:
    name, things = pick(r, NAMES), pick(r, THINGS)
    friends, each, keep = r.randint(3, 12), r.randint(4, 40), r.randint(3, 30)
    total = friends * each + keep
    text = pick(r, [
        f"{name} has {total} {things}, keeps {keep} and shares the rest equally among {friends} friends. "
        f"How many {things} does each friend get?",
        f"There are {total} {things}. After {name} sets {keep} aside, the others are split evenly between "
        f"{friends} children. How many {things} does each child receive?",
    ])
    return numeric(text + NUMBER, each)


def boxes(r: Random) -> Draft:
    things, size = pick(r, THINGS), r.randint(6, 24)
    total = r.randint(50, 900)
    text = pick(r, [
        f"{total} {things} are packed into boxes that hold {size} each. How many boxes are needed to pack "
        "them all?",
        f"A box holds {size} {things}. What is the smallest number of boxes that can hold {total} {things}?",
    ])
    return numeric(text + NUMBER, -(-total // size))


def unit_price(r: Random) -> Draft:
    one, many = pick(r, ITEMS)
    unit = r.randint(5, 120) * 5  # cents
    n, m = r.randint(3, 12), r.randint(5, 40)
    text = pick(r, [
        f"A pack of {n} {many} costs {money(unit * n)}. At the same price per {one}, how much do {m} {many} "
        "cost, in dollars?",
        f"{n} {many} sell for {money(unit * n)} in all. What would {m} {many} cost at that unit price, in dollars?",
    ])
    return numeric(text + NUMBER, dollars(unit * m))


def rates(r: Random) -> Draft:
    if r.random() < 0.5:
        a, b, t = r.randint(2, 15), r.randint(2, 15), r.randint(4, 60)
        text = pick(r, [
            f"Pipe A fills a tank at {a} litres per minute and pipe B at {b} litres per minute. Working "
            f"together, how many minutes do they take to fill a {(a + b) * t}-litre tank?",
            f"One hose delivers {a} litres a minute, another {b} litres a minute. With both running, how "
            f"long, in minutes, does it take to put {(a + b) * t} litres into a pool?",
        ])
        return numeric(text + NUMBER, t)
    rate, hours = r.randint(12, 90), r.randint(3, 12)
    made = rate * hours
    extra = r.randint(1, 5)
    text = pick(r, [
        f"A machine makes {rate} parts per hour. It runs for {hours} hours, then {extra} more machines like it "
        f"join for another {hours} hours. How many parts are made in all?",
        f"A baker produces {rate} rolls an hour. She works {hours} hours alone, then {extra} helpers who each "
        f"work at her rate join her for {hours} more hours. How many rolls are baked altogether?",
    ])
    return numeric(text + NUMBER, made + (1 + extra) * made)


def savings(r: Random) -> Draft:
    name = pick(r, NAMES)
    saved, weekly = r.randint(0, 40) * 5, r.randint(3, 30) * 5
    target = saved + r.randint(50, 600)
    text = pick(r, [
        f"{name} has saved ${saved} and puts away ${weekly} every week. After how many weeks will {name} "
        f"have at least ${target}?",
        f"{name} wants a bike that costs ${target}. {name} already has ${saved} and saves ${weekly} a week. "
        "How many weeks must pass before the bike is affordable?",
    ])
    return numeric(text + NUMBER, -(-(target - saved) // weekly))


def discount(r: Random) -> Draft:
    name, (one, many) = pick(r, NAMES), pick(r, ITEMS)
    price, off, k = r.randint(8, 250), r.randint(1, 14) * 5, r.randint(2, 6)
    text = pick(r, [
        f"A {one} costs ${price}. It is on sale for {off}% off. {name} buys {k} of them. How much does "
        f"{name} pay in total, in dollars?",
        f"{name} buys {k} {many} that normally cost ${price} each, with a {off}% discount on each. What is "
        "the total, in dollars?",
    ])
    return numeric(text + NUMBER, Fraction(price * (100 - off) * k, 100))


def wages(r: Random) -> Draft:
    name = pick(r, NAMES)
    hours, days, wage = r.randint(3, 9), r.randint(3, 6), r.randint(9, 35)
    earned = hours * days * wage
    spent = r.randint(10, earned - 10)
    text = pick(r, [
        f"{name} works {hours} hours a day for {days} days at ${wage} an hour and then spends ${spent}. How "
        "many dollars are left?",
        f"Paid ${wage} per hour, {name} works {hours}-hour shifts on {days} days. After spending ${spent}, "
        f"how much of the pay, in dollars, does {name} still have?",
    ])
    return numeric(text + NUMBER, earned - spent)


TEMPLATES: list[Template] = [shopping, travel, ages, sharing, boxes, unit_price, rates, savings, discount, wages]
