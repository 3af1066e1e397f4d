"""Composite invocation: ``@name(arg=...)`` in a thought runs a learning policy as a subroutine.

    caller's frames ... | [policy] examples of @name | [trajectory] ... | [goal] sub-goal | (work)
                                         solve(sub-goal, stack, depth + 1)
    caller's frames ... | [conclusion] @name(...) -> result

The policy's frames and the sub-goal are pushed, the sub-goal is solved by the agent's own loop
(a callback, so that this module does not depend on the agent), everything pushed since is popped,
and the result is pushed back into the caller as a conclusion. The solver may meet another
invocation and call `Invoker.invoke` again: calls nest. A depth limit holds, and an invocation that
re-enters itself with the same arguments (which could never finish) stops with a clear error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from stackmind.errors import StackmindError
from stackmind.policies.fast import policy_frames
from stackmind.policies.library import PolicyLibrary, bind_arguments
from stackmind.policies.schema import Policy
from stackmind.stack import Frame, Stack
from stackmind.tools.invocation import Invocation

DEFAULT_MAX_DEPTH = 4

# solve(sub_goal, stack, depth) -> the result text
Solve = Callable[[str, Stack, int], str]
# Chooses the frames to push for a policy (default: its first examples and best trajectory).
FramesFor = Callable[..., list[Frame]]


class InvocationError(StackmindError, RuntimeError):
    """An invocation that cannot run: unknown policy, bad arguments, too deep, or a cycle."""

    def __init__(self, message: str, chain: tuple[str, ...] = ()) -> None:
        self.chain = chain
        super().__init__(message)


class PolicyDepthError(InvocationError):
    pass


class PolicyCycleError(InvocationError):
    pass


@dataclass(frozen=True)
class InvocationResult:
    invocation: Invocation
    subgoal: str
    result: str
    depth: int
    popped: int  # frames popped when the call returned
    frame: Frame  # the conclusion frame pushed into the caller


@dataclass
class Invoker:
    """Runs policy invocations for one agent. Tracks the active call chain (for nesting, depth
    and cycle checks); one Invoker per episode or per agent (calls are synchronous)."""

    library: PolicyLibrary
    max_depth: int = DEFAULT_MAX_DEPTH
    frames_for: FramesFor | None = None
    _active: list[tuple[str, str]] = field(default_factory=list, repr=False)  # (name, normalized args)

    @property
    def depth(self) -> int:
        return len(self._active)

    def chain(self) -> tuple[str, ...]:
        return tuple(f"@{name}({args})" for name, args in self._active)

    def handles(self, invocation: Invocation) -> bool:
        return invocation.name in self.library

    def invoke(self, invocation: Invocation, stack: Stack, solve: Solve, depth: int | None = None) -> InvocationResult:
        """Run one invocation to completion; see the module docstring."""
        policy = self.library.get(invocation.name)
        if policy is None:
            known = ", ".join(f"@{n}" for n in sorted(self.library.names())) or "none"
            raise InvocationError(f"unknown learning policy @{invocation.name}; known: {known}", self.chain())
        args, errors = bind_arguments(policy, invocation)
        if errors:
            raise InvocationError("; ".join(errors), self.chain())
        depth = self.depth if depth is None else depth
        key = (policy.name, _normalized(args))
        chain = (*self.chain(), f"@{key[0]}({key[1]})")
        if key in self._active:
            raise PolicyCycleError(
                f"cycle: {' -> '.join(chain)} calls itself again with the same arguments, which "
                "would never finish; answer this step directly or change the arguments", chain)
        if depth >= self.max_depth:
            raise PolicyDepthError(
                f"policy calls nested {depth + 1} deep (limit {self.max_depth}): {' -> '.join(chain)}; "
                "solve this step without another invocation", chain)

        subgoal = policy.render_subgoal(args)
        mark = len(stack)
        frames = (self.frames_for or _default_frames)(policy, subgoal, stack.render(10**9))
        for f in frames:
            stack.push_frame(Frame(kind=f.kind, text=f.text, value=f.value,
                                   provenance={**f.provenance, "call": invocation.text, "depth": depth + 1}))
        stack.push("goal", subgoal, value=1.0, call=invocation.text, depth=depth + 1)
        self._active.append(key)
        try:
            result = solve(subgoal, stack, depth + 1)
        finally:
            self._active.pop()
            popped = 0
            while len(stack) > mark:
                stack.pop()
                popped += 1
        frame = stack.push("conclusion", f"{invocation.text} -> {result}", value=0.8,
                           call=invocation.text, depth=depth)
        return InvocationResult(invocation, subgoal, result, depth + 1, popped, frame)


def _default_frames(policy: Policy, subgoal: str, state: str) -> list[Frame]:
    fast = policy.training.fast
    k = fast.examples if fast else 3
    return policy_frames(policy, policy.train_examples()[:k], fast.trajectories if fast else 1)


def _normalized(args: dict[str, object]) -> str:
    return ", ".join(f"{k}={' '.join(str(v).split())!r}" for k, v in sorted(args.items()))
