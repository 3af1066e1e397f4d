"""The adapter registry: versioned LoRA adapters under ``settings.adapters_dir``.

    adapters/
      v0001/                 adapter_config.json, adapter_model.safetensors, stackmind.json (lineage, metrics)
      v0002/ ...
      current -> v0002       the promoted adapter (a relative symlink; the transformers backend loads it)
      history.jsonl          every promotion and rollback, append-only

A version folder is written under a temporary name and renamed into place, so it is complete or
absent. Promotion swaps ``current`` with one rename (a new symlink renamed over the old), so a reader
sees the old adapter or the new one, never neither. Nothing here deletes a version.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackmind.consolidate.dataset import atomic_write
from stackmind.errors import StackmindError
from stackmind.settings import Settings

_VERSION = re.compile(r"^v(\d{4,})$")
META = "stackmind.json"


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
                meta_path = p / META
                meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
                out.append(AdapterVersion(p.name, p, meta))
        return out

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
        path = self.root / "history.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

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
        meta = {"version": name, "created": _now(), **meta}
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
        for h in reversed(self.history()):
            if h.get("version") == current.name and h.get("event") in ("promoted", "manual"):
                previous = h.get("previous")
                break
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
        with open(self.root / "history.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())


def served_adapter(settings: Settings) -> dict[str, Any] | None:
    """The adapter a vLLM server was last told to serve (``{"name", "version", "base_url"}``), if any:
    the openai backend sends ``name`` as the model to select it."""
    path = settings.adapters_dir / "served.json"
    return json.loads(path.read_text()) if path.is_file() else None


def record_served(settings: Settings, name: str, version: str, base_url: str) -> None:
    atomic_write(settings.adapters_dir / "served.json",
                 json.dumps({"name": name, "version": version, "base_url": base_url, "at": _now()}, indent=2))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
