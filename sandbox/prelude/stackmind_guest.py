"""The prelude agent programs may import inside the sandbox: ``from stackmind_guest import check``.

This file is guest side: it runs only inside the WebAssembly VM (the sandbox grants this folder
read-only at /prelude and puts it on the guest's sys.path). Small helpers a model tends to want
when it checks its own code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any


def show(*values: Any, width: int = 200) -> None:
    """Print each value's repr on one line, cut to `width` characters."""
    for v in values:
        text = repr(v)
        print(text if len(text) <= width else text[: width - 3] + "...")


def check(fn: Callable[..., Any], cases: Iterable[tuple[tuple[Any, ...], Any]]) -> bool:
    """Call fn(*args) for each (args, expected) and print one line per failure and a summary.

    >>> check(abs, [((-2,), 2), ((3,), 3)])
    2/2 passed
    True
    """
    cases = list(cases)
    passed = 0
    for args, expected in cases:
        try:
            got = fn(*args)
        except Exception as e:  # the guest's own code: report, do not stop
            print(f"FAIL {fn.__name__}{args!r}: raised {type(e).__name__}: {e}")
            continue
        if got == expected:
            passed += 1
        else:
            print(f"FAIL {fn.__name__}{args!r}: got {got!r}, expected {expected!r}")
    print(f"{passed}/{len(cases)} passed")
    return passed == len(cases)


def time_ms(fn: Callable[[], Any], repeat: int = 5) -> float:
    """The best of `repeat` timings of fn(), in milliseconds."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1000
