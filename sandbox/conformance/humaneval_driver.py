"""Guest side of the HumanEval conformance check: runs INSIDE the sandbox, never on the host.

Reads /problems.json (a list of {"task_id", "program"}) from the scratch folder, runs each
program (prompt + solution + test + ``check(entry_point)``) in a namespace of its own, and prints one
JSON object: task_id -> "pass" or "fail: <why>". A perturbed program calls ``__perturb__`` on each
value its function returns; it is defined here.
"""

import json
import sys


def __perturb__(value):  # noqa: N807  (a name no HumanEval program uses)
    """A value that is wrong in the way that type allows: off by one, negated, one more item."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 1.5
    if isinstance(value, str):
        return value + "\u2639"
    if isinstance(value, list):
        return value + [object()]
    if isinstance(value, tuple):
        return value + (object(),)
    if isinstance(value, dict):
        return {**value, object(): None}
    if value is None:
        return 0
    return object()


def main() -> None:
    problems = json.load(open("/problems.json"))
    results = {}
    for p in problems:
        namespace = {"__name__": "__humaneval__", "__perturb__": __perturb__}
        try:
            exec(compile(p["program"], p["task_id"], "exec"), namespace)  # inside the guest only
            results[p["task_id"]] = "pass"
        except BaseException as e:  # an assertion, any error, even SystemExit: the test failed
            results[p["task_id"]] = f"fail: {type(e).__name__}: {str(e)[:120]}"
        sys.setrecursionlimit(1000)  # a program may have changed it
    print(json.dumps(results))


main()
