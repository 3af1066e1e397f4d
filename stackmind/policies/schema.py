"""The learning-policy schema: what one ``policies/<name>.policy.yaml`` file may say.

A learning policy is parameterised by (MISSION.md, "Learning policies and trace files"):

1. ``motivation``: error examples, spans of state where something went wrong and what to improve,
   predict or control;
2. ``examples``: labelled ``(goal, state, question) -> response`` pairs; a response may itself invoke
   a policy (``@decompose(goal=...)``), which makes composite, nested policies;
3. ``trajectories``: grounding trajectories, steps that use the policy's name to reach a goal, with
   their rewards;
4. ``training``: ``fast`` (push onto the stack when a trigger fires) and/or ``slow`` (fine-tuning
   data, with a weight).

These pydantic models are the one definition: the parser validates files against them, and
`stackmind policy schema` exports them as JSON Schema for editors. docs/policies.md shows a file.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_NAME = re.compile(NAME_PATTERN)

Trigger = Literal["similarity", "prediction_error", "reward_prediction_error", "always"]
MatchKind = Literal["exact", "regex", "contains", "numeric", "judge"]
Split = Literal["train", "heldout"]
Aim = Literal["improve", "predict", "control"]


class _Strict(BaseModel):
    # Unknown keys are errors (a misspelt key would otherwise be silently ignored).
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Parameter(_Strict):
    """An argument the policy takes when invoked: ``@decompose(goal="...")``."""

    name: str = Field(pattern=NAME_PATTERN, description="The keyword used in an invocation.")
    description: str = Field("", description="What to pass.")
    required: bool = Field(True, description="Whether an invocation must pass it.")


class ErrorExample(_Strict):
    """A span of state where something went wrong, which motivates the policy."""

    state: str = Field(description="The span of state (stack lines) where it went wrong.")
    error: str = Field(description="What went wrong, in words.")
    aim: Aim = Field("improve", description="improve X, predict X or control X.")
    target: str = Field("", description="The X: what to improve, predict or control.")


class Matcher(_Strict):
    """How a test decides that an answer is right."""

    kind: MatchKind = Field(description="exact | regex | contains | numeric | judge.")
    value: str | float | None = Field(
        None, description="What to match; default the example's `answer`. For judge: the criterion.")
    tolerance: float = Field(1e-6, ge=0, description="numeric: allowed absolute difference.")
    ignore_case: bool = Field(True, description="exact, contains and regex: ignore case.")

    @model_validator(mode="after")
    def _regex_compiles(self) -> Matcher:
        if self.kind == "regex" and isinstance(self.value, str):
            try:
                re.compile(self.value)
            except re.error as e:
                raise ValueError(f"the regex does not compile: {e}") from e
        return self


class Example(_Strict):
    """A labelled example: given (goal, state, question), the response to give."""

    goal: str = Field(description="The goal being pursued.")
    state: str = Field("", description="The relevant stack state, as '[kind] text' lines.")
    question: str = Field("", description="The question asked at this point.")
    response: str = Field(description="The response; may invoke a policy or tool: @name(arg=...).")
    answer: str | int | float | None = Field(None, description="The final answer the goal leads to (for tests).")
    match: Matcher | None = Field(None, description="How `policy test` checks the answer.")
    split: Split = Field("train", description="train (pushed as an example) or heldout (only tested).")

    @field_validator("answer")
    @classmethod
    def _answer_text(cls, v: str | int | float | None) -> str | None:
        return None if v is None else str(v)

    def prompt(self) -> str:
        """The example's input as the agent would see it."""
        parts = [self.goal.strip()]
        if self.state.strip():
            parts.append(self.state.strip())
        if self.question.strip():
            parts.append(self.question.strip())
        return "\n".join(parts)


class TrajectoryStep(_Strict):
    thought: str = ""
    action: str | None = None
    observation: str | None = None
    reward: float | None = None


class Trajectory(_Strict):
    """Steps that use the policy's name to reach a goal, and the reward they earned."""

    goal: str
    steps: list[TrajectoryStep] = Field(min_length=1)
    answer: str | int | float | None = None
    reward: float = Field(description="The reward the trajectory earned (1 solved, 0 not).")

    @field_validator("answer")
    @classmethod
    def _answer_text(cls, v: str | int | float | None) -> str | None:
        return None if v is None else str(v)

    def to_text(self) -> str:
        lines = [f"[goal] {self.goal}"]
        for s in self.steps:
            if s.thought:
                lines.append(f"[thought] {s.thought.strip()}")
            if s.action:
                lines.append(f"[action] {s.action.strip()}")
            if s.observation:
                lines.append(f"[observation] {s.observation.strip()}")
        if self.answer is not None:
            lines.append(f"[conclusion] {self.answer}")
        lines.append(f"(reward {self.reward:g})")
        return "\n".join(lines)


class Fast(_Strict):
    """Fast learning: push the policy's examples onto the stack when the trigger fires."""

    trigger: Trigger = Field("similarity", description=(
        "similarity: goal and state resemble the motivation and examples; prediction_error: the last "
        "step went wrong; reward_prediction_error: the value model was surprised (inactive until the "
        "value model lands); always: every step."))
    threshold: float | None = Field(None, description=(
        "similarity: least cosine (default 0.45); prediction_error and reward_prediction_error: least "
        "error (default 0.5)."))
    examples: int = Field(3, ge=1, le=32, description="How many examples to push (the most similar first).")
    trajectories: int = Field(1, ge=0, le=8, description="How many grounding trajectories to push (best reward first).")


class Slow(_Strict):
    """Slow learning: include the policy's examples and trajectories in fine-tuning data."""

    weight: float = Field(1.0, ge=0, le=100, description="Sampling weight in the fine-tuning mix.")


class Training(_Strict):
    fast: Fast | None = None
    slow: Slow | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Training:
        if self.fast is None and self.slow is None:
            raise ValueError("training needs `fast:` and/or `slow:` (e.g. `fast: {trigger: similarity}`)")
        return self


class Tests(_Strict):
    match: Matcher | None = Field(None, description="The matcher for examples that name none.")


class Policy(_Strict):
    """One learning policy (one file in policies/)."""

    name: str = Field(pattern=NAME_PATTERN, description="The symbol that invokes it: @name(...).")
    description: str = Field(min_length=1, description="One line: what the policy does.")
    parameters: list[Parameter] = Field(default_factory=list)
    subgoal: str | None = Field(None, description=(
        "The sub-goal an invocation pushes, with {parameter} placeholders; default "
        "'<description>: <arguments>'."))
    motivation: list[ErrorExample] = Field(default_factory=list)
    examples: list[Example] = Field(min_length=1)
    trajectories: list[Trajectory] = Field(default_factory=list)
    training: Training
    tests: Tests | None = None

    _source: str | None = PrivateAttr(None)
    _locations: Any = PrivateAttr(None)  # parser.Locations: key path -> line and column

    @model_validator(mode="after")
    def _unique_parameters(self) -> Policy:
        seen: set[str] = set()
        for p in self.parameters:
            if p.name in seen:
                raise ValueError(f"parameter {p.name!r} is listed twice: keep one")
            seen.add(p.name)
        return self

    @property
    def source(self) -> str | None:
        return self._source

    def where(self, *loc: str | int, offset: int | None = None) -> tuple[str, int, int]:
        """The file, line and column of a part of the policy (for error messages)."""
        if self._locations is None:
            return (self._source or "<policy>", 1, 1)
        line, col = self._locations.position(loc, offset)
        return (self._source or "<policy>", line, col)

    def render_subgoal(self, args: dict[str, object]) -> str:
        if self.subgoal:
            class _Keep(dict[str, object]):
                def __missing__(self, key: str) -> str:
                    return "{" + key + "}"
            return self.subgoal.format_map(_Keep(args))
        shown = ", ".join(f"{k}={v}" for k, v in args.items())
        return f"{self.description.rstrip('.')}: {shown}" if shown else self.description

    def train_examples(self) -> list[Example]:
        return [e for e in self.examples if e.split == "train"]

    def matcher_for(self, example: Example) -> Matcher | None:
        if example.match is not None:
            return example.match
        if self.tests is not None and self.tests.match is not None:
            return self.tests.match
        if example.answer is not None:
            return Matcher(kind="exact")
        return None

    def without_example(self, index: int) -> Policy:
        """A copy that leaves one example out (so a test never pushes its own answer)."""
        copy = self.model_copy(update={"examples": [e for i, e in enumerate(self.examples) if i != index]})
        copy._source, copy._locations = self._source, self._locations
        return copy


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def json_schema() -> dict[str, Any]:
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "stackmind learning policy"
    schema["$id"] = "https://stackmind.local/schemas/policy-v1.json"
    return schema
