"""Slow learning: a policy as supervised fine-tuning examples (for `stackmind consolidate`).

Each train example becomes (prompt: goal, state and question; completion: the response), and each
grounding trajectory with a positive reward becomes (prompt: its goal; completion: its steps), all
with the policy's ``training.slow.weight``. Policies without ``slow`` give nothing. Held-out examples
are never training data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stackmind.policies.schema import Policy


@dataclass(frozen=True)
class SFTExample:
    prompt: str
    completion: str
    weight: float
    source: str  # "<policy>:examples[i]" or "<policy>:trajectories[i]"


def sft_examples(policies: Iterable[Policy]) -> list[SFTExample]:
    out: list[SFTExample] = []
    for p in policies:
        slow = p.training.slow
        if slow is None or slow.weight <= 0:
            continue
        header = f"Learning policy @{p.name}: {p.description.strip()}"
        for i, ex in enumerate(p.examples):
            if ex.split != "train":
                continue
            out.append(SFTExample(f"{header}\n[goal] {ex.prompt()}", ex.response.strip(), slow.weight,
                                  f"{p.name}:examples[{i}]"))
        for i, t in enumerate(p.trajectories):
            if t.reward <= 0:
                continue
            body = t.to_text().split("\n", 1)
            out.append(SFTExample(f"[goal] {t.goal}", body[1] if len(body) > 1 else "", slow.weight * t.reward,
                                  f"{p.name}:trajectories[{i}]"))
    return out
