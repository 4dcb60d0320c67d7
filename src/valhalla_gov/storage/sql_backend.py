"""The scale-out backend: SQLAlchemy 2 on PostgreSQL (psycopg 3) or SQLite.

Same protocol as the JSON files, so the services do not change. Each
:meth:`SqlStore.transaction` is one database transaction holding an exclusive
writer lock (the row lock of ``store_generation``, plus ``BEGIN IMMEDIATE`` on
SQLite): every document and log write of one operation commits together or
not at all, and replicas serialise their writers exactly like workers sharing
a data dir do, so logs whose records depend on the previous one (a hash
chain) stay in order.

Every write transaction bumps the store generation in the statement that
takes the lock. Reads cache documents per generation (:class:`_ReadCache`):
one small query tells whether anything was written since, by any worker or
replica. A change made outside Valhalla (psql) must bump it too:
``UPDATE store_generation SET n = n + 1``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import operator
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice, repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    bindparam,
    column,
    create_engine,
    event,
    func,
    inspect,
    select,
    table,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .encoding import copy_parsed, loads
from .errors import StorageCorruptError, StorageUnavailableError
from .protocol import Appends, BulkRun, Document, Log, LogEntry, R, Schema, T
from .sql_placement import (
    UNKNOWN,
    UPSERTED,
    DocumentRow,
    FilteredRows,
    KeyedRows,
    LatestRow,
    LogRows,
    SqlDocument,
    SqlLog,
    Upserted,
    document_placement,
    log_placement,
)

if TYPE_CHECKING:
    from alembic.config import Config

    from .sql_fence import GenerationFence

log = logging.getLogger(__name__)

ENV_DIR = Path(__file__).parent / "migrations"
# Scans fetch in growing batches: most callers want one record (the chain's
# last line) or one page (51 or 101 rows); walks of the whole log grow to 1000.
_FIRST_BATCH = 64
_MAX_BATCH = 1000
# Walks of a whole log (scan_log_bulk) stream rows in batches of this many.
_BULK_BATCH = 20_000
# PostgreSQL NOTIFY channel for "a log gained records"; the payload is the
# schema, so databases shared by several schemas wake only their own readers.
LOG_CHANNEL = "valhalla_log_append"
# ``probe(write=False)`` re-reads the schema revision at most this often.
SCHEMA_RECHECK_S = 5.0
# A write transaction's first statement: it takes the writer lock (the
# generation row's lock, held to commit: writers on every replica queue on
# it), bumps the generation and, on PostgreSQL, queues the wake-up that
# listening replicas get at commit. One round trip for all three.
_BEGIN_WRITE_PG = text(
    "WITH wake AS (SELECT pg_notify(:channel, current_schema())) "
    "UPDATE store_generation SET n = n + 1 FROM wake WHERE id = 1 RETURNING n"
)
# SQLite: BEGIN IMMEDIATE already holds the writer lock; two plain statements
# (UPDATE ... RETURNING needs SQLite 3.35, older systems still ship less).
_BUMP = text("UPDATE store_generation SET n = n + 1 WHERE id = 1")
_GENERATION = text("SELECT n FROM store_generation WHERE id = 1")
_MISS = object()
_NOTHING_DIRTY: frozenset[str] = frozenset()


class _NeedsIO(Exception):
    """Raised inside :meth:`SqlStore.run_cached` where the work would have to
    wait for the database; the caller runs it again where it may."""


# Statements built once and reused: SQLAlchemy builds and hashes a new
# statement object on every call otherwise, which cost more than the round
# trip. Keyed on the log's declaration (with its placement factory, which
# Log equality leaves out), never on caller input: a filter's kind is not
# kept, there may be any number of them.
_PAGES: dict[tuple[Any, ...], Any] = {}
_NEWEST_KEY: dict[tuple[Log, Any], Any] = {}
_NEWEST_ROW: dict[tuple[Log, Any], Any] = {}


def _page(
    placement: SqlLog, log: Log, kind: str | None, bounded: bool, newest_first: bool, batch: int
) -> Any:
    memo_key = (log, log.sql, bounded, newest_first, batch)
    page = _PAGES.get(memo_key) if kind is None else None
    if page is None:
        key = placement.key
        page = placement.query(kind)
        if bounded:
            bound = bindparam("bound", type_=key.type)
            page = page.where(key < bound if newest_first else key >= bound)
        page = page.order_by(key.desc() if newest_first else key.asc()).limit(batch)
        if kind is None:
            _PAGES[memo_key] = page
    return page


class _ReadCache:
    """Documents as read outside a transaction, each tagged with the store
    generation it was read at and the scope (table or row set) it lives in.

    A hit needs the generation the caller has just read, so a write on any
    worker or replica (which bumps it) is seen by the next read anywhere. A
    transaction that committed tells :meth:`advance` which scopes it wrote:
    what it did not write is still true at the new generation, so a GET after
    a write re-reads only what that write changed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, object], tuple[int, str, Any]] = {}

    def get(self, key: tuple[str, object], generation: int, dirty: AbstractSet[str]) -> Any:
        entry = self._entries.get(key)
        if entry is None or entry[0] != generation or entry[1] in dirty:
            return _MISS
        return entry[2]

    def put(self, key: tuple[str, object], generation: int, scope: str, value: Any) -> None:
        with self._lock:
            old = self._entries.get(key)
            if old is None or old[0] <= generation:
                self._entries[key] = (generation, scope, value)

    def reparse(self, name: str, raw: Any, generation: int, scope: str) -> None:
        """Document ``name`` is now ``raw`` (as a read returns it), at
        ``generation``: its parsed entries are parsed again from it, so the
        first read after a write needs no query."""
        with self._lock:
            keys = [k for k in self._entries if k[0] == "parsed" and k[1][0] == name]  # type: ignore[index]
        for key in keys:
            parse = key[1][1]  # type: ignore[index]
            try:
                value = parse(copy_parsed(raw))
            except Exception:
                # Whatever the parse raises, the next read raises it again
                # and reports it as every read does; the write has committed,
                # so it must not fail here.
                self.drop(key)
            else:
                self.put(key, generation, scope, value)

    def drop(self, key: tuple[str, object]) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def advance(self, before: int, after: int, dirty: set[str]) -> None:
        with self._lock:
            for key, (generation, scope, value) in list(self._entries.items()):
                if generation == before and scope not in dirty:
                    self._entries[key] = (after, scope, value)


@dataclass(frozen=True)
class Migrations:
    """An application's schema: its declarations and its Alembic revisions.

    ``head``, when the application declares its newest revision, lets a store
    check the schema without importing Alembic (about 0.1 s of every CLI
    command's start-up); the application's tests hold it to the scripts."""

    schema: Schema
    versions: Path
    head: str | None = None

    def load_tables(self) -> None:
        """Build every declared table on the shared metadata (migrations
        compare against it)."""
        factories = [doc.sql for doc in self.schema.documents]
        factories += [log.sql for log in self.schema.logs]
        for factory in factories:
            if factory is not None:
                factory()


class SchemaOutOfDateError(Exception):
    """The database schema is older (or newer) than this code expects."""


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as a libpq one (``postgresql+psycopg://`` -> ``postgresql://``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def alembic_config(migrations: Migrations, connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(ENV_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(migrations.versions))
    config.attributes["connection"] = connection
    return config


def head_revision(migrations: Migrations) -> str | None:
    """The newest migration: as declared, else read from the scripts."""
    if migrations.head is not None:
        return migrations.head
    return script_head(migrations)


@functools.cache
def script_head(migrations: Migrations) -> str | None:
    """The newest migration as Alembic reads it from the scripts, once per process."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(migrations)).get_current_head()


# Alembic's default version table, which env.py keeps.
_VERSIONS = table("alembic_version", column("version_num"))


def current_revision(conn: Connection) -> str | None:
    """The database's revision, as Alembic records it (None: never upgraded;
    several heads are named together, which no head equals)."""
    if not inspect(conn).has_table(_VERSIONS.name):
        return None
    revisions = conn.execute(select(_VERSIONS.c.version_num)).scalars()
    return ", ".join(sorted(revisions)) or None


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


def upgrade(url: str, migrations: Migrations) -> tuple[str | None, str | None]:
    """Apply every migration; returns (revision before, revision after)."""
    from alembic import command

    migrations.load_tables()
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            before = current_revision(conn)
            command.upgrade(alembic_config(migrations, conn), "head")
            after = current_revision(conn)
        return before, after
    finally:
        engine.dispose()


class SqlStore:
    blocking = True

    def __init__(
        self,
        url: str,
        migrations: Migrations,
        *,
        check_schema: bool = True,
        pool_size: int = 10,
    ) -> None:
        self.url = url
        self.migrations = migrations
        self.schema = migrations.schema
        self.engine = make_engine(url, pool_size=pool_size)
        # Reads outside a transaction are single statements: on PostgreSQL
        # autocommit saves the BEGIN and ROLLBACK round trips around each.
        self._read_engine = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.engine.dialect.name == "postgresql"
            else self.engine
        )
        self._local = threading.local()
        self._cache = _ReadCache()
        # Logs that are a KeyedRows table's rows under a filter with a record
        # test, by table: a write to the table tells what their last record is.
        self._filtered: dict[str, list[tuple[Log, FilteredRows]]] = {}
        for log in self.schema.logs:
            placement = log_placement(log)
            if isinstance(placement, FilteredRows) and placement.matches is not None:
                self._filtered.setdefault(placement.rows.table.name, []).append((log, placement))
        self._fence: GenerationFence | None = None  # while live(): the async generation read
        self._appends: dict[str, Appends] = {}  # the last commit's, by log (see last_appends)
        self._schema_ok_at: float | None = None  # monotonic time of the last good check
        if check_schema:
            problem = self.schema_problem()
            if problem is not None:
                self.engine.dispose()
                raise SchemaOutOfDateError(problem)

    def describe(self) -> str:
        return f"sql:{redact(self.url)}"

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.asynccontextmanager
    async def live(self) -> AsyncIterator[None]:
        """While serving (PostgreSQL): one async connection on the server's
        event loop reads the generation for :meth:`current_generation`."""
        if self.engine.dialect.name != "postgresql" or self._fence is not None:
            yield
            return
        from .sql_fence import GenerationFence

        fence = GenerationFence(libpq_url(self.url), redact(self.url))
        self._fence = fence
        try:
            yield
        finally:
            self._fence = None
            await fence.close()

    async def current_generation(self) -> int | None:
        return None if self._fence is None else await self._fence.read()

    def run_cached(self, fn: Callable[[], R], generation: int | None) -> tuple[R] | None:
        if generation is None:
            return None
        if getattr(self._local, "txn", None) is not None or hasattr(self._local, "generation"):
            return None  # inside a transaction or a reading scope: not ours to redirect
        self._local.generation = generation
        self._local.no_io = True
        try:
            return (fn(),)
        except _NeedsIO:
            return None
        finally:
            del self._local.generation, self._local.no_io

    def _io(self) -> None:
        """Every path that talks to the database passes here first."""
        if getattr(self._local, "no_io", False):
            raise _NeedsIO

    def _unavailable(self, exc: Exception) -> StorageUnavailableError:
        return StorageUnavailableError(redact(self.url), f"database error: {exc}")

    def schema_problem(self) -> str | None:
        self._io()
        head = head_revision(self.migrations)
        try:
            with self.engine.connect() as conn:
                current = current_revision(conn)
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
        self._io()
        try:
            with self._read_engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    def _generation(self, conn: Connection) -> int | None:
        """The store generation, read once per :meth:`reading` scope."""
        scoped: int | None = getattr(self._local, "generation", None)
        if scoped is not None:
            return scoped
        value = conn.execute(_GENERATION).scalar()
        return None if value is None else int(value)

    @contextlib.contextmanager
    def reading(self, at: int | None = None) -> Iterator[int | None]:
        """Reads in this scope share one generation check (one round trip, or
        none with ``at``)."""
        txn: _SqlTxn | None = getattr(self._local, "txn", None)
        if txn is not None:
            yield txn.base_generation
            return
        if hasattr(self._local, "generation"):
            yield self._local.generation
            return
        if at is not None:
            self._local.generation = at
        else:
            with self._reader() as conn:
                self._local.generation = self._generation(conn)
        try:
            yield self._local.generation
        finally:
            del self._local.generation

    def _cached(
        self, key: tuple[str, object], scope: str, load: Callable[[Connection], Any]
    ) -> Any:
        txn: _SqlTxn | None = getattr(self._local, "txn", None)
        if txn is not None:
            return txn.cached(key, scope, load)
        scoped: int | None = getattr(self._local, "generation", None)
        if scoped is not None:  # a hit needs no connection from the pool
            value = self._cache.get(key, scoped, _NOTHING_DIRTY)
            if value is not _MISS:
                return value
        with self._reader() as conn:
            generation = self._generation(conn)
            if generation is None:  # no generation row: nothing can be trusted
                return load(conn)
            value = self._cache.get(key, generation, _NOTHING_DIRTY)
            if value is _MISS:
                # Loads that read through the cache themselves (a table's
                # newest row) do it at this generation, on this connection.
                outer = hasattr(self._local, "generation")
                if not outer:
                    self._local.generation = generation
                try:
                    value = load(conn)
                finally:
                    if not outer:
                        del self._local.generation
                self._cache.put(key, generation, scope, value)
            return value

    def _newest_row(self, rows: KeyedRows, conn: Connection) -> tuple[Any, dict[str, Any]] | None:
        """A table's newest row, through the cache entry a transaction also
        reads and follows (so a read before a write spares the write's)."""
        generation: int | None = getattr(self._local, "generation", None)
        key = ("newest", rows.table.name)
        if generation is not None:
            known = self._cache.get(key, generation, _NOTHING_DIRTY)
            if known is not _MISS:
                return known  # type: ignore[no-any-return]
        newest = rows.latest().read_row(conn)
        if generation is not None:
            self._cache.put(key, generation, rows.scope, newest)
        return newest

    def _document(self, placement: SqlDocument, conn: Connection) -> Any | None:
        if isinstance(placement, LatestRow):
            newest = self._newest_row(placement.rows, conn)
            return None if newest is None else newest[1]
        return placement.read(conn)

    def read_document(self, doc: Document) -> Any | None:
        # The caller owns what it gets (the cached value stays as read).
        return copy_parsed(self._shared_document(doc))

    def _shared_document(self, doc: Document) -> Any | None:
        """The document as read and cached: shared, never to be mutated."""
        txn: _SqlTxn | None = getattr(self._local, "txn", None)
        if txn is not None:
            return txn.shared_document(doc)
        placement = document_placement(doc)

        def load(conn: Connection) -> Any | None:
            return self._document(placement, conn)

        return self._cached(("doc", doc.name), placement.scope, load)

    def read_cached(self, doc: Document, parse: Callable[[Any | None], T]) -> T:
        # Parsed once per generation; the result is shared, not to be mutated.
        placement = document_placement(doc)

        def load(conn: Connection) -> T:
            return parse(self._document(placement, conn))

        result: T = self._cached(("parsed", (doc.name, parse)), placement.scope, load)
        return result

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_SqlTxn]:
        current: _SqlTxn | None = getattr(self._local, "txn", None)
        if current is not None:
            yield current  # re-entrant, like the JSON backend's lock
            return
        self._io()
        try:
            with self.engine.connect() as raw:
                conn = raw.execution_options(valhalla_write=True)
                with conn.begin():
                    generation = self._begin_write(conn)
                    txn = _SqlTxn(conn, self._cache, generation, self._filtered)
                    self._local.txn = txn
                    # This transaction's upserts (sql_placement), only while it runs.
                    conn.info[UPSERTED] = {}
                    try:
                        yield txn
                    finally:
                        self._local.txn = None
                        conn.info.pop(UPSERTED, None)
            # Committed: what this transaction did not write is still true.
            self._cache.advance(txn.base_generation, generation, txn.dirty)
            self._appends = {
                name: Appends(generation, before, tuple(entries))
                for name, (before, entries) in txn.appended.items()
                if isinstance(before, dict) and entries
            }
            for key, (scope, value) in txn.fresh.items():
                self._cache.put(key, generation, scope, value)
                if key[0] == "doc":
                    self._cache.reparse(str(key[1]), value, generation, scope)
        except IntegrityError as exc:
            raise StorageUnavailableError(
                redact(self.url), f"refused by the database: {exc.orig}"
            ) from exc
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[SqlSnapshot]:
        """Reads inside one read-only transaction: REPEATABLE READ on
        PostgreSQL, a deferred transaction on SQLite (WAL: it reads the
        database as of its first read). Its first read is made here, so every
        write committed before the call is in it; writers carry on meanwhile."""
        self._io()
        try:
            with self.engine.connect() as raw:
                conn = raw
                if raw.dialect.name == "postgresql":
                    conn = raw.execution_options(
                        isolation_level="REPEATABLE READ", postgresql_readonly=True
                    )
                with conn.begin():
                    conn.execute(_GENERATION)
                    yield SqlSnapshot(self, conn)
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    def _begin_write(self, conn: Connection) -> int:
        if conn.dialect.name == "postgresql":
            row = conn.execute(_BEGIN_WRITE_PG, {"channel": LOG_CHANNEL}).first()
        else:
            conn.execute(_BUMP)
            row = conn.execute(_GENERATION).first()
        if row is None:
            raise StorageCorruptError(
                f"{redact(self.url)} table store_generation",
                "its row is missing; restore it with "
                "INSERT INTO store_generation (id, n) VALUES (1, 0)",
            )
        return int(row[0])

    def scan_log(
        self,
        log: Log,
        *,
        before: str | None = None,
        kind: str | None = None,
        take: int | None = None,
    ) -> Iterator[LogEntry]:
        placement = log_placement(log)
        bound = None if before is None else placement.parse_cursor(before)
        first = _FIRST_BATCH if take is None else max(1, min(take, _MAX_BATCH))
        return self._keyset(placement, log, kind, bound, newest_first=True, first=first)

    def last_appends(self, log: Log) -> Appends | None:
        return self._appends.get(log.name)

    def scan_log_forward(self, log: Log, *, after: str | None = None) -> Iterator[LogEntry]:
        placement = log_placement(log)
        bound = None if after is None else placement.parse_cursor(after)
        return self._keyset(placement, log, None, bound, newest_first=False)

    def _keyset(
        self,
        placement: SqlLog,
        log: Log,
        kind: str | None,
        bound: Any | None,
        *,
        newest_first: bool,
        first: int = _FIRST_BATCH,
    ) -> Iterator[LogEntry]:
        """Keyset pages over the placement's key in growing batches. ``bound``
        is a cursor boundary: rows below it newest first, rows at or above it
        oldest first."""
        batch = first
        while True:
            page = _page(placement, log, kind, bound is not None, newest_first, batch)
            with self._reader() as conn:
                rows = conn.execute(page, {"bound": bound}).all()
            for row in rows:
                row_key = row[0]
                # Backward: the boundary before the row is its key; forward: after it.
                cursor = row_key if newest_first else placement.after(row_key)
                yield LogEntry(str(cursor), placement.record(log.name, row))
            if len(rows) < batch:
                return
            bound = rows[-1][0] if newest_first else placement.after(rows[-1][0])
            batch = min(batch * 4, _MAX_BATCH)

    def scan_log_bulk(
        self, log: Log, *, after: str | None = None, until: str | None = None
    ) -> Iterator[BulkRun]:
        placement = log_placement(log)
        start = None if after is None else placement.parse_cursor(after)
        stop = None if until is None else placement.parse_cursor(until)
        txn: _SqlTxn | None = getattr(self._local, "txn", None)
        if txn is not None:
            # Inside this thread's transaction: read what it has written.
            query = _between(placement, placement.query(None), start, stop)
            result = txn.conn.execute(query.order_by(placement.key.asc()))
            yield from _bulk_records(placement, log.name, result)
            return
        self._io()
        try:
            with self._read_engine.connect() as conn:
                pages = _key_pages(conn, placement, _BULK_BATCH, start, stop)
                for rows in _prefetched(pages):
                    yield from _bulk_records(placement, log.name, rows)
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        except self.engine.dialect.loaded_dbapi.Error as exc:
            # The driver's own cursor: its errors come unwrapped.
            raise self._unavailable(exc) from exc

    def split_log(self, log: Log, parts: int, *, min_part: int = 1) -> list[str]:
        placement = log_placement(log)
        query = placement.query(None).with_only_columns(
            func.min(placement.key), func.max(placement.key)
        )
        with self._reader() as conn:
            low, high = conn.execute(query).one()
        if type(low) is not int or type(high) is not int:
            return []  # an empty log, or keys that do not split evenly
        # Even shares of the key range: rows are appended with growing ids
        # (shared by every log, so a share may hold fewer rows than it spans).
        parts = min(parts, (high - low + 1) // max(1, min_part))
        cuts = sorted({low + (high - low + 1) * i // parts for i in range(1, parts)})
        return [str(cut) for cut in cuts if low < cut <= high]

    def log_version(self, log: Log) -> str:
        # The newest key: one probe of the log's index, once per generation.
        placement = log_placement(log)
        query = _NEWEST_KEY.get((log, log.sql))
        if query is None:
            query = _NEWEST_KEY[(log, log.sql)] = placement.query(None).with_only_columns(
                func.max(placement.key)
            )

        def read(conn: Connection) -> str:
            return str(conn.execute(query).scalar())

        version: str = self._cached(("version", log.name), placement.scope, read)
        return version

    def probe(self, *, write: bool = True) -> list[str]:
        # Nothing is written either way. ``write=False`` (request-path checks, also inside
        # writes) re-reads the schema revision at most every few seconds (it
        # changes only by `valhalla db upgrade`) and reads the documents on
        # the caller's connection (its transaction's, inside one).
        fresh = self._schema_ok_at is not None and (
            time.monotonic() - self._schema_ok_at < SCHEMA_RECHECK_S
        )
        if write or not fresh:
            try:
                problem = self.schema_problem()
            except StorageUnavailableError as exc:
                self._schema_ok_at = None
                return [str(exc)]
            if problem is not None:
                self._schema_ok_at = None
                return [f"{redact(self.url)}: {problem}"]
            self._schema_ok_at = time.monotonic()
        problems: list[str] = []
        try:
            for doc in self.schema.documents:
                try:
                    # Read (and cached) to see that it parses; no copy needed.
                    self._shared_document(doc)
                except StorageCorruptError as exc:
                    problems.append(f"{redact(self.url)}: {exc}")
        except StorageUnavailableError as exc:
            problems.append(str(exc))
        return problems


class SqlSnapshot:
    """The reads of :class:`SqlStore`, made on the one connection whose
    transaction holds the snapshot (no read cache: it is of another moment)."""

    def __init__(self, store: SqlStore, conn: Connection) -> None:
        self.schema = store.schema
        self._store = store
        self._conn = conn

    def describe(self) -> str:
        return self._store.describe()

    def read_document(self, doc: Document) -> Any | None:
        return document_placement(doc).read(self._conn)

    def scan_log(
        self,
        log: Log,
        *,
        before: str | None = None,
        kind: str | None = None,
        take: int | None = None,
    ) -> Iterator[LogEntry]:
        placement = log_placement(log)
        bound = None if before is None else placement.parse_cursor(before)
        first = _FIRST_BATCH if take is None else max(1, min(take, _MAX_BATCH))
        return self._pages(placement, log, kind, bound, newest_first=True, batch=first)

    def scan_log_forward(self, log: Log, *, after: str | None = None) -> Iterator[LogEntry]:
        placement = log_placement(log)
        bound = None if after is None else placement.parse_cursor(after)
        return self._pages(placement, log, None, bound, newest_first=False, batch=_MAX_BATCH)

    def _pages(
        self,
        placement: SqlLog,
        log: Log,
        kind: str | None,
        bound: Any | None,
        *,
        newest_first: bool,
        batch: int,
    ) -> Iterator[LogEntry]:
        while True:
            page = _page(placement, log, kind, bound is not None, newest_first, batch)
            rows = self._conn.execute(page, {"bound": bound}).all()
            for row in rows:
                cursor = row[0] if newest_first else placement.after(row[0])
                yield LogEntry(str(cursor), placement.record(log.name, row))
            if len(rows) < batch:
                return
            bound = rows[-1][0] if newest_first else placement.after(rows[-1][0])
            batch = min(batch * 4, _MAX_BATCH)

    def scan_log_bulk(
        self, log: Log, *, after: str | None = None, until: str | None = None
    ) -> Iterator[BulkRun]:
        placement = log_placement(log)
        start = None if after is None else placement.parse_cursor(after)
        stop = None if until is None else placement.parse_cursor(until)
        for rows in _key_pages(self._conn, placement, _BULK_BATCH, start, stop):
            yield from _bulk_records(placement, log.name, rows)


def _key_pages(
    conn: Connection, placement: SqlLog, size: int, start: Any | None, stop: Any | None
) -> Iterator[list[Any]]:
    """Keyset pages of ``size`` rows in key order from ``start`` to before
    ``stop``, fetched by the driver's own cursor: SQLAlchemy's per-row work
    would cost more than the walk itself."""
    key = placement.key
    bound = start
    while True:
        query = _between(placement, placement.query(None), bound, stop)
        compiled = query.order_by(key.asc()).limit(size).compile(dialect=conn.dialect)
        params: Any = compiled.params
        if compiled.positional and compiled.positiontup is not None:
            params = tuple(params[name] for name in compiled.positiontup)
        cursor = conn.connection.cursor()
        try:
            cursor.execute(str(compiled), params)
            rows = list(cursor.fetchall())
        finally:
            cursor.close()
        if rows:
            yield rows
        if len(rows) < size:
            return
        bound = placement.after(rows[-1][0])


def _last_row(placement: SqlLog, where: str, conn: Connection) -> tuple[Any, dict[str, Any]] | None:
    """The log's last row, (key, record), or None when it has none."""
    query = placement.query(None).order_by(placement.key.desc()).limit(1)
    row = conn.execute(query).first()
    return None if row is None else (row[0], placement.record(where, row))


def _between(
    placement: SqlLog, query: Select[Any], start: Any | None, stop: Any | None
) -> Select[Any]:
    """``query`` limited to keys from ``start`` to before ``stop`` (either open)."""
    if start is not None:
        query = query.where(placement.key >= start)
    if stop is not None:
        query = query.where(placement.key < stop)
    return query


def _prefetched(pages: Iterator[list[Any]]) -> Iterator[list[Any]]:
    """``pages``, with the next one fetched in a thread while the caller works
    on this one: the database and the caller's CPU overlap (the driver
    releases the GIL while it waits)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="valhalla-prefetch") as pool:
        ahead = pool.submit(next, pages, None)
        while True:
            page = ahead.result()
            if page is None:
                return
            ahead = pool.submit(next, pages, None)
            yield page


def _bulk_records(
    placement: SqlLog, where: str, rows: Iterable[Sequence[Any]]
) -> Iterator[BulkRun]:
    fast = orjson.loads
    stream = iter(rows)
    # Runs of rows parsed and checked in one pass each (no Python step per
    # row), few enough to stay in the CPU's cache until the caller used them.
    while run := list(islice(stream, _PARSE_RUN)):
        bodies: list[bytes | str] = list(map(_BODY, run))
        try:
            parsed = list(map(fast, bodies))
        except orjson.JSONDecodeError:
            parsed = None
        if parsed is not None and _kinds_hold(placement, run, parsed):
            yield bodies, parsed
            continue
        records: list[dict[str, Any]] = []
        for row, body in zip(run, bodies, strict=True):
            try:
                one = fast(body)
            except orjson.JSONDecodeError:
                one = None  # parsed again by the placement: it names the row
            try:
                records.append(placement.record(where, row, one if type(one) is dict else None))
            except StorageCorruptError:
                if records:  # every record before the bad one first
                    yield bodies[: len(records)], records
                raise
        yield bodies, records


def _kinds_hold(placement: SqlLog, run: list[Any], parsed: list[Any]) -> bool:
    """True when every parsed body is an object and every row's kind column
    is the body's kind as written (what ``LogRows.record`` checks row by row);
    otherwise the rows are checked one by one, which names a bad one."""
    if not isinstance(placement, LogRows) or set(map(type, parsed)) != {dict}:
        return False
    field = placement.log.kind_field
    kinds = list(map(_KIND, run))
    if field is None:
        return kinds.count(None) == len(kinds)
    return (
        set(map(type, kinds)) == {str}
        and max(map(len, kinds)) <= _KIND_MAX
        and kinds == list(map(dict.get, parsed, repeat(field)))
    )


_BODY = operator.itemgetter(1)
_KIND = operator.itemgetter(2)
_KIND_MAX = 200  # LogRows.kind cuts a longer one: the row-by-row check decides
_PARSE_RUN = 256


_ABSENT = object()


class _SqlTxn:
    """One write transaction. Every writer holds the one writer lock, so what
    this one has read stays true until it writes there: each read is made
    once (documents and records handed out as copies), and made again after
    this transaction writes its scope. What it has not written comes from the
    store's read cache when that is at the generation this one began from."""

    def __init__(
        self,
        conn: Connection,
        cache: _ReadCache,
        generation: int,
        filtered: dict[str, list[tuple[Log, FilteredRows]]],
    ) -> None:
        self.conn = conn
        self._filtered = filtered
        self.base_generation = generation - 1
        self.dirty: set[str] = set()  # scopes this transaction wrote
        # Known true at commit (a log's last record, just appended), for the cache.
        self.fresh: dict[tuple[str, object], tuple[str, Any]] = {}
        self._cache = cache
        self._reads: dict[tuple[str, object], Any] = {}
        # Per log: the record appended after (when known) and what was appended.
        self.appended: dict[str, tuple[Any, list[LogEntry]]] = {}

    def cached(self, key: tuple[str, object], scope: str, load: Callable[[Connection], Any]) -> Any:
        value = self._reads.get(key, _MISS)
        if value is not _MISS:
            return value
        value = self._cache.get(key, self.base_generation, self.dirty)
        if value is _MISS:
            value = load(self.conn)
            if scope not in self.dirty:
                # Unwritten by this transaction, under the writer lock: what
                # was committed at the generation it began from.
                self._cache.put(key, self.base_generation, scope, value)
        self._reads[key] = value
        return value

    def _wrote(self, scope: str) -> None:
        self.dirty.add(scope)
        # Views over the same rows (a table's latest row, a filtered log) change too.
        self._reads.clear()
        self.fresh = {k: v for k, v in self.fresh.items() if v[0] != scope}

    def _now(self, doc: Document, scope: str, raw: Any) -> None:
        """Document ``doc`` reads as ``raw`` from here to commit (unless
        its scope is written again)."""
        key = ("doc", doc.name)
        self._reads[key] = raw
        self.fresh[key] = (scope, raw)

    # A KeyedRows table's newest row, (key, record) or None, is read once and
    # followed through this transaction's upserts where they tell it (the
    # table as a document, and its filtered log's last record, come from it).
    def _newest(self, rows: KeyedRows) -> tuple[Any, dict[str, Any]] | None:
        newest: tuple[Any, dict[str, Any]] | None = self.cached(
            ("newest", rows.table.name), rows.scope, rows.latest().read_row
        )
        return newest

    def _known_newest(self, rows: KeyedRows) -> Any:
        key = ("newest", rows.table.name)
        known = self._reads.get(key, _MISS)
        return self._cache.get(key, self.base_generation, self.dirty) if known is _MISS else known

    def _known_tails(self, rows: KeyedRows) -> list[tuple[Log, FilteredRows, Any]]:
        """The filtered logs over ``rows`` with their last row (key, record),
        None (no row passes) or _MISS, as known before a write: call it
        before :meth:`_wrote`, which forgets."""
        known = []
        for log, placement in self._filtered.get(rows.table.name, ()):
            tail = self._reads.get(("ftail", log.name), _MISS)
            if tail is _MISS:
                tail = self._cache.get(("ftail", log.name), self.base_generation, self.dirty)
            if tail is _MISS:
                newest = self._known_newest(rows)
                if newest is None:
                    tail = None  # no rows at all
                elif newest is not _MISS and placement.matches is not None:
                    tail = newest if placement.matches(newest[1]) else _MISS
            known.append((log, placement, tail))
        return known

    def _follow_tails(
        self, known: list[tuple[Log, FilteredRows, Any]], written: list[Upserted]
    ) -> None:
        """Each filtered log's last row once ``written`` (rows as upserted)
        are in, where that follows without ordering two keys: a row that does
        not pass the filter and is not the last row leaves it; a row that
        passes is the last when it replaces it, or when none passed before."""
        for log, placement, before in known:
            assert placement.matches is not None
            tail = before
            for row in written:
                if tail is _MISS:
                    break
                same = tail is not None and tail[0] == row.key
                if placement.matches(row.record):
                    tail = (row.key, row.record) if tail is None or same else _MISS
                elif same:
                    tail = _MISS  # the last row no longer passes: only the database knows
            if tail is not _MISS:
                self._reads[("ftail", log.name)] = tail
                self.fresh[("ftail", log.name)] = (placement.scope, tail)

    def _upserted(self, rows: KeyedRows, before: Any, written: list[Upserted]) -> Any:
        """Follow the newest row through ``written`` (rows as upserted);
        returns it, or _MISS when only the database knows."""
        after = rows.newest_after(UNKNOWN if before is _MISS else before, written)
        if after is UNKNOWN:
            return _MISS
        key = ("newest", rows.table.name)
        self._reads[key] = after
        self.fresh[key] = (rows.scope, after)
        return after

    def read_document(self, doc: Document) -> Any | None:
        return copy_parsed(self.shared_document(doc))

    def shared_document(self, doc: Document) -> Any | None:
        """The document as this transaction knows it: shared, never to be mutated."""
        placement = document_placement(doc)
        if isinstance(placement, LatestRow):
            newest = self._newest(placement.rows)
            return None if newest is None else newest[1]
        return self.cached(("doc", doc.name), placement.scope, placement.read)

    def write_document(self, doc: Document, value: Any) -> None:
        placement = document_placement(doc)
        before = self._known_newest(placement.rows) if isinstance(placement, LatestRow) else _MISS
        tails = self._known_tails(placement.rows) if isinstance(placement, LatestRow) else []
        self._wrote(placement.scope)
        if isinstance(placement, LatestRow):
            written = placement.write_rows(self.conn, value)
            self._follow_tails(tails, written)
            newest = self._upserted(placement.rows, before, written)
            if newest is not _MISS:
                self._now(doc, placement.scope, None if newest is None else newest[1])
            return
        placement.write(self.conn, value)
        if isinstance(placement, DocumentRow):
            self._now(doc, placement.scope, placement.read_back(value))

    def append_log(self, log: Log, record: dict[str, Any]) -> None:
        placement = log_placement(log)
        scope = placement.scope
        before = (
            self._known_newest(placement.rows) if isinstance(placement, FilteredRows) else _MISS
        )
        tails = self._known_tails(placement.rows) if isinstance(placement, FilteredRows) else []
        # The record this one goes after, if this transaction knows it.
        tail = self._reads.get(("tail", log.name), _MISS)
        self._wrote(scope)
        if isinstance(placement, FilteredRows):
            written = placement.insert_rows(self.conn, [record])
            self._follow_tails(tails, written)
            self._upserted(placement.rows, before, written)
            return
        if isinstance(placement, LogRows):
            (row,) = placement.insert_rows(self.conn, [record])
            # Rows in append order: the last record is this one, as a read
            # would parse it back (the canonical JSON it was stored as).
            key = ("tail", log.name)
            self._reads[key] = stored = loads(row["body"])
            self.fresh[key] = (scope, stored)
            before_tail, entries = self.appended.setdefault(log.name, (tail, []))
            if "id" in row and before_tail is not _MISS:
                cursor = str(placement.after(row["id"]))
                entries.append(LogEntry(cursor, stored))  # shared, read-only (see Appends)
            else:
                self.appended[log.name] = (_MISS, entries)
            return
        placement.insert(self.conn, [record])

    def append_many(self, log: Log, records: Iterable[dict[str, Any]]) -> int:
        placement = log_placement(log)
        self._wrote(placement.scope)
        self.appended[log.name] = (_MISS, [])  # not followed row by row: nothing to hand over
        count = 0
        batch: list[dict[str, Any]] = []
        for record in records:
            count += 1
            batch.append(record)
            if len(batch) >= 1000:
                placement.insert(self.conn, batch)
                batch = []
        if batch:
            placement.insert(self.conn, batch)
        return count

    def rewrite_log(self, log: Log, keep: Callable[[dict[str, Any]], bool]) -> int:
        from sqlalchemy import Column, delete

        placement = log_placement(log)
        key = placement.key
        dropped: list[Any] = []
        bound: Any | None = None
        while True:
            page = _between(placement, placement.query(None), bound, None)
            rows = self.conn.execute(page.order_by(key.asc()).limit(_MAX_BATCH)).all()
            dropped += [row[0] for row in rows if not keep(placement.record(log.name, row))]
            if len(rows) < _MAX_BATCH:
                break
            bound = placement.after(rows[-1][0])
        if not dropped:
            return 0
        self._wrote(placement.scope)
        self.appended[log.name] = (_MISS, [])  # the records before new ones may be gone
        rows_of = cast(Column[Any], key).table
        for at in range(0, len(dropped), _MAX_BATCH):
            self.conn.execute(delete(rows_of).where(key.in_(dropped[at : at + _MAX_BATCH])))
        return len(dropped)

    def last_log_record(self, log: Log) -> dict[str, Any] | None:
        placement = log_placement(log)
        if isinstance(placement, FilteredRows) and placement.matches is not None:
            newest = self._newest(placement.rows)
            if newest is None:
                return None  # no rows at all
            if placement.matches(newest[1]):
                return copy_parsed(newest[1])  # nothing in the table comes after it
            load_row = functools.partial(_last_row, placement, log.name)
            tail_row = self.cached(("ftail", log.name), placement.scope, load_row)
            return None if tail_row is None else copy_parsed(tail_row[1])

        def load(conn: Connection) -> dict[str, Any] | None:
            last = _last_row(placement, log.name, conn)
            return None if last is None else last[1]

        tail = self.cached(("tail", log.name), placement.scope, load)
        return copy_parsed(tail)  # type: ignore[no-any-return]
