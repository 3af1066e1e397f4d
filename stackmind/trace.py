"""Episode traces: the text format for what the agent lived and what people write by hand.

One YAML document per file (``*.trace.yaml``), multi-line texts as literal blocks so they read as
written. The format is documented in docs/trace-format.md. `Episode.to_text` and `Episode.from_text`
round-trip losslessly; errors name file:line:column and what to do.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from stackmind.errors import StackmindError

FORMAT_VERSION = 1
HEADER = "# stackmind trace v1: see docs/trace-format.md\n"
TRACE_KINDS = ("episode", "guided")


class TraceError(StackmindError, ValueError):
    """A trace file that cannot be read, with where and what to do."""

    def __init__(self, message: str, path: str | Path = "<text>", line: int = 1, column: int = 1) -> None:
        self.path, self.line, self.column, self.message = str(path), line, column, message
        super().__init__(f"{path}:{line}:{column}: {message}")


@dataclass
class Step:
    thought: str = ""
    action: str | None = None  # an invocation such as @python(...) or @decompose(goal=...)
    observation: str | None = None
    view: str | None = None  # the rendered stack the model saw at this step
    value: float | None = None  # the value predicted for this step
    reward: float | None = None  # reward known for this step (returns-to-go after hindsight)
    meta: dict[str, Any] = field(default_factory=dict)
    # Steps taken inside a learning policy that this step invoked (@name(...) in its thought or
    # action): the policy's sub-goal is solved in them, and their answer pops back as this step's
    # observation. Nested invocations nest here. Empty for a flat step.
    substeps: list[Step] = field(default_factory=list)


@dataclass
class Episode:
    goal: str
    steps: list[Step] = field(default_factory=list)
    answer: str | None = None
    reward: float | None = None
    kind: str = "episode"  # episode (the agent lived it) | guided (a person wrote it)
    id: str = field(default_factory=lambda: new_episode_id())
    created: str = field(default_factory=lambda: _now())
    stack: str | None = None
    model: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    tree: dict[str, Any] | None = None  # the search tree (networkx node-link data), when searched

    # ---- writing ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"trace": FORMAT_VERSION}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "steps":
                v = [_step_dict(s) for s in v]
            if v is None or v == {} and f.name in ("meta",):
                continue
            d[f.name] = v
        return d

    def to_text(self) -> str:
        return HEADER + yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)

    def save(self, directory: Path) -> Path:
        """Write atomically (temp file + rename) as ``<id>.trace.yaml``."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.id}.trace.yaml"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_text(), encoding="utf-8")
        tmp.replace(path)
        return path

    # ---- reading ------------------------------------------------------------------------------
    @classmethod
    def from_text(cls, text: str, path: str | Path = "<text>", *, fast: bool = False) -> Episode:
        """Parse a trace; ``fast`` uses libyaml (C) to compose, about 20x quicker on big files."""
        return _parse_episode(text, str(path), fast=fast)

    @classmethod
    def load(cls, path: Path | str) -> Episode:
        path = Path(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise TraceError(f"not UTF-8 text (byte {e.start}): save the file as UTF-8", path) from e
        return cls.from_text(text, path)


def new_episode_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _step_dict(s: Step) -> dict[str, Any]:
    d: dict[str, Any] = {"thought": s.thought}
    for name in ("action", "observation", "view", "value", "reward"):
        if getattr(s, name) is not None:
            d[name] = getattr(s, name)
    if s.meta:
        d["meta"] = s.meta
    if s.substeps:
        d["substeps"] = [_step_dict(sub) for sub in s.substeps]
    return d


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, s: str) -> yaml.ScalarNode:
    if "\n" in s:
        return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", s)


_Dumper.add_representer(str, _str_representer)


# ---- parsing with locations -------------------------------------------------------------------

_EPISODE_KEYS = {f.name for f in fields(Episode)} | {"trace"}
_STEP_KEYS = {f.name for f in fields(Step)}
_REQUIRED = {"goal"}
MAX_TRACE_BYTES = 8 * 1024 * 1024


_CLoader = getattr(yaml, "CSafeLoader", None)


def compose_yaml(text: str, path: str, fast: bool = False) -> yaml.Node | None:
    """Compose YAML into nodes (which carry line and column), refusing hostile input quickly.

    ``fast`` composes with libyaml's C loader where PyYAML has it (same nodes and marks; its
    syntax-error wording differs slightly)."""
    loader = _CLoader if fast and _CLoader is not None else yaml.SafeLoader
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TRACE_BYTES:
        raise TraceError(f"file is larger than {MAX_TRACE_BYTES // 2**20} MiB: split it", path)
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise TraceError("NUL byte in text: this looks like a binary file", path, line)
    if ("&" in text or "*" in text) and _has_alias(text, loader):
        raise TraceError("YAML anchors and aliases (&name / *name) are not allowed: write the text out", path)
    try:
        return yaml.compose(text, Loader=loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = e.problem or e.context or "unreadable"
        hint = ("text containing ': ' or ' #' must be quoted (\"...\") or written as a block (|)"
                if "mapping values" in problem else "check indentation and quoting")
        raise TraceError(f"YAML syntax: {problem}: {hint}", path, line, col) from e
    except (yaml.YAMLError, RecursionError) as e:
        raise TraceError(f"YAML could not be read ({type(e).__name__}): simplify the nesting", path) from e


def _has_alias(text: str, loader: Any = yaml.SafeLoader) -> bool:
    try:
        for ev in yaml.parse(text, Loader=loader):
            if isinstance(ev, yaml.AliasEvent) or getattr(ev, "anchor", None):
                return True
    except (yaml.YAMLError, RecursionError):
        return False
    return False


def node_error(node: yaml.Node, message: str, path: str) -> TraceError:
    return TraceError(message, path, node.start_mark.line + 1, node.start_mark.column + 1)


def plain(node: yaml.Node, path: str, depth: int = 0) -> Any:
    """A composed node as plain Python (str, int, float, bool, None, list, dict)."""
    if depth > 50:
        raise node_error(node, "nesting deeper than 50 levels: flatten it", path)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for k, v in node.value:
            key = plain(k, path, depth + 1)
            if not isinstance(key, str):
                raise node_error(k, f"key {key!r} must be text", path)
            if key in out:
                raise node_error(k, f"duplicate key {key!r}: keep one", path)
            out[key] = plain(v, path, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [plain(v, path, depth + 1) for v in node.value]
    try:
        return _scalar(node)
    except (yaml.YAMLError, ValueError) as e:
        raise node_error(node, f"bad value: {e}", path) from e


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _expect(node: yaml.Node, value: Any, types: tuple[type, ...], what: str, path: str) -> None:
    if value is not None and not isinstance(value, types) or isinstance(value, bool) and bool not in types:
        names = " or ".join(t.__name__ for t in types)
        raise node_error(node, f"{what} must be {names}, not {type(value).__name__}", path)


_TYPES: dict[str, tuple[type, ...]] = {
    "goal": (str,), "answer": (str, int, float), "reward": (int, float), "kind": (str,), "id": (str,),
    "created": (str,), "stack": (str,), "model": (str,), "meta": (dict,), "tree": (dict,), "trace": (int,),
    "thought": (str,), "action": (str,), "observation": (str, int, float), "view": (str,),
    "value": (int, float),
}


def _parse_episode(text: str, path: str, fast: bool = False) -> Episode:
    root = compose_yaml(text, path, fast=fast)
    if root is None:
        raise TraceError("empty trace: a trace needs at least 'goal:'", path)
    if not isinstance(root, yaml.MappingNode):
        raise node_error(root, "a trace is a mapping of keys (goal:, steps:, ...)", path)
    data: dict[str, Any] = {}
    for knode, vnode in root.value:
        key = plain(knode, path)
        if key not in _EPISODE_KEYS:
            raise node_error(knode, f"unknown key {key!r}; known keys: {', '.join(sorted(_EPISODE_KEYS))}", path)
        if key in data:
            raise node_error(knode, f"duplicate key {key!r}: keep one", path)
        if key == "steps":
            if not isinstance(vnode, yaml.SequenceNode):
                raise node_error(vnode, "steps must be a list of steps (each starting with '- thought:')", path)
            data["steps"] = [_parse_step(s, path) for s in vnode.value]
            continue
        value = plain(vnode, path)
        if key in _TYPES:
            _expect(vnode, value, _TYPES[key], key, path)
        data[key] = value
    missing = _REQUIRED - data.keys()
    if missing:
        raise node_error(root, f"missing {', '.join(sorted(missing))}: every trace states its goal", path)
    version = data.pop("trace", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise TraceError(f"trace format version {version} is not supported (this stackmind reads {FORMAT_VERSION})", path)
    if data.get("kind", "episode") not in TRACE_KINDS:
        raise TraceError(f"kind must be one of {', '.join(TRACE_KINDS)}", path)
    if isinstance(data.get("answer"), int | float):
        data["answer"] = str(data["answer"])
    for k in ("created",):
        if k in data and not isinstance(data[k], str):
            data[k] = str(data[k])
    return Episode(**data)


MAX_SUBSTEP_DEPTH = 16


def _parse_step(node: yaml.Node, path: str, depth: int = 0) -> Step:
    if not isinstance(node, yaml.MappingNode):
        raise node_error(node, "a step is a mapping (thought:, action:, observation:, ...)", path)
    data: dict[str, Any] = {}
    for knode, vnode in node.value:
        key = plain(knode, path)
        if key not in _STEP_KEYS:
            raise node_error(knode, f"unknown step key {key!r}; known: {', '.join(sorted(_STEP_KEYS))}", path)
        if key in data:
            raise node_error(knode, f"duplicate key {key!r} in step: keep one", path)
        if key == "substeps":
            if not isinstance(vnode, yaml.SequenceNode):
                raise node_error(vnode, "substeps must be a list of steps (each starting with '- thought:')", path)
            if depth >= MAX_SUBSTEP_DEPTH:
                raise node_error(vnode, f"substeps nested more than {MAX_SUBSTEP_DEPTH} deep: flatten them", path)
            data["substeps"] = [_parse_step(s, path, depth + 1) for s in vnode.value]
            continue
        value = plain(vnode, path)
        if key in _TYPES:
            _expect(vnode, value, _TYPES[key], key, path)
        if key == "observation" and isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        data[key] = "" if key == "thought" and value is None else value
    return Step(**data)


def load_episodes(directory: Path) -> list[Episode]:
    return [Episode.load(p) for p in sorted(directory.glob("*.trace.yaml"))]
