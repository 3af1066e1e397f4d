"""Episodes (the YAML trace text plus the columns one filters on), users' ratings, hindsight labels.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

The trace text stays the record: ``trace`` holds exactly what ``stackmind episodes export`` writes
to a ``.trace.yaml`` file. The other columns are copies of its fields, for queries.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_JSON = sa.Text().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "episodes",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("goal", sa.Text(), nullable=False),
        sa.Column("stack", sa.Text(), nullable=True),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("reward", sa.Double(), nullable=True),
        sa.Column("created", sa.Text(), nullable=False),  # the trace's own ISO time
        sa.Column("updated", sa.Double(), nullable=False),  # epoch seconds of the last save or rating
        sa.Column("trace", sa.Text(), nullable=False),
    )
    op.create_index("episodes_updated", "episodes", ["updated"])
    op.create_index("episodes_stack", "episodes", ["stack"])
    op.create_table(
        "ratings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("episode", sa.Text(), sa.ForeignKey("episodes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("reward", sa.Double(), nullable=False),
        sa.Column("by", sa.Text(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
    )
    op.create_index("ratings_episode", "ratings", ["episode"])
    op.create_table(
        "labels",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("episode", sa.Text(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("created", sa.Text(), nullable=False),
        sa.Column("record", _JSON, nullable=False),
    )
    op.create_index("labels_created", "labels", ["created"])


def downgrade() -> None:
    op.drop_table("labels")
    op.drop_table("ratings")
    op.drop_table("episodes")
