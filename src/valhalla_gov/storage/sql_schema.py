"""The generic SQL tables, and the one ``MetaData`` every table joins.

- ``documents``: one row per document name, its JSON as text.
- ``log_records``: every append-only log without a table of its own; ``id``
  orders a log and is its cursor, ``kind`` (the log's ``kind_field``) has its
  own index for filters.
- ``store_generation``: one row, one counter that every write transaction
  bumps; cached reads are valid while it has not moved.

Tables a caller declares for itself (see :mod:`.sql_placement`) are built on
:data:`metadata` too, so migrations see the whole schema.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BIG_ID = BigInteger().with_variant(Integer(), "sqlite")

documents = Table(
    "documents",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("body", Text, nullable=False),
)

log_records = Table(
    "log_records",
    metadata,
    Column("id", BIG_ID, primary_key=True, autoincrement=True),
    Column("log", String(32), nullable=False),
    Column("kind", String(200), nullable=True),
    Column("ts_utc", String(40), nullable=True),
    Column("body", Text, nullable=False),
    Index("ix_log_records_log_id", "log", "id"),
    Index("ix_log_records_log_kind_id", "log", "kind", "id"),
)

store_generation = Table(
    "store_generation",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("n", BigInteger, nullable=False),
)
