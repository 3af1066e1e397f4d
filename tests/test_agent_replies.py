"""How the loop reads a reply that is in none of the step forms."""

from __future__ import annotations

from stackmind.agent import _copies_view

VIEW = """[policy] Learning policy @analogy: Map the problem onto a familiar one.
Example:
  goal: Two pipes fill a tank in 3 hours and 6 hours alone. How long together?
  response: Like two workers sharing a job: add their rates. Final answer: 2 hours
[goal] If 5 machines make 5 widgets in 5 minutes, how long do 100 machines take?"""


def test_a_reply_that_continues_the_stack_is_not_an_answer() -> None:
    assert _copies_view("[goal] If 5 machines make 5 widgets in 5 minutes, how long?", VIEW)
    assert _copies_view("[thought] maybe 100", VIEW)
    assert _copies_view("Like two workers sharing a job: add their rates.", VIEW)  # an example's text


def test_a_direct_answer_is_an_answer() -> None:
    assert not _copies_view("5 minutes", VIEW)
    assert not _copies_view("Each machine makes one widget in 5 minutes, so 5 minutes.", VIEW)
    assert not _copies_view("[5 minutes]", VIEW)
