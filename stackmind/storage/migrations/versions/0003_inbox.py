"""The chat inbox: updates a bot worker received and no worker has answered yet.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

A webhook worker writes each update here before it tells Telegram it has it; whichever worker holds
the chat's lock answers the chat's rows in update order and deletes them once the reply is delivered
(`stackmind.interfaces.telegram`, docs/deploy.md). ``payload`` is the update as Telegram sent it (JSON).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("update_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("chat", sa.Text(), nullable=False),
        sa.Column("received", sa.Double(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
    )
    op.create_index("inbox_chat", "inbox", ["chat", "update_id"])


def downgrade() -> None:
    op.drop_table("inbox")
