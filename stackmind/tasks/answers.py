"""Reading an answer the way a person would: the one place where stackmind normalises answers.

A model rarely writes a bare ``391``. It writes ``Final answer: 391``, ``The answer is **391**.``,
``17 * 23 = 391``, ``$1,234.50`` or ``"olleh"``. Verifiers read such text in two stages:

1. `answer_span` finds the part of a reply that states the answer: the content of the last
   ``\\boxed{...}``; else the first non-empty line after the last answer marker of the strongest kind
   present ("Final answer:"; "####"; "the answer is", "Answer:"; "the output is", "prints"); else the
   last non-empty line. Then `clean` strips markdown (``**``, backticks), wrapping quotes and a
   trailing period.
2. A reader turns the span into a value: `normalize_number` (one number, exact), `normalize_text`
   (case and spaces), `parse_dates` (ISO or month-name dates), `split_list` (items of a list).

Leniency stops where a wrong answer could pass: `normalize_number` reads the right-hand side of the
span's last ``=`` and insists that it states one value (``391``, ``391 apples``, ``$391.00``). A span
with several different numbers (``12, 15, 391`` or ``5 hours 30 minutes``) has no value, so listing
candidates never passes a numeric check because one of them is right.

Numbers are `fractions.Fraction`, exact: products of large numbers (18 digits and more) compare
without float rounding. ``float(x)`` gives a float where one is wanted.

(`stackmind.learning.trials` has an older float ``last_number``; this module's `last_number` is
meant to replace it.)
"""

from __future__ import annotations

import re
from datetime import date
from fractions import Fraction

# ---- finding the answer in a reply -------------------------------------------------------------

_BOXED = re.compile(r"\\boxed\s*\{([^{}]*)\}")
# Answer markers, strongest first: the last marker of the strongest kind present starts the span, so
# "Final answer: 18. I hope this answer is clear." reads 18.
_MARKERS = (
    re.compile(r"(?i)final\s+answer\s*(?:is\s*)?[:=]?"),
    re.compile(r"####"),
    re.compile(r"(?i)answer\s+is\s*:?|answer\s*[:=]"),
    re.compile(r"(?i)(?:output|result)\s+is\s*:?|output\s*:|\bprints\s*:?"),
)
_WRAPPERS = ("**", "__", "```", "`", '"', "'", "“", "”", "‘", "’", "*")
_QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "`": "`"}


def answer_span(text: str | None) -> str:
    """The part of a reply that states its answer, cleaned (see the module's docstring)."""
    if not text:
        return ""
    boxed = _BOXED.findall(text)
    if boxed:
        return clean(boxed[-1])
    for marker in _MARKERS:
        found = list(marker.finditer(text))
        if found:
            lines = [ln for ln in text[found[-1].end():].splitlines() if clean(ln)]
            return clean(lines[0]) if lines else ""
    lines = [ln for ln in text.splitlines() if clean(ln)]
    return clean(lines[-1]) if lines else ""


def clean(text: str) -> str:
    """Strip markdown emphasis and code marks, wrapping quotes, spaces and a trailing period."""
    text = text.replace("**", "").replace("```", "").strip()
    text = re.sub(r"^(?:[-*>•]\s+|#+\s+)", "", text)  # a list bullet, a quote mark or a heading
    while True:
        before = text
        text = text.strip().rstrip(".!").strip()
        for w in _WRAPPERS:
            if len(text) >= 2 * len(w) and text.startswith(w) and text.endswith(_QUOTE_PAIRS.get(w, w)):
                text = text[len(w):len(text) - len(w)]
        if text.startswith("$") and text.endswith("$") and len(text) > 2 and "$" not in text[1:-1]:
            text = text[1:-1]  # inline LaTeX: $391$ (a price, $3.50, has no closing $)
        if text == before:
            return text


def trailing_quoted(text: str) -> str | None:
    """The quoted string a span ends with (``Reversed, it is "olleh"`` -> ``olleh``), if it ends so."""
    text = text.strip().rstrip(".!").rstrip()
    if not text:
        return None
    closing = text[-1]
    for opening, close in _QUOTE_PAIRS.items():
        if close == closing:
            start = text.rfind(opening, 0, len(text) - 1)
            if start >= 0 and start < len(text) - 2:
                return text[start + 1:-1]
    return None


# ---- numbers -----------------------------------------------------------------------------------

# A number: optional sign, digits with optional thousands commas, decimals, a fraction or an
# exponent. Not the digits inside a word ("x2") or after a decimal point.
_NUMBER = re.compile(
    r"(?<![\w.])[-−]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+(?![.\d]))?(?:[eE][-+]?\d+)?"
)


def parse_number(token: str) -> Fraction | None:
    """One number token as an exact fraction: ``1,234.50``, ``-3/4``, ``−40``, ``1.5e3``; else None."""
    t = token.strip().replace("−", "-").replace(",", "").replace(" ", "")
    try:
        if "/" in t:
            num, den = t.split("/", 1)
            return Fraction(Fraction(num), Fraction(den))
        return Fraction(t)
    except (ValueError, ZeroDivisionError):
        return None


def numbers_in(text: str) -> list[Fraction]:
    """Every number in a text, in order (currency signs, units and percent signs are ignored)."""
    out = []
    for m in _NUMBER.finditer(text):
        value = parse_number(m.group(0))
        if value is not None:
            out.append(value)
    return out


def last_number(text: str | None) -> Fraction | None:
    """The last number in a text (``Final answer: 32.40 dollars`` -> 32.4), or None."""
    found = numbers_in(text or "")
    return found[-1] if found else None


def normalize_number(text: str | None) -> Fraction | None:
    """The one number an answer states, exactly; None when it states none or several.

    The answer's span (`answer_span`), then the right-hand side of its last ``=``; every number in
    that must be the same value. ``The answer is $1,234.50.`` -> 2469/2; ``17 * 23 = 391`` -> 391;
    ``12, 15, 391`` -> None.
    """
    span = answer_span(text)
    if "=" in span:
        span = span.rsplit("=", 1)[1]
    values = set(numbers_in(span))
    return values.pop() if len(values) == 1 else None


def format_number(value: Fraction | int | float, places: int | None = None) -> str:
    """A canonical text for a number: ``391``, ``12.5``, ``-0.75``; ``places`` rounds half up."""
    x = Fraction(value)
    if places is not None:
        scale = 10 ** places
        x = Fraction((abs(x) * scale * 2 + 1) // 2 * (1 if x >= 0 else -1), scale)
    if x.denominator == 1:
        return str(x.numerator)
    sign = "-" if x < 0 else ""
    x = abs(x)
    whole, rest = divmod(x.numerator, x.denominator)
    digits = []
    for _ in range(places if places is not None else 12):
        rest *= 10
        d, rest = divmod(rest, x.denominator)
        digits.append(str(d))
        if rest == 0:
            break
    return f"{sign}{whole}.{''.join(digits).rstrip('0') or '0'}"


# ---- text --------------------------------------------------------------------------------------

def normalize_text(text: str | None, case_sensitive: bool = False) -> str:
    """A text for comparison: cleaned (`clean`), spaces collapsed, case folded unless asked not to."""
    out = " ".join(clean(text or "").split())
    return out if case_sensitive else out.casefold()


def words(text: str) -> list[str]:
    """The lower-case words of a text (letters only)."""
    return re.findall(r"[a-z]+", text.casefold())


# ---- dates -------------------------------------------------------------------------------------

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTH = r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_DATE_FORMS = (
    (re.compile(r"(?<!\d)(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?!\d)"), ("y", "m", "d")),
    (re.compile(rf"(?i)\b{_MONTH}\s+{_DAY},?\s+(\d{{4}})\b"), ("M", "d", "y")),
    (re.compile(rf"(?i)(?<!\d){_DAY}\s+(?:of\s+)?{_MONTH},?\s+(\d{{4}})\b"), ("d", "M", "y")),
)


def _month_number(name: str) -> int:
    name = name.casefold().rstrip(".")
    return next(i + 1 for i, m in enumerate(MONTHS) if m.startswith(name[:3]))


def parse_dates(text: str) -> list[date]:
    """Every valid date a text names: ``2024-03-15``, ``2024/3/15``, ``March 15, 2024``, ``15th of March 2024``.

    Day-first or month-first numeric forms (``03/04/2024``) are ambiguous and not read.
    """
    found: list[tuple[int, date]] = []
    for pattern, order in _DATE_FORMS:
        for m in pattern.finditer(text):
            parts = dict(zip(order, m.groups(), strict=True))
            month = _month_number(parts["M"]) if "M" in parts else int(parts["m"])
            try:
                found.append((m.start(), date(int(parts["y"]), month, int(parts["d"]))))
            except ValueError:
                continue
    return [d for _, d in sorted(found)]


# ---- lists -------------------------------------------------------------------------------------

def split_list(text: str) -> list[str]:
    """The items of a list: ``[3, 5, 8]``, ``3, 5 and 8``, ``3; 5; 8`` or ``3 5 8`` -> ['3', '5', '8']."""
    text = clean(text)
    if len(text) >= 2 and text[0] + text[-1] in ("[]", "()", "{}"):
        text = text[1:-1]
    text = re.sub(r"(?i),?\s+and\s+", ",", text)
    parts = re.split(r"[,;]", text) if re.search(r"[,;]", text) else text.split()
    return [clean(p) for p in parts if clean(p)]


def answer_key(text: str | None) -> str | None:
    """What an answer says, as a key: answers that say the same thing (``391``, ``391.0``, ``$391``,
    ``Final answer: 391.``) have one key, so several sampled answers can be counted as votes."""
    span = clean(answer_span(text))
    if not span:
        return None
    value = normalize_number(span)
    if value is not None:
        return f"#{value}"
    return normalize_text(span)
