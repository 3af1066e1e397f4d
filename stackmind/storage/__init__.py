"""Where stackmind keeps its state, chosen by one setting.

    store = open_store(settings)        # stacks: SQLite in STACKMIND_HOME, or PostgreSQL
    episodes = open_episodes(settings)  # episodes: trace files in STACKMIND_HOME/episodes, or PostgreSQL
    with store.lock(f"chat:{chat_id}"):  # one worker at a time answers this chat
        ...

``STACKMIND_DATABASE_URL=postgresql://...`` puts stacks, episodes and ratings in PostgreSQL, shared
by every worker; unset, the embedded default needs no server. Schemas migrate on open
(`stackmind.storage.migrate`, alembic revisions in ``migrations/``). docs/deploy.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stackmind.stack import LockTimeout, StackStore
from stackmind.storage.episodes import (
    EpisodeNotFound,
    EpisodeStore,
    FileEpisodeStore,
    export_episodes,
    import_episodes,
)
from stackmind.storage.migrate import HEAD, SchemaError, StorageError
from stackmind.storage.postgres import PostgresEpisodeStore, PostgresStackStore
from stackmind.storage.sqlite import SQLiteStackStore

if TYPE_CHECKING:
    from stackmind.settings import Settings
    from stackmind.trace import Episode

__all__ = [
    "HEAD", "EpisodeNotFound", "EpisodeStore", "FileEpisodeStore", "LockTimeout", "PostgresEpisodeStore",
    "PostgresStackStore", "SQLiteStackStore", "SchemaError", "StackStore", "StorageError", "export_episodes",
    "import_episodes", "open_episodes", "open_store", "read_stored_episodes",
]


def _postgres_url(settings: Settings) -> str | None:
    if settings.database_url is None:
        return None
    url = settings.database_url.get_secret_value().strip()
    if not url:
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        raise StorageError(
            f"STACKMIND_DATABASE_URL={settings.database_label!r} is not a PostgreSQL URL such as "
            "postgresql://user:password@host:5432/stackmind; unset it for the embedded SQLite store."
        )
    return url


def open_store(settings: Settings) -> StackStore:
    """The stack store the settings name: PostgreSQL when ``database_url`` is set, else SQLite."""
    url = _postgres_url(settings)
    if url is not None:
        return PostgresStackStore(url, label=settings.database_label, pool_size=settings.database_pool_size)
    return SQLiteStackStore(settings.db_path)


def open_episodes(settings: Settings) -> EpisodeStore:
    """The episode store the settings name: PostgreSQL when ``database_url`` is set, else trace files."""
    url = _postgres_url(settings)
    if url is not None:
        return PostgresEpisodeStore(url, label=settings.database_label, pool_size=settings.database_pool_size)
    return FileEpisodeStore(settings.episodes_dir)


def read_stored_episodes(settings: Settings, since: float | None = None) -> tuple[list[Episode], list[str]]:
    """Every episode the settings' store holds (changed since ``since``, epoch seconds), and the
    problems (file:line) of those that do not parse, which are skipped."""
    problems: list[str] = []
    with open_episodes(settings) as store:
        return list(store.episodes(since, problems)), problems
