"""SQL tables for the scale-out backend (the Alembic migrations create them).

- ``documents``: one row per document name, its JSON as text.
- ``log_records``: every append-only log; ``id`` orders a log and is its
  cursor, ``kind`` (the audit event name) has its own index for filters.
- ``go_sessions``: every GO session, current and past. A partial unique index
  lets at most one row be active, so the database itself refuses a second
  active session whatever the application does.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY.
_BIG_ID = BigInteger().with_variant(Integer(), "sqlite")

documents = Table(
    "documents",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("body", Text, nullable=False),
)

log_records = Table(
    "log_records",
    metadata,
    Column("id", _BIG_ID, primary_key=True, autoincrement=True),
    Column("log", String(32), nullable=False),
    Column("kind", String(200), nullable=True),
    Column("ts_utc", String(40), nullable=True),
    Column("body", Text, nullable=False),
    Index("ix_log_records_log_id", "log", "id"),
    Index("ix_log_records_log_kind_id", "log", "kind", "id"),
)

go_sessions = Table(
    "go_sessions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("active", Boolean, nullable=False),
    Column("started_at_utc", String(40), nullable=True),
    Column("ended_at_utc", String(40), nullable=True),
    Column("body", Text, nullable=False),
    Index("ix_go_sessions_active_id", "active", "id"),
    Index(
        "uq_go_sessions_one_active",
        "active",
        unique=True,
        postgresql_where=text("active"),
        sqlite_where=text("active"),
    ),
)
