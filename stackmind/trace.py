"""Episode traces: the text format for what the agent lived and what people write by hand.

One YAML document per file (``*.trace.yaml``), multi-line texts as literal blocks so they read as
written. The format is documented in docs/trace-format.md. `Episode.to_text` and `Episode.from_text`
round-trip losslessly; errors name file:line:column and what to do.
"""

from __future__ import annotations

import datetime as dt
import math
import re
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

    Before composing, one streaming pass over the parser's events (libyaml's where PyYAML has it:
    iterative, so no nesting overflows it) refuses anchors and aliases, nesting deeper than
    `MAX_DEPTH` and more than `MAX_NODES` values, so what a file says cannot make the reader's time
    or memory unbounded. ``fast`` composes with libyaml's C loader too (same nodes and marks; its
    syntax-error wording differs slightly)."""
    loader = _CLoader if fast and _CLoader is not None else yaml.SafeLoader
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise TraceError("not valid Unicode text (a lone surrogate): save the file as UTF-8", path,
                         text.count("\n", 0, e.start) + 1) from None
    if size > MAX_TRACE_BYTES:
        raise TraceError(f"file is larger than {MAX_TRACE_BYTES // 2**20} MiB: split it", path)
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise TraceError("NUL byte in text: this looks like a binary file", path, line)
    _scan_events(text, path)
    try:
        return yaml.compose(text, Loader=loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = e.problem or e.context or "unreadable"
        hint = ("text containing ': ' or ' #' must be quoted (\"...\") or written as a block (|)"
                if "mapping values" in problem else "check indentation and quoting")
        raise TraceError(f"YAML syntax: {problem}: {hint}", path, line, col) from e
    except (yaml.YAMLError, RecursionError, MemoryError) as e:
        raise TraceError(f"YAML could not be read ({type(e).__name__}): simplify the nesting", path) from e


MAX_DEPTH = 64  # nested mappings and lists
MAX_NODES = 200_000  # values in one file (a long episode with a search tree has a few thousand)


def _scan_events(text: str, path: str) -> None:
    """Refuse aliases, deep nesting and too many values, streaming; a syntax error is left for
    `yaml.compose` to report with its location."""
    depth = nodes = 0
    try:
        for ev in yaml.parse(text, Loader=_CLoader or yaml.SafeLoader):
            if isinstance(ev, yaml.AliasEvent) or getattr(ev, "anchor", None):
                raise TraceError("YAML anchors and aliases (&name / *name) are not allowed: write the text out",
                                 path)
            if isinstance(ev, yaml.CollectionStartEvent):
                depth += 1
                nodes += 1
                if depth > MAX_DEPTH:
                    mark = ev.start_mark
                    raise TraceError(f"nesting deeper than {MAX_DEPTH} levels: flatten it", path,
                                     mark.line + 1, mark.column + 1)
            elif isinstance(ev, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(ev, yaml.ScalarEvent):
                nodes += 1
            if nodes > MAX_NODES:
                mark = ev.start_mark
                raise TraceError(f"more than {MAX_NODES:,} values in one file: split it", path,
                                 mark.line + 1, mark.column + 1)
    except yaml.YAMLError:
        return


def node_error(node: yaml.Node, message: str, path: str) -> TraceError:
    return TraceError(message, path, node.start_mark.line + 1, node.start_mark.column + 1)


def plain(node: yaml.Node, path: str, depth: int = 0) -> Any:
    """A composed node as plain Python (str, int, float, bool, None, list, dict); a date or time
    becomes its ISO text, and any other kind of value (``!!binary``, a custom tag) is refused."""
    if depth > MAX_DEPTH:
        raise node_error(node, f"nesting deeper than {MAX_DEPTH} levels: flatten it", path)
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
        value = _scalar(node)
    except (yaml.YAMLError, ValueError, OverflowError) as e:
        raise node_error(node, f"bad value: {e}", path) from e
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if value is not None and not isinstance(value, str | int | float | bool):
        raise node_error(node, f"a value of type {type(value).__name__} is not allowed: write it as text", path)
    return value


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _expect(node: yaml.Node, value: Any, types: tuple[type, ...], what: str, path: str) -> None:
    if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
        names = " or ".join(t.__name__ for t in types)
        got = "null" if value is None else type(value).__name__
        raise node_error(node, f"{what} must be {names}, not {got}", path)


_TYPES: dict[str, tuple[type, ...]] = {
    "goal": (str,), "answer": (str, int, float), "reward": (int, float), "kind": (str,), "id": (str,),
    "created": (str,), "stack": (str,), "model": (str,), "meta": (dict,), "tree": (dict,), "trace": (int,),
    "thought": (str,), "action": (str,), "observation": (str, int, float), "view": (str,),
    "value": (int, float),
}
_NUMBERS = {"reward", "value"}
MAX_NUMBER = 1e12  # rewards and values: finite, and no larger than this either way
MAX_WEIGHT = 100.0  # meta.weight: how many times consolidation repeats the episode
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # an id names the file the trace is saved as


def _key(knode: yaml.Node, path: str) -> str:
    key = plain(knode, path)
    if not isinstance(key, str):
        raise node_error(knode, f"key {key!r} must be text", path)
    return key


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _value(key: str, vnode: yaml.Node, path: str) -> Any:
    """A typed key's value, checked: its type, and finite, bounded numbers."""
    value = plain(vnode, path)
    if key in _TYPES:
        _expect(vnode, value, _TYPES[key], key, path)
    if key in _NUMBERS or key == "answer" and isinstance(value, float):
        if not math.isfinite(value) or abs(value) > MAX_NUMBER:
            raise node_error(vnode, f"{key} must be a finite number between {-MAX_NUMBER:g} and {MAX_NUMBER:g}, "
                                    f"not {value!r}", path)
    return value


def _check_meta(vnode: yaml.Node, meta: dict[str, Any], path: str) -> None:
    """The meta keys stackmind reads back: ``weight`` (consolidation repeats the episode that often)."""
    if "weight" not in meta:
        return
    w = meta["weight"]
    wnode = next((v for k, v in vnode.value if isinstance(k, yaml.ScalarNode) and k.value == "weight"), vnode)
    if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or not 0 <= w <= MAX_WEIGHT:
        raise node_error(wnode, f"meta.weight must be a number from 0 to {MAX_WEIGHT:g} (how many times "
                                f"consolidation repeats this episode), not {w!r}", path)


def _parse_episode(text: str, path: str, fast: bool = False) -> Episode:
    root = compose_yaml(text, path, fast=fast)
    if root is None:
        raise TraceError("empty trace: a trace needs at least 'goal:'", path)
    if not isinstance(root, yaml.MappingNode):
        raise node_error(root, "a trace is a mapping of keys (goal:, steps:, ...)", path)
    data: dict[str, Any] = {}
    seen: set[str] = set()
    for knode, vnode in root.value:
        key = _key(knode, path)
        if key not in _EPISODE_KEYS:
            raise node_error(knode, f"unknown key {key!r}; known keys: {', '.join(sorted(_EPISODE_KEYS))}", path)
        if key in seen:
            raise node_error(knode, f"duplicate key {key!r}: keep one", path)
        seen.add(key)
        if _is_null(vnode):  # an optional key left empty (or null) counts as absent
            if key == "goal":
                raise node_error(vnode, "goal is empty (null): write what the episode was trying to do", path)
            continue
        if key == "steps":
            if not isinstance(vnode, yaml.SequenceNode):
                raise node_error(vnode, "steps must be a list of steps (each starting with '- thought:')", path)
            data["steps"] = [_parse_step(s, path) for s in vnode.value]
            continue
        data[key] = _value(key, vnode, path)
        if key == "meta":
            _check_meta(vnode, data[key], path)
        if key == "id" and not _ID.match(data[key]):
            raise node_error(vnode, "id must be 1 to 128 letters, digits, '.', '_' or '-' (it names the "
                                    "trace's file), starting with a letter or digit", path)
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
    return Episode(**data)


MAX_SUBSTEP_DEPTH = 16


def _parse_step(node: yaml.Node, path: str, depth: int = 0) -> Step:
    if not isinstance(node, yaml.MappingNode):
        raise node_error(node, "a step is a mapping (thought:, action:, observation:, ...)", path)
    data: dict[str, Any] = {}
    seen: set[str] = set()
    for knode, vnode in node.value:
        key = _key(knode, path)
        if key not in _STEP_KEYS:
            raise node_error(knode, f"unknown step key {key!r}; known: {', '.join(sorted(_STEP_KEYS))}", path)
        if key in seen:
            raise node_error(knode, f"duplicate key {key!r} in step: keep one", path)
        seen.add(key)
        if _is_null(vnode):  # left empty: absent (a thought then is "")
            continue
        if key == "substeps":
            if not isinstance(vnode, yaml.SequenceNode):
                raise node_error(vnode, "substeps must be a list of steps (each starting with '- thought:')", path)
            if depth >= MAX_SUBSTEP_DEPTH:
                raise node_error(vnode, f"substeps nested more than {MAX_SUBSTEP_DEPTH} deep: flatten them", path)
            data["substeps"] = [_parse_step(s, path, depth + 1) for s in vnode.value]
            continue
        value = _value(key, vnode, path)
        if key == "observation" and isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        data[key] = value
    return Step(**data)


def load_episodes(directory: Path) -> list[Episode]:
    return [Episode.load(p) for p in sorted(directory.glob("*.trace.yaml"))]
