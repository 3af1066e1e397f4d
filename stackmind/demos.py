"""Demonstrations: worked episodes chosen by similarity, pushed onto the stack as ``trajectory`` frames.

The trace library is the human-guided traces (``traces/``: ./traces, <home>/traces, or the starter
traces beside the package) and the episodes the agent itself solved (reward 1, in the data dir's
episodes folder). Before a goal's first step the most similar ones (MiniLM cosine of their goals,
above ``min_similarity``) are pushed as worked examples, written in the step format
(`StepFormat.demonstration`), so the model imitates a solution of the same kind of goal, and never
one of another kind (a Game of 24 example on a word problem is copied, not used). An example that
computes (a program) is shown only for a goal that gives data to compute from (`gives_data`); when no
example is close, the fallbacks are (`DemoLibrary.fallbacks`: a fact in words, a product by a program).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from stackmind.embedder import embed
from stackmind.stepformat import Action, Final, StepFormat
from stackmind.trace import Episode, TraceError

log = logging.getLogger("stackmind.demos")

# MiniLM cosine of the goals' topics (numbers masked). Measured on the dev splits (best demonstration
# of each goal): a goal of the suite's own families is shown one of its kind at 0.35 or more (but for one
# strings goal at 0.27); between 0.30 and 0.33 lie a strings goal shown lists-count (another kind), two
# of gsm8k's 500 dev problems shown a word problem (their kind), and in chat "What is the capital of
# France, and why is it famous?" shown the title-case program, which it imitated (@python(Paris)
# to the step budget; without it, it answers in words). Other kinds also score higher (a chat question
# on Python tips is shown the code-printing program at 0.35): a threshold cannot separate them all.
MIN_SIMILARITY = 0.33
MAX_GAP = 0.1  # a further demonstration only when it is about as similar as the best one
MAX_SOLVED = 2000  # the most recent solved episodes kept in the library


@dataclass(frozen=True)
class Demo:
    goal: str
    text: str  # the trajectory frame's text
    origin: str  # the trace file or the episode id
    similarity: float = 0.0
    fallback: bool = False  # shown when no other is close to the goal (``meta: {fallback: true}``)
    computes: bool = False  # it answers with a program (an action, or a call as the final answer)


def default_trace_dirs(home: Path | None = None) -> list[Path]:
    """./traces and <home>/traces where they exist; failing both, the starter traces beside the package."""
    dirs = [d for d in (Path("traces"), home / "traces" if home else None) if d is not None and d.is_dir()]
    if not dirs:
        bundled = Path(__file__).resolve().parents[1] / "traces"
        if bundled.is_dir():
            dirs.append(bundled)
    return dirs


def solved(episode: Episode) -> bool:
    """A demonstration is worth showing only when it reached its goal with actions the format reads."""
    good = episode.reward is not None and episode.reward >= 1.0 or episode.kind == "guided" and episode.reward is None
    return good and bool(episode.answer) and episode.meta.get("status", "done") == "done"


@dataclass
class DemoLibrary:
    """Worked episodes and their goal embeddings (computed once, on first use)."""

    fmt: StepFormat
    demos: list[Demo] = field(default_factory=list)
    min_similarity: float = MIN_SIMILARITY
    max_gap: float = MAX_GAP
    _vectors: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def load(cls, fmt: StepFormat, trace_dirs: Sequence[Path], episodes_dir: Path | None = None,
             min_similarity: float = MIN_SIMILARITY) -> DemoLibrary:
        lib = cls(fmt, min_similarity=min_similarity)
        for d in trace_dirs:
            lib.extend(_read(sorted(Path(d).glob("*.trace.yaml"))))
        if episodes_dir is not None and episodes_dir.is_dir():
            recent = sorted(episodes_dir.glob("*.trace.yaml"))[-MAX_SOLVED:]
            lib.extend(_read(recent))
        return lib

    def extend(self, episodes: Iterable[Episode]) -> None:
        for ep in episodes:
            if not solved(ep):
                continue
            text = self.fmt.demonstration(ep)
            steps = [self.fmt.step_of(s) for s in ep.steps]
            if not any(isinstance(s, Action | Final) for s in steps):
                continue  # a trace of bare thoughts shows no step the agent can take
            fallback = ep.kind == "guided" and isinstance(ep.meta, dict) and ep.meta.get("fallback") is True
            computes = any(isinstance(s, Action) or isinstance(s, Final) and s.answer.startswith("@") for s in steps)
            self.demos.append(Demo(ep.goal, text, ep.id, fallback=fallback, computes=computes))
            self._vectors = None

    def fallbacks(self, goal: str) -> list[Demo]:
        """The demonstrations shown when none is close to ``goal``: one of each way to answer (a fact in
        words, a computation as a program), the one that computes only for a goal that gives data, and
        then first (nearest the goal). Without them, "What is the capital of France, and why is it
        famous?" (no example within reach) wrote @python(print('Paris ...')) three steps running; shown
        before every goal instead, they cost the goal suite's dev split 4 of 28 (23 -> 19: after an
        observation the model ran the same program again instead of answering)."""
        data = gives_data(goal)
        return sorted((d for d in self.demos if d.fallback and (data or not d.computes)), key=lambda d: not d.computes)

    def select(self, goal: str, k: int = 2) -> list[Demo]:
        """The k demonstrations most like ``goal`` (never the goal itself), best first: above
        ``min_similarity``, and within ``max_gap`` of the best, so that a goal with one close
        example is not shown a second of another kind (a product given a Game of 24 program copies
        the program)."""
        if not self.demos or k <= 0:
            return []
        if self._vectors is None:
            self._vectors = embed([topic(d.goal) for d in self.demos])
        q = embed([topic(goal)])[0]
        sims = self._vectors @ q
        key = " ".join(goal.split()).lower()
        data = gives_data(goal)
        out: list[Demo] = []
        seen: set[str] = set()
        for i in np.argsort(-sims, kind="stable"):
            d = self.demos[int(i)]
            if sims[i] < self.min_similarity or len(out) >= k or out and sims[i] < out[0].similarity - self.max_gap:
                break
            g = " ".join(d.goal.split()).lower()
            if g == key or g in seen or d.computes and not data:
                continue
            seen.add(g)
            out.append(replace(d, similarity=float(sims[i])))
        return out


_FORM = re.compile(r"\s*\b(Answer|Reply|Respond|Give the answer)\b[^.?!]*[.?!]?\s*$", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")
_RUN = re.compile(r"N(?:(?:,\s*|\s+)(?:and\s+)?N)+")  # a list of numbers is one N: how many is not the kind


# a digit, or a quoted span ('text', "text", `code`, curly quotes): not the apostrophe of "it's"
_DATA = re.compile(r"\d|(?:^|[\s(:])['\"`\u2018\u201c][^\n]*?['\"`\u2019\u201d](?=$|[\s.,;:!?)])")
# How long the reply should be ("in about 80 words", "in 3 sentences"): a number that is not data.
_LENGTH = re.compile(r"\b(?:(?:about|around|roughly|under|at most|no more than|less than|fewer than|up to)\s+)?"
                     r"\d+\s+(?:words|sentences|lines|paragraphs|bullet points)\b", re.IGNORECASE)


def gives_data(goal: str) -> bool:
    """Whether the goal gives something to compute from (a number, a quoted text, code) or asks for a
    number: the goals the system prompt's first rule answers with a program. A worked example that
    computes is shown only for those: a question about Python with no data in it ("three tips for
    writing clear Python code") was shown the code-printing example and ran programs instead of
    answering. A number that says how long the reply should be ("in about 80 words") is not data:
    with it, that question was shown the example and took 10 calls and 25 s in chat."""
    return bool(_DATA.search(_LENGTH.sub("", goal)) or _FORM.search(goal))


def topic(goal: str) -> str:
    """What kind of goal it is: without its closing instruction on the answer's form ("Answer with
    the number.", shared across kinds), and with every number written N. The numbers are what differ
    between two goals of one kind: MiniLM gives "What is 17 * 23?" and "What is 4821 * 3907?" a
    cosine of 0.48, no more than a Game of 24 puzzle, and 1.0 once both are "What is N * N?". A
    list of numbers is one N: four numbers to add are not a Game of 24 puzzle."""
    stripped = _FORM.sub("", goal).strip() or goal
    return _RUN.sub("N", _NUMBER.sub("N", stripped))


def _read(paths: Iterable[Path]) -> Iterable[Episode]:
    for p in paths:
        try:
            yield Episode.load(p)
        except (TraceError, OSError) as e:
            log.warning("trace skipped for demonstrations: %s", e)
