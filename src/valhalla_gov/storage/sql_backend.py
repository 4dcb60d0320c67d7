"""The scale-out backend: SQLAlchemy 2 on PostgreSQL (psycopg 3) or SQLite.

Same protocol as the JSON files, so the services do not change. Each
:meth:`SqlStore.transaction` is one database transaction holding an exclusive
writer lock (``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN IMMEDIATE`` on
SQLite): the state, history and audit writes of one operation commit together
or not at all, and replicas serialise their writers exactly like workers
sharing a data dir do, which keeps the audit hash chain in order.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..errors import ConflictError
from ..timeutil import parse_iso, stable_id
from .errors import InvalidCursorError, StorageCorruptError, StorageUnavailableError
from .json_store import canonical_json
from .protocol import DOC_GO_SESSION, KIND_FIELD, LOG_SESSIONS, LogEntry, T
from .sql_schema import documents, go_sessions, log_records

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Scans fetch in growing batches: most callers want one record (the chain's
# last line) or one page (51 or 101 rows); walks of the whole log grow to 1000.
_FIRST_BATCH = 64
_MAX_BATCH = 1000
# Cursors name a boundary between records: ``p`` splits ids below ``p`` from
# ids at or above it. A record's backward cursor is its own id (the boundary
# before it); its forward cursor is the boundary after it: id + 1 for log
# rows, and id + "~" for session ids ("~" sorts after every ULID character).
_AFTER = "~"
# PostgreSQL NOTIFY channel for "a log gained records"; the payload is the
# schema, so databases shared by several schemas wake only their own readers.
LOG_CHANNEL = "valhalla_log_append"
# An arbitrary, fixed 64-bit key: every Valhalla writer takes this one lock.
_PG_LOCK_KEY = 0x56414C48414C4C41  # "VALHALLA"


class SchemaOutOfDateError(Exception):
    """The database schema is older (or newer) than this code expects."""


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str | None:
    """The newest migration: read from the scripts once per process."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control from the driver so BEGIN IMMEDIATE works.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("valhalla_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    # A fixed pool, no overflow: overflow connections are opened and closed
    # per burst, and connecting costs PostgreSQL far more than a query.
    # Threads wait for a free connection instead. No pre-ping round trip per
    # checkout: a connection found dead fails its request and SQLAlchemy
    # invalidates the pool, so the next requests reconnect.
    return create_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=30)


def upgrade(url: str) -> tuple[str | None, str | None]:
    """Apply every migration; returns (revision before, revision after)."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            before = MigrationContext.configure(conn).get_current_revision()
            command.upgrade(alembic_config(conn), "head")
            after = MigrationContext.configure(conn).get_current_revision()
        return before, after
    finally:
        engine.dispose()


class SqlStore:
    blocking = True

    def __init__(self, url: str, *, check_schema: bool = True, pool_size: int = 10) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        # Reads outside a transaction are single statements: on PostgreSQL
        # autocommit saves the BEGIN and ROLLBACK round trips around each.
        self._read_engine = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.engine.dialect.name == "postgresql"
            else self.engine
        )
        self._local = threading.local()
        if check_schema:
            problem = self.schema_problem()
            if problem is not None:
                self.engine.dispose()
                raise SchemaOutOfDateError(problem)

    def describe(self) -> str:
        return f"sql:{redact(self.url)}"

    def close(self) -> None:
        self.engine.dispose()

    def _unavailable(self, exc: Exception) -> StorageUnavailableError:
        return StorageUnavailableError(redact(self.url), f"database error: {exc}")

    def schema_problem(self) -> str | None:
        head = head_revision()
        try:
            with self.engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        if current == head:
            return None
        return (
            f"database schema is at revision {current or 'none'}, this version needs {head}: "
            "run `valhalla db upgrade`"
        )

    # -- reads outside a transaction ---------------------------------------
    @contextlib.contextmanager
    def _reader(self) -> Iterator[Connection]:
        txn: _SqlTxn | None = getattr(self._local, "txn", None)
        if txn is not None:
            # Inside this thread's transaction: read what it has written so far.
            yield txn.conn
            return
        try:
            with self._read_engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    def read_document(self, name: str) -> Any | None:
        with self._reader() as conn:
            return _read_document(conn, name)

    def read_cached(self, name: str, parse: Callable[[Any | None], T]) -> T:
        # Another replica may have written: always read (one indexed query).
        return parse(self.read_document(name))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_SqlTxn]:
        current: _SqlTxn | None = getattr(self._local, "txn", None)
        if current is not None:
            yield current  # re-entrant, like the JSON backend's lock
            return
        try:
            with self.engine.connect() as raw:
                conn = raw.execution_options(valhalla_write=True)
                with conn.begin():
                    if conn.dialect.name == "postgresql":
                        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
                    txn = _SqlTxn(conn)
                    self._local.txn = txn
                    try:
                        yield txn
                    finally:
                        self._local.txn = None
                    if txn.appended and conn.dialect.name == "postgresql":
                        # Delivered at commit, to every listening replica: live
                        # readers wake at once instead of at their next poll.
                        conn.execute(
                            text("SELECT pg_notify(:channel, current_schema())"),
                            {"channel": LOG_CHANNEL},
                        )
        except IntegrityError as exc:
            raise StorageUnavailableError(
                redact(self.url), f"refused by the database: {exc.orig}"
            ) from exc
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    def scan_log(
        self, log: str, *, before: str | None = None, kind: str | None = None
    ) -> Iterator[LogEntry]:
        if log == LOG_SESSIONS:
            return self._keyset(_sessions_query(), go_sessions.c.id, LOG_SESSIONS, before, True)
        query = _log_query(log)
        if kind is not None:
            query = query.where(log_records.c.kind == kind)
        bound = None if before is None else _int_cursor(before)
        return self._keyset(query, log_records.c.id, log, bound, True)

    def scan_log_forward(self, log: str, *, after: str | None = None) -> Iterator[LogEntry]:
        if log == LOG_SESSIONS:
            return self._keyset(_sessions_query(), go_sessions.c.id, LOG_SESSIONS, after, False)
        bound = None if after is None else _int_cursor(after)
        return self._keyset(_log_query(log), log_records.c.id, log, bound, False)

    def _keyset(
        self,
        query: Select[tuple[Any, str]],
        key: ColumnElement[Any],
        where: str,
        bound: Any | None,
        newest_first: bool,
    ) -> Iterator[LogEntry]:
        """Keyset pages over ``key`` in growing batches. ``bound`` is a cursor
        boundary: rows below it newest first, rows at or above it oldest first."""
        batch = _FIRST_BATCH
        while True:
            page = query
            if bound is not None:
                page = page.where(key < bound if newest_first else key >= bound)
            page = page.order_by(key.desc() if newest_first else key.asc()).limit(batch)
            with self._reader() as conn:
                rows = conn.execute(page).all()
            for row_key, body in rows:
                # Backward: the boundary before the row is its key; forward: after it.
                cursor = row_key if newest_first else _after(row_key)
                yield LogEntry(str(cursor), _parse_body(where, row_key, body))
            if len(rows) < batch:
                return
            bound = rows[-1][0] if newest_first else _after(rows[-1][0])
            batch = min(batch * 4, _MAX_BATCH)

    def log_version(self, log: str) -> str:
        # The newest row id: one probe of the (log, id) index.
        query = select(func.max(log_records.c.id)).where(log_records.c.log == log)
        if log == LOG_SESSIONS:
            query = select(func.count()).select_from(go_sessions)
        with self._reader() as conn:
            return str(conn.execute(query).scalar())

    def probe(self) -> list[str]:
        try:
            problem = self.schema_problem()
        except StorageUnavailableError as exc:
            return [str(exc)]
        if problem is not None:
            return [f"{redact(self.url)}: {problem}"]
        problems: list[str] = []
        try:
            with self.engine.connect() as conn:
                for name, body in conn.execute(select(documents.c.name, documents.c.body)):
                    try:
                        json.loads(body)
                    except json.JSONDecodeError as exc:
                        problems.append(
                            f"{redact(self.url)}: document {name!r} does not parse ({exc})"
                        )
        except SQLAlchemyError as exc:
            problems.append(str(self._unavailable(exc)))
        return problems


def _after(key: Any) -> Any:
    """The boundary just after a row key: id + 1, or a session id + "~"."""
    return key + 1 if isinstance(key, int) else key + _AFTER


def _log_query(log: str) -> Select[tuple[Any, str]]:
    return select(log_records.c.id, log_records.c.body).where(log_records.c.log == log)


def _sessions_query() -> Select[tuple[Any, str]]:
    # The history is the ended rows; the active session is not history yet.
    return select(go_sessions.c.id, go_sessions.c.body).where(go_sessions.c.active.is_(False))


def _int_cursor(cursor: str) -> int:
    if not (cursor.isascii() and cursor.isdigit()):
        raise InvalidCursorError(f"invalid cursor {cursor!r}; pass back a next_cursor value")
    return int(cursor)


def _parse_body(where: str, key: object, body: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        raise StorageCorruptError(f"{where} row {key}", f"does not parse as JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise StorageCorruptError(f"{where} row {key}", "is not a JSON object")
    return value


def _read_document(conn: Connection, name: str) -> Any | None:
    if name == DOC_GO_SESSION:
        row = conn.execute(
            select(go_sessions.c.id, go_sessions.c.body).order_by(go_sessions.c.id.desc()).limit(1)
        ).first()
        return None if row is None else {"session": _parse_body("go_sessions", row[0], row[1])}
    body = conn.execute(select(documents.c.body).where(documents.c.name == name)).scalar()
    if body is None:
        return None
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise StorageCorruptError(f"documents row {name!r}", f"does not parse ({exc})") from exc


def _log_row(log: str, record: dict[str, Any]) -> dict[str, Any]:
    kind_field = KIND_FIELD.get(log)
    kind = record.get(kind_field) if kind_field else None
    ts = record.get("ts_utc")
    return {
        "log": log,
        "kind": str(kind)[:200] if kind is not None else None,
        "ts_utc": str(ts)[:40] if ts is not None else None,
        "body": canonical_json(record),
    }


def _session_row(session: dict[str, Any]) -> dict[str, Any]:
    session_id = session.get("id")
    started = session.get("started_at_utc")
    if not session_id:
        if not started:
            raise StorageCorruptError("go_sessions", "a session without id or start time")
        # Written before ids existed: the same stable id the service derives.
        session_id = stable_id(parse_iso(started), started)
        session = {**session, "id": session_id}
    return {
        "id": session_id,
        "active": bool(session.get("active")),
        "started_at_utc": started,
        "ended_at_utc": session.get("ended_at_utc"),
        "body": canonical_json(session),
    }


class _SqlTxn:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.appended = False  # a log gained records: listeners are told at commit

    def read_document(self, name: str) -> Any | None:
        return _read_document(self.conn, name)

    def write_document(self, name: str, doc: Any) -> None:
        if name == DOC_GO_SESSION:
            session = doc.get("session") if isinstance(doc, dict) else None
            if session is not None:
                self._upsert_session(session)
            return
        body = canonical_json(doc)
        self.conn.execute(delete(documents).where(documents.c.name == name))
        self.conn.execute(insert(documents).values(name=name, body=body))

    def _upsert_session(self, session: dict[str, Any]) -> None:
        row = _session_row(session)
        self.conn.execute(delete(go_sessions).where(go_sessions.c.id == row["id"]))
        try:
            self.conn.execute(insert(go_sessions).values(**row))
        except IntegrityError as exc:
            # uq_go_sessions_one_active: the database's own guard against two
            # active sessions, should a writer ever bypass the lock.
            raise ConflictError("a GO session is already active") from exc

    def append_log(self, log: str, record: dict[str, Any]) -> None:
        self.appended = True
        if log == LOG_SESSIONS:
            self._upsert_session(record)  # the history is the ended rows
            return
        self.conn.execute(insert(log_records).values(**_log_row(log, record)))

    def append_many(self, log: str, records: Iterable[dict[str, Any]]) -> int:
        self.appended = True
        count = 0
        batch: list[dict[str, Any]] = []
        for record in records:
            count += 1
            if log == LOG_SESSIONS:
                self._upsert_session(record)
                continue
            batch.append(_log_row(log, record))
            if len(batch) >= 1000:
                self.conn.execute(insert(log_records), batch)
                batch = []
        if batch:
            self.conn.execute(insert(log_records), batch)
        return count

    def last_log_record(self, log: str) -> dict[str, Any] | None:
        if log == LOG_SESSIONS:
            row = self.conn.execute(
                select(go_sessions.c.id, go_sessions.c.body)
                .where(go_sessions.c.active.is_(False))
                .order_by(go_sessions.c.id.desc())
                .limit(1)
            ).first()
        else:
            row = self.conn.execute(
                select(log_records.c.id, log_records.c.body)
                .where(log_records.c.log == log)
                .order_by(log_records.c.id.desc())
                .limit(1)
            ).first()
        return None if row is None else _parse_body(log, row[0], row[1])
