"""Alembic environment: runs on the connection the caller hands in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from valhalla_gov.storage.sql_schema import metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through valhalla_gov.storage.sql_backend.upgrade()")
_run(connection)
