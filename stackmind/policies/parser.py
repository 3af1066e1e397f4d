"""One parser for policies, human-guided traces and the agent's own episodes.

Every problem is a `Problem` naming file:line:column and what to do. The YAML is composed with the
location-aware helpers of `stackmind.trace` (which already refuse NUL bytes, anchors and aliases,
and oversize files); on top of that, hostile inputs (huge lines, deep nesting, undecodable bytes)
are refused here before the YAML scanner sees them, so a bad file costs milliseconds.

    read(path)          -> Policy | Episode        (raises FileProblems)
    parse_policy(text, path) -> Policy
    invocation_sites(...)  -> where each @name(...) sits in a file, for checks
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from stackmind.errors import StackmindError
from stackmind.policies.schema import Policy
from stackmind.tools.invocation import Invocation, find_invocations
from stackmind.trace import Episode, TraceError, compose_yaml, node_error, plain

MAX_POLICY_BYTES = 1024 * 1024
MAX_TRACE_BYTES = 8 * 1024 * 1024  # the agent's episodes carry rendered views and search trees
MAX_LINE_CHARS = 20_000
MAX_DEPTH = 40  # nesting levels of lists and mappings
MAX_POLICY_NODES = 20_000
MAX_TRACE_NODES = 500_000
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
POLICY_SUFFIX = ".policy.yaml"
TRACE_SUFFIX = ".trace.yaml"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file: where, what, and what to do."""

    path: str
    line: int
    column: int
    message: str
    severity: str = "error"  # error | warning

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else f"{self.severity}: "
        return f"{self.path}:{self.line}:{self.column}: {tag}{self.message}"

    @classmethod
    def of(cls, e: TraceError, severity: str = "error") -> Problem:
        return cls(e.path, e.line, e.column, e.message, severity)


class FileProblems(StackmindError, ValueError):
    """A file that could not be read, with every problem found in it."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# ---- reading text safely ----------------------------------------------------------------------

def read_text(path: Path | str, limit: int = MAX_POLICY_BYTES) -> str:
    """A file's text, refusing what is not small UTF-8 text with a location."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > limit:
            raise FileProblems([Problem(str(p), 1, 1, f"file is {size:,} bytes, more than the {limit:,} allowed: split it")])
        data = p.read_bytes()
    except OSError as e:
        raise FileProblems([Problem(str(p), 1, 1, f"cannot read the file: {e.strerror or e}")]) from e
    return decode(data, str(p))


def decode(data: bytes, path: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise FileProblems([Problem(path, line, col, f"undecodable byte 0x{data[e.start]:02x}: the file is not "
                                                        "UTF-8 text; save it as UTF-8")]) from e


def precheck(text: str, path: str, limit: int = MAX_POLICY_BYTES) -> None:
    """Refuse hostile text quickly, before the YAML scanner (which is slow and recursive) runs."""
    if len(text) > limit:
        raise FileProblems([Problem(path, 1, 1, f"text is longer than {limit:,} characters: split it")])
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise FileProblems([Problem(path, line, nul - text.rfind("\n", 0, nul), "NUL byte: this looks like a "
                                    "binary file, not a policy or trace")])
    for lineno, line in enumerate(text.split("\n"), 1):
        if len(line) > MAX_LINE_CHARS:
            raise FileProblems([Problem(path, lineno, MAX_LINE_CHARS + 1, f"line is {len(line):,} characters long "
                                        f"(at most {MAX_LINE_CHARS:,}): break it up or use a block (|)")])
    _check_depth(text, path, MAX_POLICY_NODES if limit <= MAX_POLICY_BYTES else MAX_TRACE_NODES)


def _check_depth(text: str, path: str, max_nodes: int) -> None:
    """Refuse deep nesting and huge documents from the YAML event stream (libyaml's parser, which is
    fast and not recursive; composing is recursive)."""
    depth = nodes = 0
    try:
        for ev in yaml.parse(text, Loader=_LOADER):
            if isinstance(ev, yaml.NodeEvent):
                nodes += 1
                if nodes > max_nodes:
                    m = ev.start_mark
                    raise FileProblems([Problem(path, m.line + 1, m.column + 1, f"more than {max_nodes:,} values in "
                                                "one file: split it")])
            if isinstance(ev, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    m = ev.start_mark
                    raise FileProblems([Problem(path, m.line + 1, m.column + 1, f"lists and mappings nested more "
                                                f"than {MAX_DEPTH} deep: no policy or trace needs that; flatten it")])
            elif isinstance(ev, yaml.SequenceEndEvent | yaml.MappingEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return  # composing reports the syntax error with its location


def compose(text: str, path: str, limit: int = MAX_POLICY_BYTES) -> yaml.Node | None:
    precheck(text, path, limit)
    try:
        return compose_yaml(text, path, fast=True)
    except TraceError as e:
        raise FileProblems([Problem.of(e)]) from e


# ---- locations --------------------------------------------------------------------------------

class Locations:
    """Maps a key path such as ("examples", 2, "response") to the line and column it starts at."""

    def __init__(self, root: yaml.Node, text: str) -> None:
        self.root = root
        self.lines = text.split("\n")

    def node(self, loc: tuple[str | int, ...]) -> tuple[yaml.Node, bool]:
        """The deepest node along loc, and whether the whole path was found."""
        node = self.root
        for part in loc:
            child = _child(node, part)
            if child is None:
                return node, False
            node = child
        return node, True

    def key_node(self, loc: tuple[str | int, ...]) -> yaml.Node | None:
        parent, found = self.node(loc[:-1])
        if not found or not isinstance(parent, yaml.MappingNode):
            return None
        for k, _v in parent.value:
            if isinstance(k, yaml.ScalarNode) and k.value == loc[-1]:
                return k
        return None

    def position(self, loc: tuple[str | int, ...], offset: int | None = None) -> tuple[int, int]:
        node, found = self.node(loc)
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        if offset is None or not found or not isinstance(node, yaml.ScalarNode):
            return line, col
        return self._offset(node, offset)

    def _offset(self, node: yaml.ScalarNode, offset: int) -> tuple[int, int]:
        before = node.value[:offset]
        newlines = before.count("\n")
        in_line = offset - (before.rfind("\n") + 1)
        line0, col0 = node.start_mark.line, node.start_mark.column
        if node.style == "|":
            src = line0 + 1 + newlines
            text = self.lines[src] if src < len(self.lines) else ""
            indent = len(text) - len(text.lstrip(" "))
            return src + 1, indent + in_line + 1
        if newlines == 0:
            quote = 1 if node.style in ("'", '"') else 0
            return line0 + 1, col0 + quote + in_line + 1
        return line0 + 1, col0 + 1


def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == part:
                return v
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return node.value[part]
    return None


# ---- policies ---------------------------------------------------------------------------------

_HELP = "see docs/policies.md for the format"


def parse_policy(text: str, path: str = "<policy>") -> Policy:
    """A policy from its file's text; raises FileProblems listing every problem found."""
    root = compose(text, path)
    if root is None:
        raise FileProblems([Problem(path, 1, 1, "empty file: a policy needs name:, description:, examples: and "
                                    f"training: ({_HELP}); `stackmind policy new NAME` writes a starting point")])
    if not isinstance(root, yaml.MappingNode):
        raise FileProblems([Problem.of(node_error(root, "a policy is a mapping of keys (name:, description:, "
                                                  f"examples:, ...); {_HELP}", path))])
    try:
        data = plain(root, path)
    except TraceError as e:
        raise FileProblems([Problem.of(e)]) from e
    locs = Locations(root, text)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as e:
        raise FileProblems(_validation_problems(e, locs, path)) from None
    policy._source, policy._locations = path, locs
    return policy


def _validation_problems(err: ValidationError, locs: Locations, path: str) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[int, int, str]] = set()
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        kind = e["type"]
        where = _where(loc[:-1]) if loc else "the file"
        if kind == "extra_forbidden":
            key = str(loc[-1])
            node = locs.key_node(loc) or locs.node(loc)[0]
            model_keys = _known_keys(loc[:-1])
            near = difflib.get_close_matches(key, model_keys, n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"known keys here: {', '.join(model_keys)}"
            msg = f"unknown key {key!r} in {where}: {hint}"
        elif kind == "missing":
            node = locs.node(loc[:-1])[0]
            msg = f"missing {loc[-1]!r} in {where}: add it ({_HELP})"
        else:
            node, found = locs.node(loc)
            field = _where(loc)
            msg = f"{field}: {_plain_msg(e['msg'], kind)}"
            if not found:
                msg += f" ({_HELP})"
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        if (line, col, msg) in seen:
            continue
        seen.add((line, col, msg))
        problems.append(Problem(path, line, col, msg))
    return problems or [Problem(path, 1, 1, f"not a valid policy: {err}")]


def _plain_msg(msg: str, kind: str) -> str:
    msg = msg.removeprefix("Value error, ")
    if kind.endswith("_type") or kind in ("string_type", "list_type", "dict_type", "model_type"):
        if "string" in kind:
            msg += ": write text (quote it with \"...\" or use a block |)"
        elif "list" in kind:
            msg += ": write a list, one item per '- ' line"
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            msg += ": write a mapping of keys (key: value)"
    if kind == "string_pattern_mismatch":
        msg = "must be one word of letters, digits and _ that does not start with a digit (it is invoked as @name(...))"
    if kind == "too_short":
        msg += ": add at least one"
    return msg


def _where(loc: tuple[Any, ...]) -> str:
    if not loc:
        return "the policy"
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    from stackmind.policies import schema as s

    model: Any = s.Policy
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        model = _model_of(field.annotation)
        if model is None:
            return []
    return list(model.model_fields)


def _model_of(annotation: Any) -> Any:
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for a in get_args(annotation):
        m = _model_of(a)
        if m is not None:
            return m
    return None


def load_policy(path: Path | str) -> Policy:
    return parse_policy(read_text(path), str(path))


# ---- traces and episodes ----------------------------------------------------------------------


def parse_trace(text: str, path: str = "<trace>") -> Episode:
    precheck(text, path, MAX_TRACE_BYTES)
    try:
        return Episode.from_text(text, path, fast=True)
    except TraceError as e:
        raise FileProblems([Problem.of(e)]) from e


def load_trace(path: Path | str) -> Episode:
    return parse_trace(read_text(path, MAX_TRACE_BYTES), str(path))


def is_trace_text(text: str) -> bool:
    """Whether a .yaml file is a trace (its top level has goal: or trace:) rather than a policy."""
    for line in text.split("\n"):
        if line and not line[0].isspace() and not line.startswith("#"):
            key = line.split(":", 1)[0].strip()
            if key in ("goal", "trace", "steps"):
                return True
            if key in ("name", "description", "examples", "training"):
                return False
    return False


def read(path: Path | str) -> Policy | Episode:
    """A policy, a human-guided trace or an agent's episode, whichever the file is."""
    p = Path(path)
    if p.name.endswith(TRACE_SUFFIX):
        return load_trace(p)
    if p.name.endswith(POLICY_SUFFIX):
        return load_policy(p)
    text = read_text(p, MAX_TRACE_BYTES)
    return parse_trace(text, str(p)) if is_trace_text(text) else parse_policy(text, str(p))


# ---- where invocations sit --------------------------------------------------------------------

@dataclass(frozen=True)
class Site:
    """An ``@name(...)`` in a file, with its position."""

    invocation: Invocation
    path: str
    line: int
    column: int
    context: str  # e.g. examples[2].response
    unclosed: bool = False  # an ``@name(`` whose ')' is missing


def policy_sites(policy: Policy) -> Iterator[Site]:
    """Invocations in a policy's example responses and trajectory steps."""
    for i, ex in enumerate(policy.examples):
        yield from _sites(policy, ("examples", i, "response"), ex.response)
    for t, traj in enumerate(policy.trajectories):
        for s, step in enumerate(traj.steps):
            yield from _sites(policy, ("trajectories", t, "steps", s, "thought"), step.thought)
            if step.action:
                yield from _sites(policy, ("trajectories", t, "steps", s, "action"), step.action)


def _sites(policy: Policy, loc: tuple[str | int, ...], text: str) -> Iterator[Site]:
    for inv in find_invocations(text):
        path, line, col = policy.where(*loc, offset=inv.start)
        yield Site(inv, path, line, col, _where(loc))
    for off in unclosed_sites(text):
        path, line, col = policy.where(*loc, offset=off)
        name = text[off + 1:text.index("(", off)]
        yield Site(Invocation(name, "", off, off), path, line, col, _where(loc), unclosed=True)


def unclosed_sites(text: str) -> list[int]:
    """Offsets of ``@name(`` with no closing parenthesis (find_invocations skips those)."""
    import re

    closed = {inv.start for inv in find_invocations(text)}
    return [m.start() for m in re.finditer(r"@[A-Za-z_][A-Za-z0-9_]*\(", text) if m.start() not in closed]


def trace_sites(text: str, path: str) -> Iterator[Site]:
    """Invocations in a trace's steps (thought and action, substeps too), located in the file;
    an ``@name(`` left open comes as a Site with ``unclosed=True``."""
    root = compose(text, path, MAX_TRACE_BYTES)
    if not isinstance(root, yaml.MappingNode):
        return
    locs = Locations(root, text)
    steps = _child(root, "steps")
    yield from _trace_steps(locs, steps, ("steps",), path)


def _trace_steps(locs: Locations, steps: yaml.Node | None, loc: tuple[str | int, ...],
                 path: str) -> Iterator[Site]:
    if not isinstance(steps, yaml.SequenceNode):
        return
    for i, step in enumerate(steps.value):
        for key in ("thought", "action"):
            node = _child(step, key)
            if isinstance(node, yaml.ScalarNode) and isinstance(node.value, str):
                here = (*loc, i, key)
                for inv in find_invocations(node.value):
                    line, col = locs.position(here, inv.start)
                    yield Site(inv, path, line, col, _where(here))
                for off in unclosed_sites(node.value):
                    line, col = locs.position(here, off)
                    name = node.value[off + 1:node.value.index("(", off)]
                    yield Site(Invocation(name, "", off, off), path, line, col, _where(here), unclosed=True)
        yield from _trace_steps(locs, _child(step, "substeps"), (*loc, i, "substeps"), path)
