"""Learning policies: the file format, the library, fast learning onto the stack, composite calls.

(What runs the agent to measure a policy, ground it or write new ones lives above the agent, in
`stackmind.learning`: trials, grounding, synthesis.)

    library = PolicyLibrary.load(["policies"])          # every problem located, or FileProblems
    for policy in library.select(goal, state):          # fast learning: which to push now
        for frame in library.frames(policy, goal, state):
            stack.push_frame(frame)
    invoker = Invoker(library)                          # @decompose(goal=...) in a thought
    invoker.invoke(invocation, stack, solve)            # push, solve the sub-goal, pop, return

docs/policies.md describes the file format; `stackmind policy --help` the authoring commands.
"""

from stackmind.policies.fast import Selected, Selector, estimate_prediction_error, policy_frames
from stackmind.policies.invoke import (
    InvocationError,
    InvocationResult,
    Invoker,
    PolicyCycleError,
    PolicyDepthError,
)
from stackmind.policies.library import (
    BUILTIN_TOOLS,
    CheckReport,
    PolicyLibrary,
    PolicyNameError,
    bind_arguments,
    check,
    composite_graph,
    cycles,
)
from stackmind.policies.parser import FileProblems, Problem, load_policy, load_trace, parse_policy, read
from stackmind.policies.schema import Example, Matcher, Policy, json_schema
from stackmind.policies.slow import SFTExample, sft_examples

__all__ = [
    "BUILTIN_TOOLS", "CheckReport", "Example", "FileProblems", "InvocationError", "InvocationResult",
    "Invoker", "Matcher", "Policy", "PolicyCycleError", "PolicyDepthError", "PolicyLibrary",
    "PolicyNameError", "Problem", "SFTExample", "Selected", "Selector", "bind_arguments", "check", "composite_graph",
    "cycles", "estimate_prediction_error", "json_schema", "load_policy", "load_trace",
    "parse_policy", "policy_frames", "read", "sft_examples",
]
