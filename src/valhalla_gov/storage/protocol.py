"""The storage protocol every backend implements, and how a caller declares
what it stores.

Two kinds of data: *documents* (small JSON values replaced whole) and *logs*
(append-only records read newest first with a cursor). Whoever stores data
declares it with a :class:`Document` or a :class:`Log` (its name, its file in
a JSON data dir, and optionally where it lives in SQL) and passes that
declaration to every call; the backends know nothing else about it. Every
read-modify-write happens inside :meth:`Store.transaction`, which is
exclusive across threads and processes, so callers keep their invariants
with plain reads and writes inside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Document:
    """A JSON value replaced whole.

    ``envelope``: the stored shape is ``{envelope: value}`` (the callers see
    ``value``); a stored value without that shape is corrupt. ``sql``: a
    zero-argument factory of a :class:`~valhalla_gov.storage.sql_placement.SqlDocument`
    when the value lives in a table of its own; by default it is a row of
    the generic ``documents`` table. A factory, so that SQLAlchemy is only
    imported by the SQL backend.
    """

    name: str
    file: str
    envelope: str | None = None
    sql: Callable[[], Any] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Log:
    """An append-only log of JSON objects.

    ``kind_field``: the record field ``scan_log(kind=...)`` filters on (an
    index on SQL). ``sql``: a factory of a
    :class:`~valhalla_gov.storage.sql_placement.SqlLog` when the records live
    in a table of their own; by default they are rows of ``log_records``.
    """

    name: str
    file: str
    kind_field: str | None = None
    sql: Callable[[], Any] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Schema:
    """Every document and log one application stores (the union of what
    its parts declare). Backends use it to check and describe the whole
    store; reads and writes take the declarations themselves."""

    documents: tuple[Document, ...] = ()
    logs: tuple[Log, ...] = ()

    def __add__(self, other: Schema) -> Schema:
        merged = Schema(self.documents + other.documents, self.logs + other.logs)
        for kind, items in (("document", merged.documents), ("log", merged.logs)):
            for attr in ("name", "file"):
                values = [getattr(item, attr) for item in items]
                dupes = sorted({v for v in values if values.count(v) > 1})
                if dupes:
                    raise ValueError(f"two {kind}s declare the same {attr}: {dupes}")
        return merged


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One log record and the cursor that resumes a scan just past it.

    A cursor names a *boundary* between two records. ``scan_log(before=c)``
    yields the records before it, ``scan_log_forward(after=c)`` those after
    it. An entry's cursor is the boundary on its far side in the scan's
    direction, so a forward cursor passed as ``before`` starts at that very
    record, and a backward cursor passed as ``after`` does too.
    """

    cursor: str
    record: dict[str, Any]


# A run of a bulk scan: stored texts and their records, index for index.
BulkRun = tuple[list[bytes | str], list[dict[str, Any]]]


class Reader(Protocol):
    """Reads that work both inside and outside a transaction."""

    def read_document(self, doc: Document) -> Any | None: ...


class StoreTxn(Reader, Protocol):
    """What a caller may do while it holds the store's exclusive lock."""

    def write_document(self, doc: Document, value: Any) -> None: ...

    def append_log(self, log: Log, record: dict[str, Any]) -> None: ...

    def append_many(self, log: Log, records: Iterable[dict[str, Any]]) -> int:
        """Bulk append (imports): durable once, at the end; returns the count."""
        ...

    def last_log_record(self, log: Log) -> dict[str, Any] | None: ...

    def rewrite_log(self, log: Log, keep: Callable[[dict[str, Any]], bool]) -> int:
        """Keep only the records ``keep`` accepts, in their order, and drop the
        rest (pruning); returns how many were dropped. On JSON the log is
        written anew (temp file, fsync, ``os.replace``, fsync of the dir); on
        SQL the rows are deleted in batches. Cursors into the log handed
        out before are void afterwards."""
        ...


class Snapshot(Reader, Protocol):
    """Reads of the whole store as it was at one moment (:meth:`Store.snapshot`)."""

    schema: Schema

    def describe(self) -> str: ...

    def scan_log(
        self,
        log: Log,
        *,
        before: str | None = None,
        kind: str | None = None,
        take: int | None = None,
    ) -> Iterator[LogEntry]: ...

    def scan_log_forward(self, log: Log, *, after: str | None = None) -> Iterator[LogEntry]: ...

    def scan_log_bulk(self, log: Log) -> Iterator[BulkRun]: ...


class Store(Reader, Protocol):
    """A storage backend: JSON files, or SQL (SQLite / PostgreSQL)."""

    schema: Schema

    def describe(self) -> str: ...

    def read_cached(self, doc: Document, parse: Callable[[Any | None], T]) -> T:
        """``parse(read_document(doc))``, reusing the last result while the
        stored document is unchanged. The result is shared: treat it as
        read-only."""
        ...

    def transaction(self) -> AbstractContextManager[StoreTxn]: ...

    def snapshot(self) -> AbstractContextManager[Snapshot]:
        """A consistent view of every document and log as of one moment,
        for as long as it is held (backups, exports): on JSON a private copy
        taken under the data-dir lock (writers wait a moment), on SQL one
        read transaction (REPEATABLE READ on PostgreSQL, a read transaction
        on SQLite in WAL mode; writers carry on)."""
        ...

    def reading(self) -> AbstractContextManager[None]:
        """A scope whose cached reads share one check that nothing changed
        (one round trip on SQL, where each cached read outside it makes its
        own; on JSON each file is read once in it)."""
        ...

    def scan_log(
        self,
        log: Log,
        *,
        before: str | None = None,
        kind: str | None = None,
        take: int | None = None,
    ) -> Iterator[LogEntry]:
        """Records newest first, starting just older than cursor ``before``;
        with ``kind``, only records whose ``kind_field`` equals it. ``take``
        says how many the caller means to read (a backend that fetches in
        batches sizes its first by it); the iterator goes on if asked."""
        ...

    def scan_log_forward(self, log: Log, *, after: str | None = None) -> Iterator[LogEntry]:
        """Records oldest first, starting just newer than cursor ``after``."""
        ...

    def scan_log_bulk(self, log: Log) -> Iterator[BulkRun]:
        """Every record oldest first, in runs: each run a list of stored JSON
        texts and the list of their records, in order, never empty (for walks of a whole
        log, such as a hash-chain check, that work on many records at once).
        Read in large batches. Parsed for speed: an integer past 64 bits may
        come back as a float, so a caller that needs such a value exact parses
        the text again with :func:`~valhalla_gov.storage.encoding.loads`. A
        record that does not parse raises StorageCorruptError once every
        record before it has been yielded, as the other scans do."""
        ...

    def log_version(self, log: Log) -> str:
        """A cheap token that changes whenever ``log`` gains a record (from any
        process or replica): what live readers poll before scanning."""
        ...

    def probe(self, *, write: bool = True) -> list[str]:
        """Problems that make the store unusable now (empty when healthy).

        ``write=False`` asks the same questions without writing anything (for
        frequent background checks): writability is judged from what the
        system reports (permissions, read-only mounts, free space) instead of
        by a test write, and unchanged documents are not parsed again.
        """
        ...


def parse_int_cursor(cursor: str) -> int:
    """A cursor that is a byte offset or a row id, checked: anything else is
    a cursor no backend handed out."""
    from .errors import InvalidCursorError

    # isascii: str.isdigit() also accepts digits such as "²" that int() rejects.
    # At most 18 digits: never past a 64-bit integer.
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
        raise InvalidCursorError(f"invalid cursor {cursor!r}; pass back a next_cursor value")
    return int(cursor)


def unwrap(doc: Document, where: str, stored: Any | None) -> Any | None:
    """The caller's value out of the stored shape (see ``Document.envelope``)."""
    from .errors import StorageCorruptError

    if stored is None or doc.envelope is None:
        return stored
    if not isinstance(stored, dict) or doc.envelope not in stored:
        raise StorageCorruptError(where, f'expected {{"{doc.envelope}": ...}}')
    return stored[doc.envelope]


def wrap(doc: Document, value: Any) -> Any:
    return value if doc.envelope is None else {doc.envelope: value}
