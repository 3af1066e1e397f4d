"""The adapter registry: versioned LoRA adapters under ``settings.adapters_dir``.

    adapters/
      v0001/                 adapter_config.json, adapter_model.safetensors, stackmind.json (lineage, metrics),
                             adapter.gguf (the same adapter converted for the llama.cpp backend)
      v0002/ ...
      current -> v0002       the promoted adapter (a relative symlink; every backend loads it at start)
      history.jsonl          every promotion and rollback, append-only

A version folder is written under a temporary name and renamed into place, so it is complete or
absent. Promotion swaps ``current`` with one rename (a new symlink renamed over the old), so a reader
sees the old adapter or the new one, never neither. Nothing here deletes a version.

People can edit these files, and a kill can tear the last line of ``history.jsonl``: every reader
validates what it reads (`AdapterMeta`, `HistoryEntry`), skips what does not hold, and says so in
`AdapterRegistry.problems` (``file:line: what is wrong``), which the command line prints as warnings.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stackmind.consolidate.config import VLLM_LORA_RANKS
from stackmind.consolidate.dataset import atomic_write
from stackmind.errors import StackmindError
from stackmind.llm.lora_gguf import GGUF_NAME, AdapterConversionError, convert_adapter
from stackmind.settings import Settings

_VERSION = re.compile(r"^v(\d{4,})$")
META = "stackmind.json"
MAX_META_BYTES = 1 << 20
MAX_HISTORY_BYTES = 16 << 20


class AdapterMeta(BaseModel):
    """What a version's ``stackmind.json`` may say (more keys are kept as they are)."""

    model_config = ConfigDict(extra="allow")

    version: str | None = None
    parent: str | None = Field(None, max_length=200)
    rank: int | None = None
    created: str | None = None
    run: str | None = None
    init: str | None = None
    gate: dict[str, Any] | None = None
    base_model: str | None = None

    @field_validator("rank")
    @classmethod
    def _served_rank(cls, v: int | None) -> int | None:
        if v is not None and v not in VLLM_LORA_RANKS:
            raise ValueError(f"rank {v} is not a LoRA rank vLLM serves ({', '.join(map(str, VLLM_LORA_RANKS))})")
        return v


class HistoryEntry(BaseModel):
    """One line of ``history.jsonl``."""

    model_config = ConfigDict(extra="allow")

    at: str | None = None
    event: Literal["promoted", "manual", "rollback"]
    version: str | None = Field(None, max_length=200)
    previous: str | None = Field(None, max_length=200)


class RegistryError(StackmindError, RuntimeError):
    """A registry request that cannot be done, with what to do instead."""


@dataclass
class AdapterVersion:
    name: str
    path: Path
    meta: dict[str, Any]

    @property
    def parent(self) -> str | None:
        return self.meta.get("parent")

    @property
    def rank(self) -> int | None:
        return self.meta.get("rank")


class AdapterRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[str] = []  # what reading skipped, as `file:line: what is wrong`

    def _problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)

    @classmethod
    def of(cls, settings: Settings) -> AdapterRegistry:
        return cls(settings.adapters_dir)

    # ---- reading --------------------------------------------------------------------------------
    def versions(self) -> list[AdapterVersion]:
        if not self.root.is_dir():
            return []
        out = []
        for p in sorted(self.root.iterdir()):
            if _VERSION.match(p.name) and p.is_dir() and not p.is_symlink():
                out.append(AdapterVersion(p.name, p, self._meta(p / META)))
        return out

    def _meta(self, path: Path) -> dict[str, Any]:
        """A version's metadata, validated; what does not hold is left out (and reported)."""
        if not path.is_file():
            return {}
        why = "the version is listed without it"
        try:
            if path.stat().st_size > MAX_META_BYTES:
                self._problem(f"{path}:1: larger than {MAX_META_BYTES >> 20} MiB; {why}")
                return {}
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            self._problem(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg}); {why}")
            return {}
        except (OSError, UnicodeDecodeError, RecursionError) as e:
            self._problem(f"{path}:1: cannot be read ({type(e).__name__}: {e}); {why}")
            return {}
        if not isinstance(data, dict):
            self._problem(f"{path}:1: must be a JSON object, not {type(data).__name__}; {why}")
            return {}
        for _ in range(len(data) + 1):  # drop the keys that do not hold, keep the rest
            try:
                return AdapterMeta.model_validate(data).model_dump(exclude_unset=True)
            except ValidationError as e:
                bad = {str(err["loc"][0]) for err in e.errors() if err["loc"]}
                if not bad & set(data):
                    bad = set(data)
                self._problem(f"{path}:1: {'; '.join(_short_error(err) for err in e.errors())}; "
                              f"left out: {', '.join(sorted(bad))}")
                data = {k: v for k, v in data.items() if k not in bad}
        return {}

    def get(self, name: str) -> AdapterVersion:
        name = name if name.startswith("v") else f"v{int(name):04d}" if name.isdigit() else name
        for v in self.versions():
            if v.name == name:
                return v
        known = ", ".join(v.name for v in self.versions()) or "none yet"
        raise RegistryError(f"no adapter version {name!r} (known: {known}); see `stackmind adapters list`")

    def current(self) -> AdapterVersion | None:
        """The promoted version, or None when the base model is served as is."""
        link = self.root / "current"
        if not (link / "adapter_config.json").is_file():
            return None
        target = link.resolve()
        for v in self.versions():
            if v.path.resolve() == target:
                return v
        return AdapterVersion(target.name, target, {})  # a hand-placed adapter folder

    def history(self) -> list[dict[str, Any]]:
        """Promotions and rollbacks, oldest first; a torn or malformed line is skipped (and reported)."""
        path = self.root / "history.jsonl"
        if not path.is_file():
            return []
        try:
            with path.open("rb") as f:
                raw = f.read(MAX_HISTORY_BYTES + 1)
        except OSError as e:
            self._problem(f"{path}:1: cannot be read ({e.strerror or e}); the history is taken as empty")
            return []
        if len(raw) > MAX_HISTORY_BYTES:
            self._problem(f"{path}: larger than {MAX_HISTORY_BYTES >> 20} MiB; only its first part is read")
        out = []
        lines = raw[:MAX_HISTORY_BYTES].decode("utf-8", "replace").splitlines()
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                out.append(HistoryEntry.model_validate_json(line).model_dump(exclude_unset=True))
            except ValidationError as e:
                torn = i == len(lines) and not raw.endswith(b"\n")
                what = "torn (the process was killed while writing it)" if torn else _short_error(e.errors()[0])
                self._problem(f"{path}:{i}: {what}; line skipped")
        return out

    def promoted_names(self) -> set[str]:
        return {h["version"] for h in self.history() if h.get("version")}

    # ---- writing --------------------------------------------------------------------------------
    def register(self, adapter_dir: Path, meta: dict[str, Any]) -> AdapterVersion:
        """Copy a saved adapter in as the next version (complete or absent, never half-written)."""
        if not (adapter_dir / "adapter_config.json").is_file():
            raise RegistryError(f"{adapter_dir} holds no adapter_config.json: not a saved peft adapter")
        self.root.mkdir(parents=True, exist_ok=True)
        name = self._next_name()
        tmp = self.root / f".{name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(adapter_dir, tmp)
        meta = {"version": name, "created": _now(), **meta, "gguf": _to_gguf(tmp)}
        (tmp / META).write_text(json.dumps(meta, indent=2, default=str))
        tmp.rename(self.root / name)
        return AdapterVersion(name, self.root / name, meta)

    def promote(self, name: str, *, reason: str = "promoted") -> AdapterVersion:
        version = self.get(name)
        if not (version.path / "adapter_config.json").is_file():
            raise RegistryError(f"{version.path} has no adapter_config.json: it cannot be served")
        previous = self.current()
        link = self.root / "current"
        if link.exists() and not link.is_symlink():
            raise RegistryError(f"{link} is a folder, not a symlink: move it aside (e.g. to {self.root}/manual) "
                                "so promotion can switch adapters atomically")
        tmp = self.root / f".current.tmp{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(version.name)  # relative: the data dir can move
        os.replace(tmp, link)
        self._log({"event": reason, "version": version.name,
                   "previous": previous.name if previous else None})
        return version

    def rollback(self) -> AdapterVersion | None:
        """Promote the version that was current before the current one (None: back to the base model)."""
        current = self.current()
        if current is None:
            raise RegistryError("no adapter is promoted: nothing to roll back")
        previous: str | None = None
        found = False
        for h in reversed(self.history()):
            if h.get("version") == current.name and h.get("event") in ("promoted", "manual"):
                previous, found = h.get("previous"), True
                break
        if not found and current.parent is not None and current.parent in {v.name for v in self.versions()}:
            # its promotion is not in the history (a torn line, a hand-placed link): its parent was current
            self._problem(f"{self.root / 'history.jsonl'}: no promotion of {current.name} recorded; rolling back "
                          f"to its parent {current.parent} (from its {META})")
            previous = current.parent
        if previous is None:
            link = self.root / "current"
            link.unlink()
            self._log({"event": "rollback", "version": None, "previous": current.name})
            return None
        version = self.get(previous)
        self.promote(version.name, reason="rollback")
        return version

    def _next_name(self) -> str:
        numbers = [int(m.group(1)) for p in self.root.iterdir() if (m := _VERSION.match(p.name))]
        return f"v{max(numbers, default=0) + 1:04d}"

    def _log(self, entry: dict[str, Any]) -> None:
        entry = {"at": _now(), **entry}
        path = self.root / "history.jsonl"
        with open(path, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:  # a torn last line (a kill mid-write) must not swallow this entry
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write((json.dumps(entry) + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())


def served_adapter(settings: Settings) -> dict[str, Any] | None:
    """The adapter a vLLM server was last told to serve (``{"name", "version", "base_url"}``), if any:
    the openai backend sends ``name`` as the model to select it."""
    path = settings.adapters_dir / "served.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8")[:MAX_META_BYTES])
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None  # unreadable: as if no adapter was hot-loaded (the server is asked for the base model)
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    return data


def record_served(settings: Settings, name: str, version: str, base_url: str) -> None:
    atomic_write(settings.adapters_dir / "served.json",
                 json.dumps({"name": name, "version": version, "base_url": base_url, "at": _now()}, indent=2))


def _short_error(err: Any) -> str:
    where = ".".join(str(x) for x in err.get("loc", ()))
    return f"{where + ': ' if where else ''}{err.get('msg', 'invalid')}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _to_gguf(version_dir: Path) -> str:
    """Convert a version's peft adapter to the GGUF file the llama.cpp backend serves (``adapter.gguf``
    beside it); what went wrong when it could not be converted (the transformers backend still serves it)."""
    try:
        convert_adapter(version_dir, version_dir / GGUF_NAME)
    except (AdapterConversionError, OSError) as e:
        return f"not converted: {e}"
    return GGUF_NAME

