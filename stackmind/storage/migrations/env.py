"""Alembic's environment for stackmind's schema: run on a connection that `stackmind.storage.migrate`
hands over (``config.attributes["connection"]``), never from an ini file or a URL of its own."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
