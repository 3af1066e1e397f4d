"""The one invocation syntax for tools and learning policies: ``@name(...)``.

``@python(print(17 * 23))``, ``@recall(query="game of 24")``, ``@decompose(goal="...")``. The
argument text is kept raw (``@python`` takes code); keyword arguments are read when the text parses
as a call's arguments, with literal values decoded and anything else kept as its source text.
Parsing never executes anything: it uses `ast.parse` and `ast.literal_eval` only.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from stackmind.errors import StackmindError

_NAME = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)\(")


class InvocationSyntaxError(StackmindError, ValueError):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class Invocation:
    name: str
    raw: str  # the text between the parentheses
    start: int  # offset of '@' in the source text
    end: int  # offset just past the closing ')'
    args: tuple[str, ...] = ()
    kwargs: dict[str, object] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return f"@{self.name}({self.raw})"

    def arg(self, key: str, default: object = None) -> object:
        """A keyword argument, or the first positional one, or the raw text."""
        if key in self.kwargs:
            return self.kwargs[key]
        if self.args:
            return self.args[0]
        return self.raw if self.raw.strip() else default


def _closing(text: str, i: int) -> int:
    """Index of the ')' that closes the '(' just before i, skipping strings, comments (``#`` to the
    end of its line, as in Python: a bracket in a comment is text) and nested brackets."""
    depth = 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if c in "\"'":
            quote = text[i : i + 3] if text[i : i + 3] in ('"""', "'''") else c
            j = i + len(quote)
            while j < n:
                if text[j] == "\\":
                    j += 2
                    continue
                if text.startswith(quote, j):
                    break
                if len(quote) == 1 and text[j] == "\n":
                    break  # an unterminated one-line string: treat the quote as a plain character
                j += 1
            if j >= n or (len(quote) == 1 and text[j] == "\n"):
                i += 1
                continue
            i = j + len(quote)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InvocationSyntaxError("unclosed '(' in invocation: add the closing ')'", i)


def _parse_args(raw: str) -> tuple[tuple[str, ...], dict[str, object]]:
    try:
        call = ast.parse(f"f({raw})", mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ((raw,) if raw.strip() else ()), {}
    assert isinstance(call, ast.Call)
    src = f"f({raw})"

    def value(node: ast.expr) -> object:
        try:
            return ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            return ast.get_source_segment(src, node) or ""

    args = tuple(str(value(a)) if not isinstance(value(a), str) else value(a) for a in call.args)  # type: ignore[misc]
    kwargs = {kw.arg: value(kw.value) for kw in call.keywords if kw.arg}
    return args, kwargs  # type: ignore[return-value]


def find_invocations(text: str) -> list[Invocation]:
    """Every well-formed ``@name(...)`` in text, in order. Unclosed ones are skipped."""
    found: list[Invocation] = []
    pos = 0
    while True:
        m = _NAME.search(text, pos)
        if m is None:
            return found
        try:
            close = _closing(text, m.end())
        except InvocationSyntaxError:
            pos = m.end()
            continue
        raw = text[m.end() : close]
        args, kwargs = _parse_args(raw)
        found.append(Invocation(m.group(1), raw, m.start(), close + 1, args, kwargs))
        pos = close + 1


def first_invocation(text: str, names: set[str] | None = None) -> Invocation | None:
    for inv in find_invocations(text):
        if names is None or inv.name in names:
            return inv
    return None
