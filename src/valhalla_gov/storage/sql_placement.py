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
from typing import Any, Protocol, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    bindparam,
    exists,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from .encoding import canonical_json, loads
from .errors import InvalidCursorError, StorageCorruptError
from .protocol import Document, Log, unwrap, wrap
from .sql_schema import documents, log_records


class SqlDocument(Protocol):
    @property
    def scope(self) -> str:
        """The rows it lives in: a write there changes every placement of
        the same scope (read caches are kept per scope)."""
        ...

    def read(self, conn: Connection) -> Any | None: ...

    def write(self, conn: Connection, value: Any) -> None: ...


class SqlLog(Protocol):
    """An append-only log as rows: ``query()`` selects ``(key, body)``, the
    key orders the log and is its cursor."""

    @property
    def key(self) -> ColumnElement[Any]: ...

    @property
    def scope(self) -> str: ...

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


# Connection.info key: the rows KeyedRows upserted in the connection's current
# write transaction (set empty by the SQL backend as each one begins).
UPSERTED = "valhalla.upserted"
_NEWEST_KEY = "valhalla_newest_key"  # an upserted row's key, once more (see _upsert)


@dataclass(frozen=True)
class Upserted:
    """A row :meth:`KeyedRows.upsert` wrote."""

    key: Any
    record: dict[str, Any]  # as a read returns it (parsed from the stored body)
    # The database's answer to "is it now the table's newest row?" (in the
    # key's collation); None where it was not asked (SQLite, or a row this
    # transaction had already written with the same values).
    newest: bool | None


def parse_body(where: str, key: object, body: str) -> dict[str, Any]:
    try:
        value = loads(body)
    except json.JSONDecodeError as exc:
        raise StorageCorruptError(f"{where} row {key}", f"does not parse as JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise StorageCorruptError(f"{where} row {key}", "is not a JSON object")
    return value


def int_cursor(cursor: str) -> int:
    # isascii: str.isdigit() also accepts digits such as "²" that int() rejects.
    # At most 18 digits: a row id, never past a 64-bit integer.
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
        raise InvalidCursorError(f"invalid cursor {cursor!r}; pass back a next_cursor value")
    return int(cursor)


@dataclass(frozen=True)
class DocumentRow:
    """A document as one row of the generic ``documents`` table."""

    doc: Document

    @property
    def scope(self) -> str:
        return f"documents/{self.doc.name}"

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

    def read_back(self, value: Any) -> Any | None:
        """What :meth:`read` returns once ``value`` is written."""
        return unwrap(self.doc, f"documents row {self.doc.name!r}", loads(self._body(value)))

    def _body(self, value: Any) -> str:
        return canonical_json(wrap(self.doc, value))

    def write(self, conn: Connection, value: Any) -> None:
        body = self._body(value)
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

    @property
    def scope(self) -> str:
        return f"log_records/{self.log.name}"

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
        return int_cursor(cursor)

    def after(self, key: Any) -> Any:
        return key + 1

    def insert(self, conn: Connection, records: Sequence[dict[str, Any]]) -> None:
        self.insert_rows(conn, records)

    def insert_rows(
        self, conn: Connection, records: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """:meth:`insert`, returning the rows it wrote (one alone with its
        ``id``, which the database assigned)."""
        rows = [self.row(r) for r in records]
        result = conn.execute(insert(log_records), rows)
        if len(rows) == 1 and result.inserted_primary_key is not None:
            rows[0]["id"] = result.inserted_primary_key[0]
        return rows

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

    @property
    def scope(self) -> str:
        return self.table.name

    def upsert(self, conn: Connection, record: dict[str, Any]) -> Upserted:
        """Write ``record``'s row."""
        row = self.row_of(record)
        key = row[self.key.name]
        stored = parse_body(self.table.name, key, row["body"])
        # The same row written twice in one transaction (a feature whose
        # document and log are views of this one table writes both): the
        # second statement would change nothing.
        written: dict[tuple[str, Any], dict[str, Any]] | None = conn.info.get(UPSERTED)
        if written is not None and written.get((self.table.name, key)) == row:
            return Upserted(key, stored, None)
        # PostgreSQL says whether the row is now the newest; SQLite is not asked.
        asks = conn.dialect.name == "postgresql"
        try:
            statement = _upsert(conn, self.table, self.key, ask_newest=asks)
            result = conn.execute(statement, {**row, _NEWEST_KEY: key} if asks else row)
        except IntegrityError as exc:
            if self.on_conflict is None:
                raise
            raise self.on_conflict(exc) from exc
        if written is not None:
            written[(self.table.name, key)] = row
        return Upserted(key, stored, bool(result.scalar_one()) if asks else None)

    def latest(self) -> LatestRow:
        return LatestRow(self)

    def log(
        self,
        where: ColumnElement[bool],
        matches: Callable[[dict[str, Any]], bool] | None = None,
    ) -> FilteredRows:
        return FilteredRows(self, where, matches)

    def newest_after(
        self, newest: Any, rows: Sequence[Upserted]
    ) -> tuple[Any, dict[str, Any]] | object | None:
        """The table's newest row (key, record as a read returns it) once
        ``rows`` are written, given the
        newest before them (None: no rows; :data:`UNKNOWN`: not known), where
        that follows without another query: the database said a row is the
        newest, or that it is not (the newest is then unchanged); or, where
        it was not asked, each row replaces the newest in place or the table
        was empty and one key was written. :data:`UNKNOWN` otherwise
        (ordering two different keys is the database's collation, not
        Python's)."""
        for row in rows:
            if row.newest is True:
                newest = (row.key, row.record)
            elif row.newest is False:
                if newest is not UNKNOWN and newest is not None and newest[0] == row.key:
                    return UNKNOWN  # cannot be: the newest row said it is not
            elif newest is UNKNOWN or (newest is not None and newest[0] != row.key):
                return UNKNOWN
            else:
                newest = (row.key, row.record)
        return cast("tuple[Any, dict[str, Any]] | object | None", newest)


# What KeyedRows.newest_after answers when only the database knows.
UNKNOWN = object()


@dataclass(frozen=True)
class LatestRow:
    """A :class:`KeyedRows` table as a document: the row with the highest key."""

    rows: KeyedRows

    @property
    def scope(self) -> str:
        return self.rows.scope

    def read(self, conn: Connection) -> Any | None:
        newest = self.read_row(conn)
        return None if newest is None else newest[1]

    def read_row(self, conn: Connection) -> tuple[Any, dict[str, Any]] | None:
        """The newest row's key and record (None: no rows)."""
        table = self.rows.table
        newest = _LATEST.get(table)
        if newest is None:
            newest = _LATEST[table] = (
                select(self.rows.key, table.c.body).order_by(self.rows.key.desc()).limit(1)
            )
        row = conn.execute(newest).first()
        return None if row is None else (row[0], parse_body(table.name, row[0], row[1]))

    def write(self, conn: Connection, value: Any) -> None:
        self.write_rows(conn, value)

    def write_rows(self, conn: Connection, value: Any) -> list[Upserted]:
        """:meth:`write`, returning the rows it wrote."""
        if value is None:  # "no current record" is the absence of rows
            return []
        return [self.rows.upsert(conn, value)]


@dataclass(frozen=True)
class FilteredRows:
    """A :class:`KeyedRows` table as a log: the rows ``where`` selects, in key
    order. ``matches``, when given, is the same filter on a record (the
    backend then knows the log's last record without a query when the
    table's newest row matches it: nothing after it can)."""

    rows: KeyedRows
    where: ColumnElement[bool]
    matches: Callable[[dict[str, Any]], bool] | None = None

    @property
    def key(self) -> ColumnElement[Any]:
        return self.rows.key

    @property
    def scope(self) -> str:
        return self.rows.scope

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
        self.insert_rows(conn, records)

    def insert_rows(self, conn: Connection, records: Sequence[dict[str, Any]]) -> list[Upserted]:
        """:meth:`insert`, returning the rows it wrote."""
        return [self.rows.upsert(conn, record) for record in records]


# Statements built once per table and reused (SQLAlchemy would build and hash
# a new one per call); values travel as parameters.
_DOCUMENT_BODY = select(documents.c.body).where(documents.c.name == bindparam("name"))
_LATEST: dict[Table, Any] = {}
_UPSERTS: dict[tuple[str, Table, bool], Any] = {}


def _upsert(
    conn: Connection, table: Table, key: ColumnElement[Any], *, ask_newest: bool = False
) -> Any:
    """INSERT ... ON CONFLICT (key) DO UPDATE every other column, for the
    connection's dialect: one statement where a delete and an insert took
    two round trips. ``ask_newest`` (PostgreSQL): it also returns whether
    the row is now the newest (the key bound once more as _NEWEST_KEY)."""
    dialect = conn.dialect.name
    statement = _UPSERTS.get((dialect, table, ask_newest))
    if statement is None:
        insert_ = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
        others = {c.name: insert_.excluded[c.name] for c in table.columns if c is not key}
        statement = insert_.on_conflict_do_update(index_elements=[key], set_=others)
        if ask_newest:
            # Whether the row is now the newest, in the key's own collation:
            # the subquery sees the table as it was before this statement.
            newer = table.alias("newer")
            beyond = exists().where(newer.c[key.name] > bindparam(_NEWEST_KEY))
            statement = statement.returning(~beyond)
        _UPSERTS[(dialect, table, ask_newest)] = statement
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
