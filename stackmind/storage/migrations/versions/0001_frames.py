"""Stacks: one row per frame.

Revision ID: 0001
Revises:
Create Date: 2026-12-01

``if_not_exists``: a SQLite database written before migrations existed already has this table and
index (the same columns); this revision adopts it as it is.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "frames",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("stack", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("provenance", sa.Text().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("updated", sa.Double(), nullable=False),
        sqlite_autoincrement=True,
        if_not_exists=True,
    )
    op.create_index("frames_stack", "frames", ["stack", "id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("frames_stack", "frames")
    op.drop_table("frames")
