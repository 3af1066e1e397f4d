"""One root for every error stackmind raises on purpose (httpx style).

Each part's errors subclass `StackmindError` (and, where it reads naturally, a builtin such as
``ValueError``), so a caller can catch everything stackmind means to say with one ``except``, and the
command line turns each into one line naming the file or setting and what to do.
"""

from __future__ import annotations


class StackmindError(Exception):
    """Something stackmind can explain: what went wrong, where, and what to do."""
