"""Episodes for the synthesis tests: one simple strategy repeatedly fixed a failure.

"The zork of n" is a convention of this user's: n times 99. The agent cannot know it (the embedded
model guesses, and computing is no help without the rule); each episode is what it would have
lived: a confident wrong guess (the check says so), then the step that worked once the rule was
known (n times 99, computed with @python), which the value prediction did not expect (a large reward-prediction error).
A policy written from three of them must carry the rule to held-out goals of the same kind. A few
unrelated episodes sit beside them (a different kind of goal, no surprise).
"""

from __future__ import annotations

from stackmind.trace import Episode, Step

WRITTEN = (37, 58, 64)  # the episodes a policy can be written from
HELDOUT = (29, 84, 78, 46, 53)  # further episodes of the same kind: held out for grounding


def goal(n: int) -> str:
    return f"What is the zork of {n}? Answer with the number."


def times_99_episode(n: int, *, index: int) -> Episode:
    wrong = n * 99 + 100 * (1 + index % 3) - 10
    return Episode(
        id=f"20250101-0000{index:02d}-x99{n:03d}",
        goal=goal(n),
        steps=[
            Step(thought=f"The zork of {n} is {wrong}.", observation=f"wrong: {wrong} + {n} is not {n}00", value=0.8),
            Step(thought=f"Thought: The zork of a number is the number times 99 (99 = 100 - 1).\n"
                         f"Action: @python(print({n} * 99))",
                 action=f"@python(print({n} * 99))", observation=str(n * 99), value=0.3),
        ],
        answer=str(n * 99), reward=1.0, meta={"task": "arithmetic"},
    )


def other_episodes() -> list[Episode]:
    return [
        Episode(id=f"20250101-0001{i:02d}-capital", goal=f"What is the capital of {country}?",
                steps=[Step(thought=f"The capital of {country} is {city}.", value=0.9)],
                answer=city, reward=1.0)
        for i, (country, city) in enumerate([("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome")])
    ] + [
        Episode(id="20250101-000200-reverse", goal="Spell the word 'stressed' backwards.",
                steps=[Step(thought="desserts? I am not sure", value=0.7)], answer="dessert", reward=0.0),
    ]


def episodes() -> list[Episode]:
    out = [times_99_episode(n, index=i) for i, n in enumerate(WRITTEN + HELDOUT)]
    return out + other_episodes()
