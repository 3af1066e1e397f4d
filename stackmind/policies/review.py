"""Where synthesized policies live, and what happened to each: kept, discarded, retired, reviewed.

    <learned dir>/<name>.v<N>.policy.yaml       kept policies, loaded by the library like human ones
    <learned dir>/<name>.v<N>.provenance.json   where each came from and how it was grounded
    <home>/synthesis/candidates/<name>.v<N>.*   every candidate ever written (never rewritten)
    <home>/synthesis/retired/<name>.v<N>.*      kept versions taken out of use (superseded, retired, rejected)
    <home>/synthesis/log.jsonl                  one line per decision, with the trial results

The learned dir is ``$STACKMIND_HOME/policies/learned`` unless ``STACKMIND_SYNTHESIS_LEARNED_DIR``
names another. Nothing is overwritten in place: a new version of a name is a new file, and the
version it replaces moves to ``retired/``. Every file is written to a temporary name and renamed,
so a reader never sees half a policy.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackmind.errors import StackmindError
from stackmind.settings import Settings

EVENTS = ("kept", "pending", "discarded", "dropped", "retired", "superseded", "remeasured", "accepted", "rejected")
_VERSIONED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>\d+)\.policy\.yaml$")


class ReviewError(StackmindError, ValueError):
    """A review action that cannot be done (no such candidate, wrong state), with what to do."""


def learned_dir(home: Path, configured: Path | None = None) -> Path:
    """Where kept policies go: ``configured``, ``$STACKMIND_SYNTHESIS_LEARNED_DIR``, or home/policies/learned."""
    if configured is not None:
        return Path(configured)
    env = os.environ.get("STACKMIND_SYNTHESIS_LEARNED_DIR")
    return Path(env) if env else home / "policies" / "learned"


def atomic_write(path: Path, text: str) -> Path:
    """Write to a temporary file beside ``path``, then rename it over: all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Entry:
    """The latest state of one candidate version."""

    name: str
    version: int
    status: str  # the last event: kept, pending, discarded, dropped, retired, superseded, accepted, rejected
    data: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.name}.v{self.version}"


class PolicyStore:
    """The learned dir, the candidates and the decision log of one data dir."""

    def __init__(self, settings: Settings, learned: Path | None = None) -> None:
        self.home = settings.home
        self.learned = learned_dir(settings.home, learned)
        self.root = settings.home / "synthesis"
        self.candidates = self.root / "candidates"
        self.retired = self.root / "retired"
        self.log_path = self.root / "log.jsonl"

    # ---- the log ------------------------------------------------------------------------------
    def log(self, event: str, name: str, version: int, **data: Any) -> dict[str, Any]:
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}")
        row = {"time": _now(), "event": event, "name": name, "version": version, **data}
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as f:  # one short append per line
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        return row

    def events(self) -> list[dict[str, Any]]:
        if not self.log_path.is_file():
            return []
        out = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by a crash: the rest of the log still reads
        return out

    def entries(self) -> list[Entry]:
        """Every candidate version with its latest decision ("remeasured" keeps the status it had)."""
        latest: dict[tuple[str, int], Entry] = {}
        for row in self.events():
            key = (row["name"], int(row["version"]))
            old = latest.get(key)
            status = row["event"]
            data = {**(old.data if old else {}), **row}
            if status == "remeasured" and old is not None:
                status = old.status
            latest[key] = Entry(row["name"], int(row["version"]), status, data)
        return sorted(latest.values(), key=lambda e: (e.name, e.version))

    def find(self, ref: str) -> Entry:
        """A candidate by ``name`` (its latest version) or ``name.vN``."""
        ref = ref.lstrip("@")
        name, _, v = ref.partition(".v")
        matching = [e for e in self.entries() if e.name == name and (not v or str(e.version) == v)]
        if not matching:
            known = ", ".join(e.key for e in self.entries()) or "none yet (run `stackmind policy synthesize`)"
            raise ReviewError(f"no synthesized policy {ref!r}; known: {known}")
        return matching[-1]

    def used_episodes(self) -> set[str]:
        """Episodes some candidate was already written from (a round does not rewrite the same lesson)."""
        return {ep for row in self.events() if row["event"] in ("pending", "kept", "discarded", "dropped")
                for ep in row.get("episodes", [])}

    # ---- versions -----------------------------------------------------------------------------
    def next_version(self, name: str) -> int:
        seen = [int(r["version"]) for r in self.events() if r["name"] == name]
        for folder in (self.learned, self.candidates, self.retired):
            if folder.is_dir():
                seen += [int(m["version"]) for p in folder.iterdir()
                         if (m := _VERSIONED.match(p.name)) and m["name"] == name]
        return max(seen, default=0) + 1

    def active(self) -> dict[str, Path]:
        """The kept policy file of each name in the learned dir."""
        out: dict[str, Path] = {}
        if self.learned.is_dir():
            for p in sorted(self.learned.glob("*.policy.yaml")):
                m = _VERSIONED.match(p.name)
                if m:
                    out[m["name"]] = p
        return out

    def candidate_path(self, name: str, version: int) -> Path:
        return self.candidates / f"{name}.v{version}.policy.yaml"

    def save_candidate(self, name: str, version: int, text: str, record: dict[str, Any]) -> Path:
        path = self.candidate_path(name, version)
        if path.exists():
            raise ReviewError(f"{path} exists: candidates are never rewritten")
        atomic_write(path.with_suffix("").with_suffix(".json"), json.dumps(record, indent=2, default=str))
        return atomic_write(path, text)

    def record(self, name: str, version: int) -> dict[str, Any]:
        path = self.candidate_path(name, version).with_suffix("").with_suffix(".json")
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    # ---- decisions ----------------------------------------------------------------------------
    def keep(self, name: str, version: int, provenance: dict[str, Any], event: str = "kept", **data: Any) -> Path:
        """Put a candidate version into use: the version of that name in use before moves to retired/."""
        source = self.candidate_path(name, version)
        if not source.is_file():
            raise ReviewError(f"no candidate file {source}: it cannot be kept")
        old = self.active().get(name)
        if old is not None:
            m = _VERSIONED.match(old.name)
            assert m is not None
            self._retire_file(old)
            self.log("superseded", name, int(m["version"]), by=version)
        target = self.learned / source.name
        atomic_write(target.with_suffix("").with_suffix(".provenance.json"),
                     json.dumps(provenance, indent=2, default=str))
        atomic_write(target, source.read_text(encoding="utf-8"))
        self.log(event, name, version, file=str(target), **data)
        return target

    def retire(self, name: str, reason: str, event: str = "retired", **data: Any) -> Path:
        """Take the kept version of ``name`` out of use (moved to retired/, logged with why)."""
        path = self.active().get(name)
        if path is None:
            raise ReviewError(f"@{name} is not in use in {self.learned}: nothing to retire")
        m = _VERSIONED.match(path.name)
        assert m is not None
        moved = self._retire_file(path)
        self.log(event, name, int(m["version"]), reason=reason, file=str(moved), **data)
        return moved

    def _retire_file(self, path: Path) -> Path:
        self.retired.mkdir(parents=True, exist_ok=True)
        target = self.retired / path.name
        prov = path.with_suffix("").with_suffix(".provenance.json")
        if prov.is_file():
            os.replace(prov, self.retired / prov.name)
        os.replace(path, target)
        return target

    def provenance(self, name: str) -> dict[str, Any]:
        path = self.active().get(name)
        if path is None:
            return {}
        prov = path.with_suffix("").with_suffix(".provenance.json")
        return json.loads(prov.read_text(encoding="utf-8")) if prov.is_file() else {}

    # ---- a person's review --------------------------------------------------------------------
    def accept(self, ref: str, reviewer: str = "person") -> Entry:
        """A person accepts a candidate: put it into use if it is not (pending, discarded, retired)."""
        e = self.find(ref)
        if e.status == "dropped":
            raise ReviewError(f"{e.key} never parsed (dropped): there is no policy to accept")
        in_use = self.active().get(e.name)
        if in_use is not None and in_use.name == self.candidate_path(e.name, e.version).name:
            self.log("accepted", e.name, e.version, reviewer=reviewer, file=str(in_use))
        else:
            rec = self.record(e.name, e.version)
            prov = {**rec.get("provenance", {}), "accepted_by": reviewer, "accepted": _now(),
                    "grounding": rec.get("grounding")}
            self.keep(e.name, e.version, prov, event="accepted", reviewer=reviewer)
        return self.find(e.key)

    def reject(self, ref: str, reviewer: str = "person") -> Entry:
        """A person rejects a candidate: take it out of use if it is in use; it stays in the log."""
        e = self.find(ref)
        in_use = self.active().get(e.name)
        if in_use is not None and in_use.name == self.candidate_path(e.name, e.version).name:
            self.retire(e.name, f"rejected by {reviewer}", event="rejected", reviewer=reviewer)
        else:
            self.log("rejected", e.name, e.version, reviewer=reviewer)
        return self.find(e.key)


def summarize(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """Rows for `stackmind policy review`."""
    rows = []
    for e in entries:
        g = e.data.get("grounding") or {}
        rows.append({
            "name": e.name, "version": e.version, "status": e.status, "time": e.data.get("time"),
            "description": e.data.get("description", ""), "n": g.get("n"), "gain": g.get("gain"),
            "success_with": g.get("success_with"), "success_without": g.get("success_without"),
            "stack_tokens": g.get("stack_tokens"), "roi_per_1k_tokens": g.get("roi_per_1k_tokens"),
            "reason": e.data.get("reason") or g.get("verdict", ""), "file": e.data.get("file", ""),
            "episodes": len(e.data.get("episodes", [])),
        })
    return rows
