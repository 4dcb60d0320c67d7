"""Where a document or a log lives in SQL: the generic tables by default, or
a table the caller declares (with its own keys, columns and constraints).

The SQL backend only talks to these placements, so a caller that needs its
own table (a unique index, a lookup by key) declares it next to its code and
hands a placement in through :attr:`Document.sql` / :attr:`Log.sql`;
nothing here changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    bindparam,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from .encoding import canonical_json, loads
from .errors import InvalidCursorError, StorageCorruptError
from .protocol import Document, Log, parse_int_cursor, unwrap, wrap
from .sql_schema import documents, log_records


class SqlDocument(Protocol):
    def read(self, conn: Connection) -> Any | None: ...

    def write(self, conn: Connection, value: Any) -> None: ...


class SqlLog(Protocol):
    """An append-only log as rows: ``query()`` selects ``(key, body)``, the
    key orders the log and is its cursor."""

    @property
    def key(self) -> ColumnElement[Any]: ...

    def query(self, kind: str | None) -> Select[Any]: ...

    def record(
        self, where: str, row: Sequence[Any], parsed: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The record of one row ``query()`` selected (its key first, its
        body second); ``parsed``: the body already parsed by the caller
        (bulk reads parse it faster), to be checked as a parse here would be."""
        ...

    def parse_cursor(self, cursor: str) -> Any: ...

    def after(self, key: Any) -> Any:
        """The boundary just after ``key``."""
        ...

    def insert(self, conn: Connection, records: Sequence[dict[str, Any]]) -> None: ...


def parse_body(where: str, key: object, body: str) -> dict[str, Any]:
    try:
        value = loads(body)
    except json.JSONDecodeError as exc:
        raise StorageCorruptError(f"{where} row {key}", f"does not parse as JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise StorageCorruptError(f"{where} row {key}", "is not a JSON object")
    return value


@dataclass(frozen=True)
class DocumentRow:
    """A document as one row of the generic ``documents`` table."""

    doc: Document

    def read(self, conn: Connection) -> Any | None:
        text = conn.execute(_DOCUMENT_BODY, {"name": self.doc.name}).scalar()
        if text is None:
            return None
        where = f"documents row {self.doc.name!r}"
        try:
            stored = loads(text)
        except json.JSONDecodeError as exc:
            raise StorageCorruptError(where, f"does not parse ({exc})") from exc
        return unwrap(self.doc, where, stored)

    def write(self, conn: Connection, value: Any) -> None:
        body = canonical_json(wrap(self.doc, value))
        conn.execute(
            _upsert(conn, documents, documents.c.name), {"name": self.doc.name, "body": body}
        )


@dataclass(frozen=True)
class LogRows:
    """A log as rows of the generic ``log_records`` table, ordered by id."""

    log: Log

    @property
    def key(self) -> ColumnElement[Any]:
        return log_records.c.id

    def query(self, kind: str | None) -> Select[Any]:
        # The kind column comes along, to be checked against the body.
        query = select(log_records.c.id, log_records.c.body, log_records.c.kind).where(
            log_records.c.log == self.log.name
        )
        if kind is not None:
            query = query.where(log_records.c.kind == kind)
        return query

    def record(
        self, where: str, row: Sequence[Any], parsed: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The body, checked against the ``kind`` column: the column is what
        ``scan_log(kind=...)`` filters on, the body is what callers (a hash
        chain) check. A row whose column says otherwise was edited outside the
        application and would hide or forge records in a filtered read: it is
        corruption, named like any other."""
        key, body, kind = row
        record = parse_body(where, key, body) if parsed is None else parsed
        expected = self.kind(record)
        if kind != expected:
            raise StorageCorruptError(
                f"{where} row {key}",
                f"its kind column {kind!r} does not match the record's {expected!r}; "
                "left untouched",
            )
        return record

    def parse_cursor(self, cursor: str) -> Any:
        return parse_int_cursor(cursor)

    def after(self, key: Any) -> Any:
        return key + 1

    def insert(self, conn: Connection, records: Sequence[dict[str, Any]]) -> None:
        conn.execute(insert(log_records), [self.row(r) for r in records])

    def kind(self, record: dict[str, Any]) -> str | None:
        """The ``kind`` column of a record's row."""
        field = self.log.kind_field
        kind = record.get(field) if field else None
        return str(kind)[:200] if kind is not None else None

    def row(self, record: dict[str, Any]) -> dict[str, Any]:
        ts = record.get("ts_utc")
        return {
            "log": self.log.name,
            "kind": self.kind(record),
            "ts_utc": str(ts)[:40] if ts is not None else None,
            "body": canonical_json(record),
        }


# "~" sorts after every character of the string keys KeyedRows is meant for
# (ULIDs and other ASCII ids), so key + "~" is the boundary just after key.
_AFTER = "~"


@dataclass(frozen=True)
class KeyedRows:
    """Records keyed by a sortable string, one row each, replaced whole on
    write (an upsert): a table a caller declares with its own columns and
    constraints. ``row_of`` maps a record to the row's values (the key and
    ``body`` included); ``on_conflict`` turns a constraint violation into the
    caller's own error.

    :meth:`latest` views it as a document (the row with the highest key),
    :meth:`log` as a log (the rows matching ``where``, in key order)."""

    table: Table
    row_of: Callable[[dict[str, Any]], dict[str, Any]]
    on_conflict: Callable[[IntegrityError], Exception] | None = None

    @property
    def key(self) -> ColumnElement[Any]:
        return self.table.c.id

    def upsert(self, conn: Connection, record: dict[str, Any]) -> None:
        """Write ``record``'s row."""
        try:
            conn.execute(_upsert(conn, self.table, self.key), self.row_of(record))
        except IntegrityError as exc:
            if self.on_conflict is None:
                raise
            raise self.on_conflict(exc) from exc

    def latest(self) -> LatestRow:
        return LatestRow(self)

    def log(self, where: ColumnElement[bool]) -> FilteredRows:
        return FilteredRows(self, where)


@dataclass(frozen=True)
class LatestRow:
    """A :class:`KeyedRows` table as a document: the row with the highest key."""

    rows: KeyedRows

    def read(self, conn: Connection) -> Any | None:
        table = self.rows.table
        newest = _LATEST.get(table)
        if newest is None:
            newest = _LATEST[table] = (
                select(self.rows.key, table.c.body).order_by(self.rows.key.desc()).limit(1)
            )
        row = conn.execute(newest).first()
        return None if row is None else parse_body(table.name, row[0], row[1])

    def write(self, conn: Connection, value: Any) -> None:
        if value is not None:  # "no current record" is the absence of rows
            self.rows.upsert(conn, value)


@dataclass(frozen=True)
class FilteredRows:
    """A :class:`KeyedRows` table as a log: the rows ``where`` selects, in key
    order."""

    rows: KeyedRows
    where: ColumnElement[bool]

    @property
    def key(self) -> ColumnElement[Any]:
        return self.rows.key

    def query(self, kind: str | None) -> Select[Any]:
        return select(self.rows.key, self.rows.table.c.body).where(self.where)

    def record(
        self, where: str, row: Sequence[Any], parsed: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return parse_body(where, row[0], row[1]) if parsed is None else parsed

    def parse_cursor(self, cursor: str) -> Any:
        if not cursor.isascii() or not cursor.isprintable() or not cursor:
            raise InvalidCursorError(f"invalid cursor {cursor!r}; pass back a next_cursor value")
        return cursor

    def after(self, key: Any) -> Any:
        return key + _AFTER

    def insert(self, conn: Connection, records: Sequence[dict[str, Any]]) -> None:
        for record in records:
            self.rows.upsert(conn, record)


# Statements built once per table and reused (SQLAlchemy would build and hash
# a new one per call); values travel as parameters.
_DOCUMENT_BODY = select(documents.c.body).where(documents.c.name == bindparam("name"))
_LATEST: dict[Table, Any] = {}
_UPSERTS: dict[tuple[str, Table], Any] = {}


def _upsert(conn: Connection, table: Table, key: ColumnElement[Any]) -> Any:
    """INSERT ... ON CONFLICT (key) DO UPDATE every other column, for the
    connection's dialect: one statement where a delete and an insert took
    two round trips."""
    dialect = conn.dialect.name
    statement = _UPSERTS.get((dialect, table))
    if statement is None:
        insert_ = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
        others = {c.name: insert_.excluded[c.name] for c in table.columns if c is not key}
        statement = insert_.on_conflict_do_update(index_elements=[key], set_=others)
        _UPSERTS[(dialect, table)] = statement
    return statement


def document_placement(doc: Document) -> SqlDocument:
    if doc.sql is None:
        return DocumentRow(doc)
    placement: SqlDocument = doc.sql()
    return placement


def log_placement(log: Log) -> SqlLog:
    if log.sql is None:
        return LogRows(log)
    placement: SqlLog = log.sql()
    return placement
