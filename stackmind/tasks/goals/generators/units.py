"""Unit conversions with exact factors (1 mile = 1.609344 km, 1 lb = 0.45359237 kg, 1 US gallon =
3.785411784 L, 1 inch = 2.54 cm, 1 foot = 0.3048 m, 1 oz = 28.349523125 g), temperatures, time and
bytes. A rounded answer says its places in the goal; its tolerance is one unit in the last place."""

from __future__ import annotations

from fractions import Fraction as F
from random import Random

from stackmind.tasks.goals.generators.base import NUMBER, Draft, Template, numeric, pick, plural

MILE_KM = F("1.609344")
LB_KG = F("0.45359237")
GALLON_L = F("3.785411784")
INCH_CM = F("2.54")
FOOT_M = F("0.3048")
OUNCE_G = F("28.349523125")
KMH_MS = F(1000, 3600)

# (unit, its name in a sentence, how many of the base unit one of it is)
PAIRS = (
    (("km", "kilometres", 1), ("miles", "miles", MILE_KM)),
    (("kg", "kilograms", 1), ("lb", "pounds", LB_KG)),
    (("litres", "litres", 1), ("US gallons", "US gallons", GALLON_L)),
    (("cm", "centimetres", 1), ("inches", "inches", INCH_CM)),
    (("metres", "metres", 1), ("feet", "feet", FOOT_M)),
    (("grams", "grams", 1), ("ounces", "ounces", OUNCE_G)),
    (("m/s", "metres per second", 1), ("km/h", "kilometres per hour", KMH_MS)),
)


def rounding(places: int) -> str:
    return f" Round to {places} decimal place{'s' if places > 1 else ''}. Answer with the number."


def amount(r: Random) -> F:
    return F(r.randint(1, 5000), 10) if r.random() < 0.4 else F(r.randint(1, 500))


def show(x: F) -> str:
    return f"{float(x):g}"


def convert(r: Random) -> Draft:
    a, b = pick(r, PAIRS)
    src, dst = (a, b) if r.random() < 0.5 else (b, a)
    x = amount(r)
    value = x * src[2] / dst[2]
    text = pick(r, [f"Convert {show(x)} {src[0]} to {dst[1]}.", f"How many {dst[1]} are {show(x)} {src[1]}?",
                    f"{show(x)} {src[1]} is how many {dst[1]}?"])
    return numeric(text + rounding(2), value, places=2, tolerance=0.01)


def temperature(r: Random) -> Draft:
    if r.random() < 0.5:
        c = r.randint(-40, 200)
        text = pick(r, [f"Convert {c} °C to degrees Fahrenheit.", f"What is {c} degrees Celsius in Fahrenheit?"])
        return numeric(text + rounding(1), F(c) * 9 / 5 + 32, places=1, tolerance=0.1)
    f = r.randint(-40, 400)
    text = pick(r, [f"Convert {f} °F to degrees Celsius.", f"What is {f} degrees Fahrenheit in Celsius?"])
    return numeric(text + rounding(1), (F(f) - 32) * 5 / 9, places=1, tolerance=0.1)


def clock(r: Random) -> Draft:
    kind = r.randrange(3)
    if kind == 0:
        h, m, s = r.randint(1, 23), r.randint(1, 59), r.randint(1, 59)
        text = pick(r, [f"How many seconds are in {plural(h, 'hour')}, {plural(m, 'minute')} and {plural(s, 'second')}?",
                        f"Express {h} h {m} min {s} s in seconds."])
        return numeric(text + NUMBER, h * 3600 + m * 60 + s)
    if kind == 1:
        minutes = r.randint(61, 5000)
        text = pick(r, [f"How many hours are {minutes} minutes?", f"Convert {minutes} minutes to hours."])
        return numeric(text + rounding(2), F(minutes, 60), places=2, tolerance=0.01)
    days = r.randint(2, 60)
    text = pick(r, [f"How many minutes are in {days} days?", f"How many seconds are there in {days} days?"])
    per_day = 1440 if "minutes" in text else 86400
    return numeric(text + NUMBER, days * per_day)


def storage(r: Random) -> Draft:
    kind = r.randrange(4)
    if kind == 0:
        n = r.randint(2, 900)
        unit, size = pick(r, [("KiB", 1024), ("MiB", 1024**2), ("GiB", 1024**3)])
        text = f"How many bytes are in {n} {unit} (1 {unit} = {size:,} bytes)?"
        return numeric(text + NUMBER, n * size)
    if kind == 1:
        b = r.randint(10**6, 10**10)
        text = f"How many MiB is {b:,} bytes (1 MiB = 1,048,576 bytes)?"
        return numeric(text + rounding(2), F(b, 1024**2), places=2, tolerance=0.01)
    if kind == 2:
        n = r.randint(2, 5000)
        text = pick(r, [f"How many bits are in {n} kilobytes (1 kB = 1000 bytes, 1 byte = 8 bits)?",
                        f"{n} kB is how many bits, taking 1 kB = 1000 bytes?"])
        return numeric(text + NUMBER, n * 8000)
    gb = r.randint(1, 4000)
    text = f"A disk holds {gb} GB (1 GB = 10^9 bytes). How many GiB is that (1 GiB = 2^30 bytes)?"
    return numeric(text + rounding(2), F(gb * 10**9, 2**30), places=2, tolerance=0.01)


# Drawn in turn: length, mass, volume and speed conversions come up three times as often as bytes.
TEMPLATES: list[Template] = [convert, temperature, clock, convert, storage, clock, convert, temperature]
