"""The policy library: every learning policy the agent knows, by name.

`PolicyLibrary.load(dirs)` reads ``*.policy.yaml`` (and plain ``*.yaml``) files; `check` reads any mix
of policies and traces and returns every problem, located; `graph` is the composite dependency graph
(policy A -> policy B when A's examples invoke B). Policies and tools share one ``@name(...)``
namespace: a library refuses a policy named like a tool and vice versa.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx

from stackmind.errors import StackmindError
from stackmind.policies.fast import Embed, Selector
from stackmind.policies.parser import (
    POLICY_SUFFIX,
    TRACE_SUFFIX,
    FileProblems,
    Problem,
    Site,
    is_trace_text,
    parse_policy,
    parse_trace,
    policy_sites,
    read_text,
    trace_sites,
)
from stackmind.policies.schema import Policy
from stackmind.stack import Frame, Stack
from stackmind.tools.invocation import find_invocations
from stackmind.trace import Episode

if TYPE_CHECKING:
    from stackmind.tools import ToolRegistry
    from stackmind.tools.invocation import Invocation

# Tools the agent has or will have (issue texts): @python, @recall, @wolfram, and frame operations.
BUILTIN_TOOLS = frozenset({"python", "recall", "wolfram", "push", "pop"})


class PolicyNameError(StackmindError, ValueError):
    """Two things (policies or tools) want the same @name."""


@dataclass
class CheckReport:
    """What `check` found: the policies and traces it read, and every problem."""

    policies: list[Policy] = field(default_factory=list)
    traces: list[tuple[str, Episode]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


class PolicyLibrary:
    """Policies by name. Not a global: the agent owns one."""

    def __init__(self, policies: Iterable[Policy] = (), tools: Iterable[str] | ToolRegistry = BUILTIN_TOOLS) -> None:
        self._policies: dict[str, Policy] = {}
        self._selector: Selector | None = None
        self.tools: set[str] = set(tools.names() if hasattr(tools, "names") else tools)
        for p in policies:
            self.add(p)

    # ---- building -----------------------------------------------------------------------------
    @classmethod
    def load(cls, dirs: Iterable[Path | str], tools: Iterable[str] | ToolRegistry = BUILTIN_TOOLS) -> PolicyLibrary:
        """Read every policy file under dirs; raise FileProblems listing all problems if any."""
        report = check(list(dirs), tools=tools)
        if not report.ok:
            raise FileProblems(report.errors)
        return cls(report.policies, tools=tools)

    def add(self, policy: Policy) -> None:
        if policy.name in self.tools:
            raise PolicyNameError(f"@{policy.name} is a tool: rename the policy {policy.source or ''}".strip())
        old = self._policies.get(policy.name)
        if old is not None:
            raise PolicyNameError(f"two policies are named @{policy.name} ({old.source} and {policy.source}): rename one")
        self._policies[policy.name] = policy

    def add_tool(self, name: str) -> None:
        """Register a tool's name (the agent calls this for each tool of its registry)."""
        if name in self._policies:
            raise PolicyNameError(f"@{name} is already a learning policy ({self._policies[name].source}): "
                                  "rename the tool or the policy")
        self.tools.add(name)

    # ---- reading ------------------------------------------------------------------------------
    def get(self, name: str) -> Policy | None:
        return self._policies.get(name)

    def __getitem__(self, name: str) -> Policy:
        policy = self._policies.get(name)
        if policy is None:
            raise KeyError(f"no policy @{name}; known: {', '.join(sorted(self._policies)) or 'none'}")
        return policy

    def __contains__(self, name: object) -> bool:
        return name in self._policies

    def __iter__(self) -> Iterator[Policy]:
        return iter(sorted(self._policies.values(), key=lambda p: p.name))

    def __len__(self) -> int:
        return len(self._policies)

    def names(self) -> set[str]:
        return set(self._policies)

    def describe(self) -> str:
        """One line per policy, for a system prompt: how to invoke each."""
        lines = []
        for p in self:
            params = ", ".join(f"{a.name}=..." for a in p.parameters)
            lines.append(f"@{p.name}({params}): {p.description}")
        return "\n".join(lines)

    def graph(self) -> nx.DiGraph:
        return composite_graph(self._policies.values())

    def needs(self, policy: Policy) -> set[str]:
        """The tools (not policies) that the examples and trajectories of ``policy`` call."""
        texts = [e.response for e in policy.train_examples()]
        texts += [s.action for t in policy.trajectories for s in t.steps if s.action]
        return {inv.name for text in texts for inv in find_invocations(text) if inv.name not in self._policies}

    # ---- fast learning ------------------------------------------------------------------------
    def selector(self, embed: Embed | None = None) -> Selector:
        """The library's selector (one per library, so policy embeddings are computed once)."""
        if self._selector is None or embed is not None:
            self._selector = Selector(self, embed=embed)
        return self._selector

    def select(self, goal: str, state: str = "", rpe: float | None = None,
               prediction_error: float | None = None) -> list[Policy]:
        """The policies to push before the next step, by their fast-learning triggers."""
        return self.selector().select(goal, state, rpe=rpe, prediction_error=prediction_error)

    def frames(self, policy: Policy, goal: str = "", state: str = "") -> list[Frame]:
        """The frames that push a policy (its examples most similar to goal and state first)."""
        return self.selector().frames(policy, goal, state)

    def push(self, stack: Stack, goal: str, state: str | None = None, rpe: float | None = None,
             prediction_error: float | None = None, tools: Collection[str] | None = None) -> list[Policy]:
        """Fast learning for one step: push the selected policies that are not on the stack yet.

        Returns the policies pushed. ``state`` defaults to the stack's full render. With ``tools``
        (the tools the agent has now), a policy whose examples call a tool outside them is not
        pushed: it would teach a call that cannot be made (@recall with memory off)."""
        state = stack.render(10**9) if state is None else state
        present = {f.provenance.get("policy") for f in stack.frames() if f.kind in ("policy", "trajectory")}
        pushed = []
        for policy in self.select(goal, state, rpe=rpe, prediction_error=prediction_error):
            if policy.name in present or (tools is not None and not self.needs(policy) <= set(tools)):
                continue
            for frame in self.frames(policy, goal, state):
                stack.push_frame(frame)
            pushed.append(policy)
        return pushed


def default_policy_dirs(home: Path | None = None) -> list[Path]:
    """Where policies are looked for: ./policies and <home>/policies where they exist; failing both,
    the starter library beside the package (a source checkout). The policies the agent wrote and
    kept (`stackmind.policies.review.learned_dir`: <home>/policies/learned by default) are always
    included; a <home>/policies that holds only those does not count as a human library."""
    from stackmind.policies.review import learned_dir

    learned = learned_dir(home) if home is not None else None
    dirs = [d for d in (Path("policies"), home / "policies" if home else None)
            if d is not None and d.is_dir() and _has_policies(d, learned)]
    if not dirs:
        bundled = Path(__file__).resolve().parents[2] / "policies"
        if bundled.is_dir():
            dirs.append(bundled)
    if learned is not None and learned.is_dir() and not any(_inside(learned, d) for d in dirs):
        dirs.append(learned)
    return dirs


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _has_policies(folder: Path, learned: Path | None) -> bool:
    """A folder counts as a library unless all it holds is the learned dir."""
    if learned is None or not _inside(learned, folder):
        return True
    return any(not _inside(p, learned) for p in folder.rglob("*.y*ml"))


def load_lenient(dirs: Iterable[Path | str], tools: Iterable[str] | ToolRegistry = BUILTIN_TOOLS) -> tuple[PolicyLibrary, list[Problem]]:
    """The policies that read cleanly, and the problems of the rest (for commands that should work
    even while one file is being edited)."""
    report = check(list(dirs), tools=tools)
    lib = PolicyLibrary(tools=tools)
    for p in report.policies:
        if p.name not in lib and p.name not in lib.tools:
            lib.add(p)
    return lib, report.problems


# ---- the composite graph ----------------------------------------------------------------------

def composite_graph(policies: Iterable[Policy]) -> nx.DiGraph:
    """Policy A -> B when one of A's example responses invokes B (tools are nodes too)."""
    g = nx.DiGraph()
    policies = list(policies)
    names = {p.name for p in policies}
    for p in policies:
        g.add_node(p.name, kind="policy", description=p.description, source=p.source or "")
    for p in policies:
        for i, ex in enumerate(p.examples):
            for inv in find_invocations(ex.response):
                if inv.name not in g:
                    g.add_node(inv.name, kind="policy" if inv.name in names else "tool")
                if g.has_edge(p.name, inv.name):
                    g.edges[p.name, inv.name]["examples"].append(i)
                else:
                    g.add_edge(p.name, inv.name, examples=[i])
    return g


def cycles(g: nx.DiGraph) -> list[list[str]]:
    """Each cycle among policies once, as [a, b, ..., a]."""
    out = []
    for cyc in nx.simple_cycles(g):
        if all(g.nodes[n].get("kind") == "policy" for n in cyc):
            i = cyc.index(min(cyc))
            cyc = cyc[i:] + cyc[:i]
            out.append([*cyc, cyc[0]])
    return sorted(out)


# ---- checking files ---------------------------------------------------------------------------

def policy_files(paths: Iterable[Path | str]) -> tuple[list[Path], list[Problem]]:
    """Files named by paths (folders are searched for *.policy.yaml, *.trace.yaml and *.yaml)."""
    files: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted({*p.rglob("*.yaml"), *p.rglob("*.yml")})
            if not found:
                problems.append(Problem(str(p), 1, 1, "no *.policy.yaml or *.trace.yaml files in this folder",
                                        "warning"))
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            problems.append(Problem(str(p), 1, 1, "no such file or folder: check the path"))
    return files, problems


def check(paths: Iterable[Path | str], tools: Iterable[str] | ToolRegistry = BUILTIN_TOOLS,
          known: Iterable[Policy] = ()) -> CheckReport:
    """Read every policy and trace under paths and report every problem found, located.

    ``known`` are policies from elsewhere (the library) that the files may invoke.
    """
    report = CheckReport()
    files, report.problems = policy_files(paths)
    tool_names = set(tools.names() if hasattr(tools, "names") else tools)
    trace_texts: list[tuple[str, str]] = []
    for f in files:
        try:
            text = read_text(f, 8 * 1024 * 1024 if f.name.endswith(TRACE_SUFFIX) else 1024 * 1024)
            if f.name.endswith(TRACE_SUFFIX) or (not f.name.endswith(POLICY_SUFFIX) and is_trace_text(text)):
                report.traces.append((str(f), parse_trace(text, str(f))))
                trace_texts.append((str(f), text))
            else:
                report.policies.append(parse_policy(text, str(f)))
        except FileProblems as e:
            report.problems.extend(e.problems)

    # Names: unique, not a tool's. Known policies read from the files being checked are those files'.
    checked = {f.resolve() for f in files}
    by_name: dict[str, Policy] = {p.name: p for p in known if not p.source or Path(p.source).resolve() not in checked}
    for p in report.policies:
        if p.name in tool_names:
            report.problems.append(_at(p, ("name",), f"@{p.name} is the name of a tool: choose another name"))
        first = by_name.get(p.name)
        if first is not None and first is not p:
            report.problems.append(_at(p, ("name",), f"duplicate policy name @{p.name} (also in "
                                       f"{':'.join(map(str, first.where('name')[:2]))}): rename one"))
        else:
            by_name[p.name] = p
        report.problems.extend(_warnings(p))

    # Invocations: every @name(...) is a known policy or tool, with known arguments.
    for p in report.policies:
        for site in policy_sites(p):
            report.problems.extend(_check_site(site, by_name, tool_names))
    for path, text in trace_texts:
        try:
            for site in trace_sites(text, path):
                report.problems.extend(_check_site(site, by_name, tool_names))
        except FileProblems as e:  # already reported when the trace was parsed
            report.problems.extend(q for q in e.problems if q not in report.problems)

    # Composite cycles.
    g = composite_graph(report.policies)
    for cyc in cycles(g):
        a, b = cyc[0], cyc[1]
        owner = next(p for p in report.policies if p.name == a)
        i = g.edges[a, b]["examples"][0]
        chain = " -> ".join(f"@{n}" for n in cyc)
        report.problems.append(_at(owner, ("examples", i, "response"),
                                   f"composite cycle {chain}: a policy may not invoke itself through its "
                                   "examples; break the cycle by answering one step directly"))
    report.problems.sort(key=lambda q: (q.path, q.line, q.column))
    return report


def _at(p: Policy, loc: tuple[str | int, ...], message: str, severity: str = "error") -> Problem:
    path, line, col = p.where(*loc)
    return Problem(path, line, col, message, severity)


def _warnings(p: Policy) -> list[Problem]:
    out = []
    if not p.motivation:
        out.append(_at(p, ("name",), "no motivation: add an error example that shows what this policy fixes",
                       "warning"))
    if not p.trajectories:
        out.append(_at(p, ("name",), f"no grounding trajectory: add one that uses @{p.name}(...) to reach a goal",
                       "warning"))
    if not any(p.matcher_for(e) for e in p.examples):
        out.append(_at(p, ("examples",), "no example has an answer or a matcher: `policy test` has nothing to check",
                       "warning"))
    return out


def _check_site(site: Site, policies: dict[str, Policy], tools: set[str]) -> list[Problem]:
    inv = site.invocation
    if site.unclosed:
        return [Problem(site.path, site.line, site.column, f"@{inv.name}( in {site.context} has no closing ')': "
                        "close it, or write the @ as a plain word")]
    if inv.name in tools:
        return []
    policy = policies.get(inv.name)
    if policy is None:
        candidates = sorted({*policies, *tools})
        near = difflib.get_close_matches(inv.name, candidates, n=1)
        hint = f"did you mean @{near[0]}?" if near else f"known: {', '.join('@' + c for c in candidates)}"
        return [Problem(site.path, site.line, site.column,
                        f"{site.context} invokes unknown policy or tool @{inv.name}: {hint}")]
    _bound, errors = bind_arguments(policy, inv)
    return [Problem(site.path, site.line, site.column, f"{site.context}: {e}") for e in errors]


def bind_arguments(policy: Policy, inv: Invocation) -> tuple[dict[str, object], list[str]]:
    """The invocation's arguments by parameter name, and what is wrong with them."""
    params = [a.name for a in policy.parameters]
    takes = ", ".join(params) or "no arguments"
    bound: dict[str, object] = {}
    errors: list[str] = []
    for i, value in enumerate(inv.args):
        if i < len(params):
            bound[params[i]] = value
        else:
            errors.append(f"@{inv.name} takes {len(params)} argument(s) ({takes}), got {len(inv.args)} "
                          "without names: name them (key=value)")
            break
    for key, value in inv.kwargs.items():
        if key not in params:
            errors.append(f"@{inv.name} has no parameter {key!r} (it takes: {takes})")
        elif key in bound:
            errors.append(f"@{inv.name} got {key!r} twice")
        else:
            bound[key] = value
    missing = [a.name for a in policy.parameters if a.required and a.name not in bound]
    if missing:
        errors.append(f"@{inv.name} needs {', '.join(m + '=...' for m in missing)}")
    return bound, errors
