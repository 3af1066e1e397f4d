"""Dates and calendars: the day of the week of a date, days between dates, a date N days away, leap
years, days in a month, the day of the year, ages. Computed with `datetime` (proleptic Gregorian)."""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from random import Random

from stackmind.tasks.answers import MONTHS, WEEKDAYS
from stackmind.tasks.goals.generators.base import NUMBER, Draft, Template, numeric, pick
from stackmind.tasks.goals.goal import Check

DAY_OF_WEEK = " Answer with the day of the week."
ISO = " Answer with the date as YYYY-MM-DD."
WEEKDAY_NAMES = tuple(w.capitalize() for w in WEEKDAYS)
MONTH_NAMES = tuple(m.capitalize() for m in MONTHS)


def a_date(r: Random, first: int = 1900, last: int = 2099) -> date:
    start, end = date(first, 1, 1), date(last, 12, 31)
    return start + timedelta(days=r.randint(0, (end - start).days))


def written(r: Random, d: date) -> str:
    """A date as people write it, in one of three forms."""
    month = MONTH_NAMES[d.month - 1]
    return pick(r, [f"{month} {d.day}, {d.year}", f"{d.day} {month} {d.year}", d.isoformat()])


def weekday(day: date) -> str:
    return WEEKDAY_NAMES[day.weekday()]


def choice(text: str, answer: str, options: tuple[str, ...]) -> Draft:
    return Draft(text, answer, Check("choice", options=options))


def day_of_week(r: Random) -> Draft:
    d = a_date(r)
    s = written(r, d)
    text = pick(r, [f"What day of the week is {s}?", f"On which day of the week does {s} fall?",
                    f"{s}: which weekday is that?", f"Which day of the week is {s}?"])
    return choice(text + DAY_OF_WEEK, weekday(d), WEEKDAY_NAMES)


def days_between(r: Random) -> Draft:
    d1 = a_date(r, 1950, 2080)
    d2 = d1 + timedelta(days=r.randint(20, 1500))
    s1, s2 = written(r, d1), written(r, d2)
    text = pick(r, [f"How many days after {s1} is {s2}?", f"If today is {s1}, in how many days will it be {s2}?",
                    f"How many days elapse from {s1} to {s2}?"])
    return numeric(text + NUMBER, (d2 - d1).days)


def shift(r: Random) -> Draft:
    d, n = a_date(r, 1950, 2080), r.randint(10, 1000)
    s = written(r, d)
    if r.random() < 0.6:
        text = pick(r, [f"What date is {n} days after {s}?", f"What is the date {n} days from {s}?"])
        target = d + timedelta(days=n)
    else:
        text = pick(r, [f"What date was {n} days before {s}?", f"Which date comes {n} days earlier than {s}?"])
        target = d - timedelta(days=n)
    return Draft(text + ISO, target.isoformat(), Check("date"))


def is_leap(r: Random) -> Draft:
    year = r.choice([r.randint(16, 24) * 100, r.randint(400, 600) * 4, r.randint(1600, 2400)])
    text = pick(r, [f"Is {year} a leap year?", f"Is the year {year} a leap year in the Gregorian calendar?",
                    f"In the Gregorian calendar, does the year {year} have a February 29th?"])
    return choice(text + " Answer yes or no.", "yes" if calendar.isleap(year) else "no", ("yes", "no"))


def count_leap(r: Random) -> Draft:
    a = r.randint(1500, 2300)
    b = a + r.randint(30, 400)
    text = pick(r, [f"How many leap years are there from {a} to {b}, inclusive?",
                    f"Counting both {a} and {b}, how many Gregorian leap years lie between them?"])
    return numeric(text + NUMBER, calendar.leapdays(a, b + 1))


def days_in_month(r: Random) -> Draft:
    year = r.choice([r.randint(1600, 2400), r.randint(16, 24) * 100])
    month = 2 if r.random() < 0.5 else r.randint(1, 12)
    name = MONTH_NAMES[month - 1]
    text = pick(r, [f"How many days are in {name} {year}?", f"How many days does {name} of the year {year} have?"])
    return numeric(text + NUMBER, calendar.monthrange(year, month)[1])


def weekday_later(r: Random) -> Draft:
    start, n = r.randrange(7), r.randint(10, 1000)
    today = WEEKDAY_NAMES[start]
    text = pick(r, [f"Today is {today}. What day of the week will it be in {n} days?",
                    f"If it is {today} now, which day of the week is it {n} days later?"])
    return choice(text + DAY_OF_WEEK, WEEKDAY_NAMES[(start + n) % 7], WEEKDAY_NAMES)


def month_later(r: Random) -> Draft:
    d, n = a_date(r, 1950, 2080), r.randint(20, 300)
    text = pick(r, [f"Which month is it {n} days after {written(r, d)}?",
                    f"Counting {n} days forward from {written(r, d)}, which month do you land in?"])
    return choice(text + " Answer with the name of the month.", MONTH_NAMES[(d + timedelta(days=n)).month - 1],
                  MONTH_NAMES)


def day_of_year(r: Random) -> Draft:
    d = a_date(r)
    s = written(r, d)
    text = pick(r, [f"What day of the year is {s}, counting January 1 as day 1?",
                    f"{s} is which day of its year (January 1 is day 1)?"])
    return numeric(text + NUMBER, d.timetuple().tm_yday)


def age(r: Random) -> Draft:
    born = a_date(r, 1920, 2015)
    if (born.month, born.day) == (2, 29):
        born += timedelta(days=1)  # no arguing over when a leap-day baby turns a year older
    on = born + timedelta(days=r.randint(400, 80 * 365))
    years = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    text = pick(r, [f"Someone was born on {written(r, born)}. How old are they, in whole years, on {written(r, on)}?",
                    f"A person born {written(r, born)} has how many full years of age on {written(r, on)}?"])
    return numeric(text + NUMBER, years)


TEMPLATES: list[Template] = [day_of_week, days_between, shift, is_leap, count_leap, days_in_month, weekday_later,
                             month_later, day_of_year, age]
