"""Long-term memory: frames that leave a stack, kept in chromadb, a collection per owner.

    memory = Memory(settings)
    memory.store(frame, owner="telegram:42", episode="ep-7")
    for r in memory.recall("make 24 from 4 7 8 8", owner="telegram:42", k=5): ...
    memory.forget(dry_run=True)
    memory.close()

Every recall is scoped to one owner: the owner filter is built here, from a non-empty string, and
is always applied (and every result is checked against it again). A memory's id is a hash of its
owner and text, so storing the same text twice updates one memory (chroma ``upsert``/``update``,
never delete-then-add).

Layout. Each owner's memories are a collection of their own (named by a hash of the owner), so a
recall searches only that owner's index: it costs what the owner has, not what everyone has, and no
other owner's memory can be a candidate (docs/memory.md has the measurements behind this).

Modes. Embedded (default): a chromadb ``PersistentClient`` under ``settings.memory_dir / "chroma"``,
owned by one process through a lock file; a second process gets `MemoryLockedError` at once instead
of chroma's second-opener hang. Server: with ``settings.chroma_url`` (``STACKMIND_CHROMA_URL``) an
``HttpClient`` on the database ``settings.chroma_database`` (created when missing); any number of
processes may share it.

The trace log (``memory_dir / "trace.jsonl"``) records every memory stored and every one forgotten,
with its text, so forgetting drops a memory from the index but never loses it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import chromadb
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.errors import ChromaError, NotFoundError
from pydantic import BaseModel, ConfigDict, Field

from stackmind.errors import StackmindError
from stackmind.memory.embedder import MiniLMEmbedding
from stackmind.memory.forgetting import DecayPolicy, RecallRanking
from stackmind.stack import FRAME_KINDS, Frame

if TYPE_CHECKING:
    from stackmind.settings import Settings

COLLECTION = "stackmind-memory"
_COMPACT_SUFFIX = "-compacting"
_PAGE = 2000
_MAX_OWNER = 256


class MemoryStoreError(StackmindError):
    """Long-term memory could not do what was asked."""


class OwnerError(MemoryStoreError, ValueError):
    """A missing or malformed owner: memory is never read or written without one."""


class MemoryLockedError(MemoryStoreError):
    """Another process (or another `Memory` in this one) owns the embedded store."""


class MemoryServerError(MemoryStoreError):
    """The chroma server in ``STACKMIND_CHROMA_URL`` could not be reached."""


class MemoryUnreadableError(MemoryStoreError):
    """The store's files cannot be read (a corrupt or truncated chroma folder); callers go on without memory."""


class MemoryConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    collection: str = COLLECTION
    decay: DecayPolicy = Field(default_factory=DecayPolicy)
    ranking: RecallRanking = Field(default_factory=RecallRanking)
    # Rebuild the index once this many memories were removed since the last rebuild, or a quarter
    # of what is left (at least 64), whichever comes first (HNSW keeps deleted nodes until rebuilt).
    compact_after: int = Field(1000, ge=1)
    embed_batch_size: int = Field(64, ge=1)
    max_k: int = Field(100, ge=1)


def check_owner(owner: object) -> str:
    """The owner as given, or `OwnerError`. Owners are matched exactly; nothing is normalised."""
    if owner is None or (isinstance(owner, str) and not owner.strip()):
        raise OwnerError("memory needs an owner (a user or chat id such as 'telegram:42'); got none")
    if not isinstance(owner, str):
        raise OwnerError(f"an owner must be a string, not {type(owner).__name__}: {owner!r}")
    if owner != owner.strip() or len(owner) > _MAX_OWNER or any(ord(c) < 32 for c in owner):
        raise OwnerError(
            f"owner {owner[:40]!r} is malformed: no surrounding spaces or control characters, "
            f"at most {_MAX_OWNER} characters"
        )
    return owner


def memory_id(owner: str, text: str) -> str:
    return hashlib.sha256(f"{owner}\x00{text}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Recalled:
    id: str
    text: str
    owner: str
    kind: str
    value: float
    uses: int
    created: float
    last_used: float
    episode: str | None
    provenance: dict[str, Any]
    similarity: float
    score: float

    def to_frame(self) -> Frame:
        """An observation frame to push onto a stack (the agent's automatic recall)."""
        prov = {"source": "memory", "memory_id": self.id, "kind": self.kind, "score": round(self.score, 4)}
        return Frame(kind="observation", text=f"(recalled {self.kind}) {self.text}", value=self.value,
                     provenance=prov)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ForgetCandidate:
    id: str
    owner: str
    kind: str
    retention: float
    text: str = ""


@dataclass
class ForgetReport:
    examined: int
    kept: int
    demoted: int  # retention fell since the last pass: these now rank lower
    removed: list[ForgetCandidate]
    threshold: float
    dry_run: bool
    compacted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MemoryStats:
    mode: str
    location: str
    collection: str
    count: int
    owners: dict[str, int]
    kinds: dict[str, int]
    removed_since_compaction: int
    trace_log: str
    trace_events: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ProcessLock:
    """An exclusive ``flock`` on a file holding the owner's pid; the OS drops it if the owner dies."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            who = "this process (open one Memory and share it)" if holder == str(os.getpid()) else f"process {holder}"
            raise MemoryLockedError(
                f"the memory store in {path.parent} is in use by {who}. Only one process may open it "
                "embedded: stop that process, or run a chroma server (chroma run --path DIR) and set "
                "STACKMIND_CHROMA_URL so that processes share it."
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


def _ensure_database(admin: Any, database: str) -> None:
    """The server's database, created on first use. Two processes starting together may both find it
    missing: the one that loses the race to create it finds it there."""
    try:
        admin.get_database(database)
        return
    except NotFoundError:
        pass
    try:
        admin.create_database(database)
    except Exception:
        admin.get_database(database)  # made by another process meanwhile; if not, its error is the one


def _connect(settings: Settings) -> tuple[ClientAPI, str, str]:
    chroma_settings = chromadb.Settings(anonymized_telemetry=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url if "://" in settings.chroma_url else f"http://{settings.chroma_url}")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise MemoryServerError(
                f"STACKMIND_CHROMA_URL={settings.chroma_url!r} is not an http(s) URL such as http://127.0.0.1:8000"
            )
        ssl = url.scheme == "https"
        port = url.port or (443 if ssl else 8000)
        database = settings.chroma_database
        try:
            admin = chromadb.AdminClient(chromadb.Settings(
                anonymized_telemetry=False, chroma_api_impl="chromadb.api.fastapi.FastAPI",
                chroma_server_host=url.hostname, chroma_server_http_port=port, chroma_server_ssl_enabled=ssl))
            _ensure_database(admin, database)
            client = chromadb.HttpClient(host=url.hostname, port=port, ssl=ssl, settings=chroma_settings,
                                         database=database)
            client.heartbeat()
        except Exception as e:
            raise MemoryServerError(
                f"cannot reach the chroma server at {settings.chroma_url}: {e}. Start one with "
                "`chroma run --path DIR --host 127.0.0.1 --port PORT`, or unset STACKMIND_CHROMA_URL "
                "to use the embedded store."
            ) from e
        where = settings.chroma_url if database == "default_database" else f"{settings.chroma_url} ({database})"
        return client, "server", where
    path = settings.memory_dir / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings), "embedded", str(path)


class Memory:
    """Long-term memory, one chromadb collection per owner. Not thread-safe: one per process.

    An owner's collection is named ``<config.collection>-<hash of the owner>`` and carries the owner in
    its metadata, so a recall searches that owner's index alone: its cost follows the owner's memories,
    not everyone's, and no other owner's memory is ever a candidate. Results are still checked against
    the owner. A store from before this layout (one shared collection) is split on open."""

    def __init__(self, settings: Settings, config: MemoryConfig | None = None) -> None:
        self.settings = settings
        self.config = config or MemoryConfig()
        self.trace_path = settings.memory_dir / "trace.jsonl"
        self._lock: _ProcessLock | None = None
        self._collections: dict[str, Collection] = {}  # by owner, those opened so far
        if not settings.chroma_url:
            self._lock = _ProcessLock(settings.memory_dir / "chroma.lock")  # before chroma opens anything
        try:
            self._client, self.mode, self.location = _connect(settings)
            self._ef = MiniLMEmbedding(device=settings.device,
                                       batch_size=self.config.embed_batch_size)
            self._recover()
        except MemoryStoreError:
            self._release_lock()
            raise
        except Exception as e:  # chroma's own (a corrupt sqlite file, a bad segment), or the files'
            self._release_lock()
            raise self._unreadable(e) from e
        except BaseException:
            self._release_lock()
            raise

    def _unreadable(self, e: BaseException) -> MemoryUnreadableError:
        where = self.settings.chroma_url or str(self.settings.memory_dir / "chroma")
        fix = ("check the chroma server" if self.settings.chroma_url else
               f"move the folder aside (mv {where} {where}.broken) to start an empty store")
        return MemoryUnreadableError(f"the memory store {where} cannot be used ({type(e).__name__}: "
                                     f"{str(e)[:300]}); {fix} (the trace log {self.trace_path} keeps every memory)")

    # ---- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()
            self._client = None  # type: ignore[assignment]
        self._collections.clear()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the layout: a collection per owner ----------------------------------------------------
    def collection_name(self, owner: str) -> str:
        digest = hashlib.sha256(check_owner(owner).encode()).hexdigest()[:24]
        return f"{self.config.collection}-{digest}"

    def _is_ours(self, name: str) -> bool:
        prefix = self.config.collection + "-"
        return name.startswith(prefix) and len(name) == len(prefix) + 24 and not name.endswith(_COMPACT_SUFFIX)

    def _owner_collections(self) -> Iterator[tuple[str, Collection]]:
        """Every owner's collection (maintenance: forget, stats, compact)."""
        for c in self._client.list_collections():
            if self._is_ours(c.name):
                owner = str((c.metadata or {}).get("owner", ""))
                if owner:
                    col = self._client.get_collection(c.name, embedding_function=self._ef)
                    self._collections[owner] = col
                    yield owner, col

    def _recover(self) -> None:
        """Finish what a crash interrupted (a compaction's swap), and split a shared collection left by
        the layout before this one into owners' collections (vectors copied, nothing re-embedded)."""
        names = {c.name for c in self._client.list_collections()}
        for staging in [n for n in names if n.endswith(_COMPACT_SUFFIX)]:
            name = staging[: -len(_COMPACT_SUFFIX)]
            if name in names:  # a rebuild died before the swap: the original is intact
                self._client.delete_collection(staging)
            else:  # it died after dropping the original: the rebuilt copy is complete
                self._client.get_collection(staging, embedding_function=self._ef).modify(name=name)
                names.add(name)
        legacy = self.config.collection
        if legacy in names:
            old = self._client.get_collection(legacy, embedding_function=self._ef)
            while True:  # upserts are idempotent: a crash here only repeats some copying next time
                page = old.get(limit=_PAGE, include=["embeddings", "documents", "metadatas"])  # type: ignore[list-item]
                if not page["ids"]:
                    break
                by_owner: dict[str, list[int]] = {}
                for i, meta in enumerate(page["metadatas"] or []):
                    by_owner.setdefault(str((meta or {}).get("owner", "")), []).append(i)
                for owner, idx in by_owner.items():
                    if owner:
                        self._collection(owner, create=True).upsert(  # type: ignore[union-attr]
                            ids=[page["ids"][i] for i in idx], embeddings=[page["embeddings"][i] for i in idx],  # type: ignore[index]
                            documents=[page["documents"][i] for i in idx],  # type: ignore[index]
                            metadatas=[page["metadatas"][i] for i in idx])  # type: ignore[index]
                old.delete(ids=page["ids"])
            self._client.delete_collection(legacy)
            self._log([{"event": "layout", "t": time.time(), "from": legacy, "to": "a collection per owner"}])

    def _collection(self, owner: str, *, create: bool = False) -> Collection | None:
        """The owner's collection; None when the owner has none yet (and ``create`` is False)."""
        col = self._collections.get(owner)
        if col is not None:
            return col
        name = self.collection_name(owner)
        if create:
            col = self._client.get_or_create_collection(
                name, embedding_function=self._ef, configuration={"hnsw": {"space": "cosine"}},
                metadata={"owner": owner, "removed_since_compaction": 0},
            )
        else:
            try:
                col = self._client.get_collection(name, embedding_function=self._ef)
            except NotFoundError:
                return None
        self._collections[owner] = col
        return col

    def _op(self, owner: str, method: str, **kwargs: Any) -> Any:
        """A call on the owner's collection (created for writes). In server mode another process may
        have rebuilt it (`compact`), which changes its id: find it again by name and retry once."""
        col = self._collection(owner, create=method in ("upsert", "update"))
        if col is None:
            return None
        try:
            try:
                return getattr(col, method)(**kwargs)
            except NotFoundError:
                if self.mode != "server":
                    raise
                self._collections.pop(owner, None)
                col = self._reattach(owner)
                return getattr(col, method)(**kwargs)
        except ChromaError as e:  # the store went bad under us (a corrupt segment, a server error)
            raise self._unreadable(e) from e

    def _reattach(self, owner: str, wait_s: float = 10.0) -> Collection:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:  # a compaction elsewhere is between its drop and its rename
            col = self._collection(owner)
            if col is not None:
                return col
            time.sleep(0.1)
        col = self._collection(owner, create=True)
        assert col is not None
        return col

    # ---- writing -------------------------------------------------------------------------------
    def store(self, item: Frame | str, *, owner: str, kind: str | None = None, value: float | None = None,
              episode: str | None = None, provenance: dict[str, Any] | None = None) -> str:
        """Store one frame or text for an owner; returns the memory's id."""
        return self.store_many([item], owner=owner, kind=kind, value=value, episode=episode,
                               provenance=provenance)[0]

    def store_many(self, items: Iterable[Frame | str], *, owner: str, kind: str | None = None,
                   value: float | None = None, episode: str | None = None,
                   provenance: dict[str, Any] | None = None,
                   embeddings: Sequence[Sequence[float]] | None = None, batch_size: int = 1000) -> list[str]:
        """Store frames (their kind, value and provenance kept) or texts for one owner.

        ``kind``/``value``/``provenance`` fill in for plain texts and override a frame's. Storing a text
        the owner already has updates that memory (value and episode; uses and created are kept).
        ``embeddings`` may pass vectors precomputed with `embed` (the benchmark does).
        """
        owner = check_owner(owner)
        records = [self._record(it, owner, kind, value, episode, provenance) for it in items]
        return self._store_records(records, embeddings, batch_size)

    def store_batch(self, items: Iterable[tuple[str, Frame | str]], *, kind: str | None = None,
                    value: float | None = None, episode: str | None = None,
                    embeddings: Sequence[Sequence[float]] | None = None, batch_size: int = 5000) -> list[str]:
        """Store ``(owner, frame or text)`` pairs of many owners at once: the texts are embedded
        together (the embedder's batches are what make inserting fast), then written owner by owner,
        one call per owner and one trace-log write per batch."""
        records = [self._record(it, check_owner(owner), kind, value, episode, None) for owner, it in items]
        return self._store_records(records, embeddings, batch_size)

    def _store_records(self, records: list[dict[str, Any]], embeddings: Sequence[Sequence[float]] | None,
                       batch_size: int) -> list[str]:
        if embeddings is not None and len(embeddings) != len(records):
            raise MemoryStoreError(f"{len(embeddings)} embeddings for {len(records)} items")
        ids = [r["id"] for r in records]
        # Owner by owner (a stable sort keeps each owner's order, so the last of a repeated text wins):
        # every chroma write costs tens of ms however small, so each holds as many of one owner's as fit.
        order = sorted(range(len(records)), key=lambda i: records[i]["owner"])
        step = max(1, min(batch_size, self._client.get_max_batch_size()))
        for start in range(0, len(order), step):
            chunk = order[start : start + step]
            self._upsert([records[i] for i in chunk], None if embeddings is None else [embeddings[i] for i in chunk])
        return ids

    def embed(self, texts: Sequence[str]) -> list[Any]:
        """MiniLM vectors for texts, as stored (unit length)."""
        return self._ef(list(texts))

    def _record(self, item: Frame | str, owner: str, kind: str | None, value: float | None,
                episode: str | None, provenance: dict[str, Any] | None) -> dict[str, Any]:
        if isinstance(item, Frame):
            text, k, v, prov = item.text, kind or item.kind, item.value if value is None else value, dict(item.provenance)
            prov.update(provenance or {})
        elif isinstance(item, str):
            text, k, v, prov = item, kind or "conclusion", 0.5 if value is None else value, dict(provenance or {})
        else:
            raise MemoryStoreError(f"can store a Frame or a str, not {type(item).__name__}")
        if not text.strip():
            raise MemoryStoreError("cannot store an empty memory")
        if k not in FRAME_KINDS:
            raise MemoryStoreError(f"unknown memory kind {k!r}; expected one of {', '.join(FRAME_KINDS)}")
        try:
            prov_json = json.dumps(prov, default=str, ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise MemoryStoreError(f"provenance is not JSON-serialisable: {e}") from e
        return {"id": memory_id(owner, text), "text": text, "owner": owner, "kind": k, "value": float(v),
                "episode": episode or "", "provenance": prov_json}

    def _upsert(self, records: list[dict[str, Any]], vecs: list[Sequence[float]] | None) -> None:
        # The same text twice in one call is one memory: the last one wins.
        latest = {r["id"]: i for i, r in enumerate(records)}
        order = sorted(latest.values())
        records = [records[i] for i in order]
        vecs = None if vecs is None else [vecs[i] for i in order]
        now = time.time()
        existing: dict[str, dict[str, Any]] = {}
        by_owner: dict[str, list[int]] = {}
        for i, r in enumerate(records):
            by_owner.setdefault(r["owner"], []).append(i)
        for owner, idx in by_owner.items():
            existing.update(zip(*self._get_metas(owner, [records[i]["id"] for i in idx]), strict=True))
        new_i = [i for i, r in enumerate(records) if r["id"] not in existing]
        if vecs is None and new_i:  # one embedder call for every owner's new texts
            embedded = self._ef([records[i]["text"] for i in new_i])
            vecs_new = dict(zip(new_i, embedded, strict=True))
        else:
            vecs_new = {i: vecs[i] for i in new_i} if vecs is not None else {}
        events: list[dict[str, Any]] = []
        for owner, idx in by_owner.items():
            new = [i for i in idx if i in vecs_new]
            old = [i for i in idx if records[i]["id"] in existing]
            if new:
                metas = [self._meta(records[i], uses=0, created=now, last_used=now) for i in new]
                self._op(owner, "upsert", ids=[records[i]["id"] for i in new], embeddings=[vecs_new[i] for i in new],
                         documents=[records[i]["text"] for i in new], metadatas=metas)
                events += [{"event": "store", "t": now, "id": records[i]["id"], **m, "text": records[i]["text"]}
                           for i, m in zip(new, metas, strict=True)]
            if old:  # metadata only: no re-embedding, uses and created kept
                metas = []
                for i in old:
                    prev = existing[records[i]["id"]]
                    metas.append(self._meta(records[i], uses=int(prev.get("uses", 0)),
                                            created=float(prev.get("created", now)), last_used=now))
                self._op(owner, "update", ids=[records[i]["id"] for i in old], metadatas=metas)
                events += [{"event": "update", "t": now, "id": records[i]["id"], **m}
                           for i, m in zip(old, metas, strict=True)]
        self._log(events)

    @staticmethod
    def _meta(record: dict[str, Any], *, uses: int, created: float, last_used: float) -> dict[str, Any]:
        return {"owner": record["owner"], "kind": record["kind"], "value": record["value"], "uses": uses,
                "created": created, "last_used": last_used, "episode": record["episode"],
                "provenance": record["provenance"], "retention": record["value"]}

    def _get_metas(self, owner: str, ids: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
        if not ids:
            return [], []
        got = self._op(owner, "get", ids=ids, include=["metadatas"])
        if got is None:
            return [], []
        return list(got["ids"]), [dict(m or {}) for m in got["metadatas"] or []]

    def _log(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        self.trace_path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
        with open(self.trace_path, "a", encoding="utf-8") as f:  # O_APPEND: whole lines, in order
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    # ---- reading -------------------------------------------------------------------------------
    def recall(self, query: str, *, owner: str, k: int = 5, kinds: Sequence[str] | None = None,
               touch: bool = True) -> list[Recalled]:
        """The owner's k best memories for a query: nearest by meaning, re-ranked by value and recency.

        ``touch`` counts the recall as a use (uses + 1, last_used = now), which keeps a memory alive.
        """
        owner = check_owner(owner)
        if not isinstance(query, str) or not query.strip():
            raise MemoryStoreError("recall needs a non-empty query text")
        if not isinstance(k, int) or not 1 <= k <= self.config.max_k:
            raise MemoryStoreError(f"k must be an integer from 1 to {self.config.max_k}, not {k!r}")
        where: dict[str, Any] | None = None  # the collection is the owner's: no owner filter to scan
        if kinds:
            bad = [x for x in kinds if x not in FRAME_KINDS]
            if bad:
                raise MemoryStoreError(f"unknown kinds {bad}; expected some of {', '.join(FRAME_KINDS)}")
            where = {"kind": {"$in": list(kinds)}}
        if self._collection(owner) is None:
            return []
        found = self._op(owner, "query", query_texts=[query], n_results=self.config.ranking.fetch(k), where=where,
                         include=["documents", "metadatas", "distances"])
        now = time.time()
        ranked: list[Recalled] = []
        docs = (found["documents"] or [[]])[0]
        metas = (found["metadatas"] or [[]])[0]
        dists = (found["distances"] or [[]])[0]
        for id_, doc, meta, dist in zip(found["ids"][0], docs, metas, dists, strict=True):
            meta = dict(meta or {})
            if meta.get("owner") != owner:  # never trust a layout alone with someone else's memories
                continue
            ranked.append(self._recalled(id_, doc or "", meta, 1.0 - float(dist), now))
        ranked.sort(key=lambda r: r.score, reverse=True)
        ranked = ranked[:k]
        if touch and ranked:
            self._op(owner, "update", ids=[r.id for r in ranked],
                     metadatas=[{"uses": r.uses + 1, "last_used": now} for r in ranked])
        return ranked

    def _recalled(self, id_: str, text: str, meta: dict[str, Any], similarity: float, now: float) -> Recalled:
        value = float(meta.get("value", 0.5))
        last_used = float(meta.get("last_used", now))
        try:
            prov = json.loads(str(meta.get("provenance") or "{}"))
        except json.JSONDecodeError:
            prov = {}
        return Recalled(
            id=id_, text=text, owner=str(meta["owner"]), kind=str(meta.get("kind", "conclusion")),
            value=value, uses=int(meta.get("uses", 0)), created=float(meta.get("created", now)),
            last_used=last_used, episode=str(meta.get("episode") or "") or None, provenance=prov,
            similarity=similarity,
            score=self.config.ranking.score(similarity, value, self.config.decay.recency(last_used, now)),
        )

    def count(self, owner: str | None = None) -> int:
        if owner is None:
            return sum(col.count() for _, col in self._owner_collections())
        owner = check_owner(owner)
        return int(self._op(owner, "count") or 0) if self._collection(owner) is not None else 0

    def _scan(self, owner: str, include_documents: bool = False) -> Iterator[tuple[str, dict[str, Any], str]]:
        """Every memory of one owner, page by page (maintenance only: forget, stats, compact)."""
        include: list[Any] = ["metadatas", "documents"] if include_documents else ["metadatas"]
        offset = 0
        while True:
            page = self._op(owner, "get", limit=_PAGE, offset=offset, include=include)
            ids = page["ids"] if page is not None else []
            if not ids:
                return
            docs = page["documents"] or [""] * len(ids)
            for id_, meta, doc in zip(ids, page["metadatas"] or [], docs, strict=True):
                yield id_, dict(meta or {}), doc or ""
            offset += len(ids)

    # ---- forgetting ----------------------------------------------------------------------------
    def forget(self, *, dry_run: bool = False, now: float | None = None) -> ForgetReport:
        """Apply the decay policy: write back every memory's retention, drop those below the threshold
        from the index (the trace log keeps them) and compact an owner's index when enough were dropped."""
        now = time.time() if now is None else now
        report = ForgetReport(examined=0, kept=0, demoted=0, removed=[], threshold=self.config.decay.threshold,
                              dry_run=dry_run)
        for owner, _ in list(self._owner_collections()):
            self._forget_owner(owner, report, now)
        report.kept = report.examined - len(report.removed)
        return report

    def _forget_owner(self, owner: str, report: ForgetReport, now: float) -> None:
        policy = self.config.decay
        demote_ids: list[str] = []
        demote_metas: list[dict[str, Any]] = []
        removed: list[ForgetCandidate] = []
        for id_, meta, _ in self._scan(owner):
            report.examined += 1
            value = float(meta.get("value", 0.5))
            uses = int(meta.get("uses", 0))
            last_used = float(meta.get("last_used", now))
            created = float(meta.get("created", now))
            r = policy.retention(value, uses, last_used, now)
            if policy.should_forget(value, uses, created, last_used, now):
                removed.append(ForgetCandidate(id_, str(meta.get("owner", "")), str(meta.get("kind", "")), r))
            elif r < 0.99 * float(meta.get("retention", value)):  # fell by more than 1%
                demote_ids.append(id_)
                demote_metas.append({"retention": r})
        report.demoted += len(demote_ids)
        if removed:  # the texts, for the report and the trace log
            texts = {}
            for start in range(0, len(removed), _PAGE):
                got = self._op(owner, "get", ids=[c.id for c in removed[start : start + _PAGE]], include=["documents"])
                texts.update(zip(got["ids"], got["documents"] or [], strict=True))
            for c in removed:
                c.text = texts.get(c.id) or ""
        report.removed += removed
        if report.dry_run:
            return
        for start in range(0, len(demote_ids), _PAGE):
            self._op(owner, "update", ids=demote_ids[start : start + _PAGE], metadatas=demote_metas[start : start + _PAGE])
        if removed:
            self._log([{"event": "forget", "t": now, **asdict(c)} for c in removed])
            for start in range(0, len(removed), _PAGE):
                self._op(owner, "delete", ids=[c.id for c in removed[start : start + _PAGE]])
            pending = self._removed_since_compaction(owner) + len(removed)
            self._op(owner, "modify", metadata={"owner": owner, "removed_since_compaction": pending})
            left = self._op(owner, "count")
            if pending >= min(self.config.compact_after, max(64, left // 4)):
                self.compact(owner)
                report.compacted = True

    def _removed_since_compaction(self, owner: str) -> int:
        self._collections.pop(owner, None)  # fresh from the store: another client may have changed it
        col = self._collection(owner)
        return int((col.metadata or {}).get("removed_since_compaction", 0)) if col is not None else 0

    def compact(self, owner: str | None = None) -> int:
        """Rebuild an owner's index (every owner's when None) from its live memories: vectors copied,
        nothing re-embedded. Deleted HNSW nodes are only reclaimed by a rebuild. The copy goes to a
        staging collection that replaces the original by rename; a crash at any point leaves one
        complete copy, which the next open picks up. Returns the number of memories copied."""
        owners = [check_owner(owner)] if owner is not None else [o for o, _ in list(self._owner_collections())]
        copied = 0
        for o in owners:
            copied += self._compact_owner(o)
        self._log([{"event": "compact", "t": time.time(), "copied": copied, "owners": len(owners)}])
        return copied

    def _compact_owner(self, owner: str) -> int:
        name = self.collection_name(owner)
        staging = name + _COMPACT_SUFFIX
        if self._collection(owner) is None:
            return 0
        try:
            self._client.delete_collection(staging)
        except (NotFoundError, ValueError):
            pass
        new = self._client.create_collection(
            staging, embedding_function=self._ef, configuration={"hnsw": {"space": "cosine"}},
            metadata={"owner": owner, "removed_since_compaction": 0},
        )
        copied, offset = 0, 0
        while True:
            page = self._op(owner, "get", limit=_PAGE, offset=offset, include=["embeddings", "documents", "metadatas"])
            if not page["ids"]:
                break
            new.upsert(ids=page["ids"], embeddings=page["embeddings"], documents=page["documents"],
                       metadatas=page["metadatas"])
            copied += len(page["ids"])
            offset += len(page["ids"])
        self._client.delete_collection(name)
        new.modify(name=name)
        self._collections.pop(owner, None)
        return copied

    # ---- inspection ----------------------------------------------------------------------------
    def stats(self) -> MemoryStats:
        owners: dict[str, int] = {}
        kinds: dict[str, int] = {}
        count = pending = 0
        for owner, col in list(self._owner_collections()):
            pending += int((col.metadata or {}).get("removed_since_compaction", 0))
            for _, meta, _ in self._scan(owner):
                count += 1
                owners[owner] = owners.get(owner, 0) + 1
                kinds[str(meta.get("kind"))] = kinds.get(str(meta.get("kind")), 0) + 1
        events = 0
        if self.trace_path.exists():
            with open(self.trace_path, "rb") as f:
                events = sum(1 for _ in f)
        return MemoryStats(
            mode=self.mode, location=self.location, collection=self.config.collection, count=count,
            owners=dict(sorted(owners.items())), kinds=dict(sorted(kinds.items())),
            removed_since_compaction=pending, trace_log=str(self.trace_path), trace_events=events,
        )


def read_trace(path: Path) -> Iterator[dict[str, Any]]:
    """The events of a memory trace log, oldest first."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
