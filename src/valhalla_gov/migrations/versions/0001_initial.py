"""Initial schema: documents, log records, GO sessions.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("body", sa.Text(), nullable=False),
    )
    op.create_table(
        "log_records",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("log", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(200), nullable=True),
        sa.Column("ts_utc", sa.String(40), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
    )
    op.create_index("ix_log_records_log_id", "log_records", ["log", "id"])
    op.create_index("ix_log_records_log_kind_id", "log_records", ["log", "kind", "id"])
    op.create_table(
        "go_sessions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("started_at_utc", sa.String(40), nullable=True),
        sa.Column("ended_at_utc", sa.String(40), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
    )
    op.create_index("ix_go_sessions_active_id", "go_sessions", ["active", "id"])
    op.create_index(
        "uq_go_sessions_one_active",
        "go_sessions",
        ["active"],
        unique=True,
        postgresql_where=sa.text("active"),
        sqlite_where=sa.text("active"),
    )


def downgrade() -> None:
    op.drop_table("go_sessions")
    op.drop_table("log_records")
    op.drop_table("documents")
