"""Does each configured service answer? (``stackmind status --deployment``; docs/deploy.md)

One check per service the settings name: the database (``STACKMIND_DATABASE_URL``), the Chroma
server (``STACKMIND_CHROMA_URL``) and the model server (``STACKMIND_OPENAI_BASE_URL`` with the
openai backend). A part left embedded is reported as such and counts as up: it needs no server.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import psycopg

from stackmind.settings import Settings
from stackmind.storage.migrate import HEAD, postgres_revision


@dataclass
class ServiceCheck:
    service: str  # database | chroma | model server
    ok: bool
    where: str  # what was asked (passwords masked), or "embedded"
    detail: str  # what it answered, or why not
    ms: float | None = None  # how long the answer took

    def line(self) -> str:
        took = f" ({self.ms:.0f} ms)" if self.ms is not None else ""
        return f"{'ok  ' if self.ok else 'DOWN'}  {self.service:<13} {self.where}: {self.detail}{took}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_database(settings: Settings, timeout: float = 5.0) -> ServiceCheck:
    if settings.database_url is None:
        return ServiceCheck("database", True, "embedded", f"SQLite at {settings.db_path}, episodes in "
                            f"{settings.episodes_dir}")
    where = settings.database_label
    t0 = time.perf_counter()
    try:
        with psycopg.connect(settings.database_url.get_secret_value(), connect_timeout=max(1, int(timeout)),
                             autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            revision = postgres_revision(conn)
    except psycopg.Error as e:
        return ServiceCheck("database", False, where, str(e).strip().splitlines()[0] if str(e).strip() else
                            type(e).__name__)
    ms = 1000 * (time.perf_counter() - t0)
    schema = ("schema current" if revision == HEAD else
              "no schema yet (the first store to open migrates it)" if revision is None else
              f"schema at revision {revision}, this stackmind's is {HEAD} (the next open migrates it)")
    return ServiceCheck("database", True, where, f"PostgreSQL {row[0] if row else '?'}, {schema}", ms)


def check_chroma(settings: Settings, timeout: float = 5.0) -> ServiceCheck:
    if not settings.chroma_url:
        return ServiceCheck("chroma", True, "embedded", f"PersistentClient in {settings.memory_dir / 'chroma'}")
    base = settings.chroma_url if "://" in settings.chroma_url else f"http://{settings.chroma_url}"
    t0 = time.perf_counter()
    try:
        r = httpx.get(base.rstrip("/") + "/api/v2/heartbeat", timeout=timeout)
        r.raise_for_status()
        version = httpx.get(base.rstrip("/") + "/api/v2/version", timeout=timeout).text.strip('"\n ')
    except httpx.HTTPError as e:
        return ServiceCheck("chroma", False, settings.chroma_url, f"{type(e).__name__}: {e}")
    return ServiceCheck("chroma", True, settings.chroma_url, f"Chroma {version} answers its heartbeat",
                        1000 * (time.perf_counter() - t0))


def check_model_server(settings: Settings, timeout: float = 10.0) -> ServiceCheck:
    if settings.backend != "openai":
        return ServiceCheck("model server", True, "embedded", f"in-process {settings.backend} backend")
    if not settings.openai_base_url:
        return ServiceCheck("model server", False, "unset", "the openai backend needs STACKMIND_OPENAI_BASE_URL")
    base = settings.openai_base_url.rstrip("/")
    base = base if base.endswith("/v1") else base + "/v1"
    headers = {}
    if settings.openai_api_key is not None:
        headers["Authorization"] = f"Bearer {settings.openai_api_key.get_secret_value()}"
    t0 = time.perf_counter()
    try:
        r = httpx.get(base + "/models", headers=headers, timeout=timeout)
        r.raise_for_status()
        served = [m.get("id") for m in r.json().get("data", [])]
    except (httpx.HTTPError, ValueError, AttributeError) as e:
        return ServiceCheck("model server", False, base, f"{type(e).__name__}: {e}")
    ms = 1000 * (time.perf_counter() - t0)
    if served and settings.model not in served:
        return ServiceCheck("model server", True, base, f"answers, serving {', '.join(map(str, served[:5]))}; "
                            f"note: STACKMIND_MODEL={settings.model!r} is not among them", ms)
    return ServiceCheck("model server", True, base, f"serves {', '.join(map(str, served[:5])) or 'no models?'}", ms)


def check_deployment(settings: Settings) -> list[ServiceCheck]:
    return [check_database(settings), check_chroma(settings), check_model_server(settings)]
