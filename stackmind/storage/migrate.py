"""Schema migrations: alembic revisions shipped in ``stackmind/storage/migrations``, run on open.

Every store calls `migrate_sqlite` or `migrate_postgres` when it opens. Both look up the database's
revision first and return at once when it is `HEAD` (alembic and SQLAlchemy are imported only when
there is something to do). Otherwise the upgrade runs in one transaction that first takes a lock
(SQLite: ``BEGIN IMMEDIATE``, the database's write lock; PostgreSQL: a transaction-level advisory
lock), so two processes opening a fresh database at once migrate it once: the second waits, then
finds it at `HEAD`. A database migrated by a newer stackmind is refused with what to do.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg

from stackmind.errors import StackmindError

HEAD = "0003"  # the newest revision in migrations/versions (a test checks alembic agrees)
MIGRATIONS = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x737461636B6D  # advisory-lock key ("stackm") that serialises migrations


class StorageError(StackmindError):
    """The database could not be opened or used."""


class SchemaError(StorageError):
    """The database's schema is not one this stackmind can migrate to its own."""


def sqlite_revision(db: sqlite3.Connection) -> str | None:
    if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'").fetchone() is None:
        return None
    row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


def postgres_revision(conn: psycopg.Connection[Any]) -> str | None:
    row = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


def _upgrade(connection: Any, where: str) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.util.exc import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    try:
        command.upgrade(config, "head")
    except CommandError as e:
        raise SchemaError(
            f"cannot migrate the schema of {where} to revision {HEAD}: {e}. A newer stackmind may have "
            "migrated it: upgrade this installation (pip install -U stackmind) or point it at another database."
        ) from e


class _Borrowed:
    """Our sqlite3 connection lent to SQLAlchemy for one migration: closing it is a no-op."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def migrate_sqlite(db: sqlite3.Connection, where: str) -> None:
    """Bring a SQLite database (opened in autocommit mode, ``isolation_level=None``) to `HEAD`."""
    if sqlite_revision(db) == HEAD:
        return
    import sqlalchemy as sa
    from sqlalchemy.pool import StaticPool

    engine = sa.create_engine("sqlite://", creator=lambda: _Borrowed(db), poolclass=StaticPool)

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:  # pysqlite would not begin a DDL transaction itself
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with engine.begin() as conn:
            _upgrade(conn, where)
    finally:
        engine.dispose()


def migrate_postgres(conninfo: str, where: str) -> None:
    """Bring a PostgreSQL database to `HEAD` (``conninfo``: a libpq URL or key=value string)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if postgres_revision(conn) == HEAD:
            return
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(conninfo), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
            _upgrade(conn, where)
    finally:
        engine.dispose()
