"""Schema migrations: alembic revisions shipped in the package, run on open, idempotent, safe when
several processes open one fresh database at once; settings that choose the store."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from fakes.servers import Backend, free_port

from stackmind.settings import Settings
from stackmind.storage import HEAD, SchemaError, SQLiteStackStore, StorageError, open_store
from stackmind.storage.migrate import MIGRATIONS, postgres_revision, sqlite_revision

ROOT = Path(__file__).resolve().parents[2]


def child_env() -> dict[str, str]:
    """This test's environment (its STACKMIND_HOME, STACKMIND_DATABASE_URL) for a child process."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def revision(backend: Backend, settings: Settings) -> tuple[str | None, int]:
    if backend.url is None:
        db = sqlite3.connect(settings.db_path)
        try:
            return sqlite_revision(db), db.execute("SELECT count(*) FROM alembic_version").fetchone()[0]
        finally:
            db.close()
    with psycopg.connect(backend.url) as conn:
        return postgres_revision(conn), conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0]


def test_head_is_alembics_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD


OPENER = """
import sys
from stackmind.settings import Settings
from stackmind.stack import Stack
from stackmind.storage import open_store
store = open_store(Settings())
Stack(store, "opened").push("observation", sys.argv[1])
store.close()
print("opened", sys.argv[1])
"""


def test_processes_opening_a_fresh_database_at_once_migrate_it_once(backend: Backend) -> None:
    settings = backend.settings()
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, str(i)], env=child_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outs]
    assert revision(backend, settings) == (HEAD, 1)
    store = open_store(settings)  # and again: nothing to do
    try:
        assert sorted(f.text for f in store.frames("opened")) == ["0", "1", "2", "3"]
    finally:
        store.close()
    assert revision(backend, settings) == (HEAD, 1)


def test_a_sqlite_database_from_before_migrations_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE frames (id INTEGER PRIMARY KEY AUTOINCREMENT, stack TEXT NOT NULL, kind TEXT NOT NULL,
            text TEXT NOT NULL, value REAL NOT NULL, provenance TEXT NOT NULL, tokens INTEGER NOT NULL,
            created REAL NOT NULL, updated REAL NOT NULL);
        CREATE INDEX frames_stack ON frames(stack, id);
        INSERT INTO frames(stack, kind, text, value, provenance, tokens, created, updated)
            VALUES ('old', 'goal', 'kept across the upgrade', 1.0, '{}', 5, 1.0, 1.0);
    """)
    db.commit()
    db.close()
    store = SQLiteStackStore(path)
    try:
        assert [f.text for f in store.frames("old")] == ["kept across the upgrade"]
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert sqlite_revision(db) == HEAD
    db.close()


def test_a_database_from_a_newer_stackmind_is_refused(backend: Backend) -> None:
    settings = backend.settings()
    open_store(settings).close()
    if backend.url is None:
        db = sqlite3.connect(settings.db_path)
        db.execute("UPDATE alembic_version SET version_num='9999'")
        db.commit()
        db.close()
    else:
        with psycopg.connect(backend.url) as conn:
            conn.execute("UPDATE alembic_version SET version_num='9999'")
    with pytest.raises(SchemaError, match="newer stackmind"):
        open_store(settings)


def test_the_database_url_chooses_the_store_and_never_shows_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKMIND_DATABASE_URL", f"postgresql://bot:s3cret@127.0.0.1:{free_port()}/stackmind")
    s = Settings()
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.model_dump())
    assert s.database_label == f"postgresql://bot:***@127.0.0.1:{s.database_url.get_secret_value().split(':')[-1]}"
    with pytest.raises(StorageError, match="cannot reach PostgreSQL") as e:
        open_store(s)
    assert "s3cret" not in str(e.value)
    monkeypatch.setenv("STACKMIND_DATABASE_URL", "mysql://x@y/z")
    with pytest.raises(StorageError, match="not a PostgreSQL URL"):
        open_store(Settings())
    monkeypatch.delenv("STACKMIND_DATABASE_URL")
    assert isinstance(open_store(Settings()), SQLiteStackStore)
