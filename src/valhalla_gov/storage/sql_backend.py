"""The scale-out backend: SQLAlchemy 2 on PostgreSQL (psycopg 3) or SQLite.

Same protocol as the JSON files, so the services do not change. Each
:meth:`SqlStore.transaction` is one database transaction holding an exclusive
writer lock (the row lock of ``store_generation``, plus ``BEGIN IMMEDIATE`` on
SQLite): every document and log write of one operation commits together or
not at all, and replicas serialise their writers exactly like workers sharing
a data dir do, so logs whose records depend on the previous one (a hash
chain) stay in order.

Every write transaction bumps the store generation in the statement that
takes the lock. :meth:`SqlStore.read_cached` keeps parsed documents for one
generation only: a cached read first reads the generation (one small query,
or none inside a :meth:`SqlStore.reading` scope that already has), and a
write on any worker or replica empties the cache wholesale. A change made
outside Valhalla (psql) must bump it too: ``UPDATE store_generation SET n = n + 1``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import operator
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
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
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from .errors import StorageCorruptError, StorageUnavailableError
from .json_store import check_ancestors
from .protocol import BulkRun, Document, Log, LogEntry, Schema, T
from .sql_placement import (
    LogRows,
    SqlLog,
    document_placement,
    log_placement,
)

if TYPE_CHECKING:
    from alembic.config import Config

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

# Statements built once and reused: SQLAlchemy builds and hashes a new
# statement object on every call otherwise, which cost more than the round
# trip. Keyed on the log's declaration (with its placement factory, which
# Log equality leaves out), never on caller input: a filter's kind is not
# kept, there may be any number of them.
_PAGES: dict[tuple[Any, ...], Any] = {}
_NEWEST_KEY: dict[tuple[Log, Any], Any] = {}


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
    """Parsed documents as of one store generation. A newer generation (any
    write, by any worker or replica) empties it: nothing to invalidate by
    hand, nothing that can be stale."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = -1
        self._values: dict[object, Any] = {}

    def get(self, generation: int, key: object) -> Any:
        with self._lock:
            if generation != self._generation:
                return _MISS
            return self._values.get(key, _MISS)

    def put(self, generation: int, key: object, value: Any) -> None:
        with self._lock:
            if generation > self._generation:
                self._generation, self._values = generation, {}
            if generation == self._generation:
                self._values[key] = value


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


def database_label(url: str) -> str:
    """How errors name the database: its name, never the URL (a 503 body
    goes to any client; the server log has the rest)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite database {Path(parsed.database or ':memory:').name}"
    return f"database {parsed.database or '(default)'}"


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


def _private_sqlite_file(database: str) -> None:
    """Create the SQLite file (and its dir) readable by this account only,
    before SQLite creates it with the umask's permissions."""
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    # A file another account made (with credentials of its choosing), or one in a
    # folder it could swap, is refused like such a data dir.
    me = os.geteuid()
    try:
        st = path.lstat()
    except OSError as exc:
        raise StorageUnavailableError(path, f"cannot check the database file: {exc}") from exc
    if not stat.S_ISREG(st.st_mode) or st.st_uid != me:
        raise StorageUnavailableError(
            path,
            "the database file is a link or belongs to another account, who could have put "
            f"credentials of its choosing in it; if it is yours, fix it with: chown {me} {path}",
        )
    check_ancestors(path, me)


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            _private_sqlite_file(database)
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


def _error_kind(exc: SQLAlchemyError) -> str:
    """The driver's name for what went wrong (``UndefinedTable``), nothing
    the database or a client wrote."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return type(cause).__name__


class SqlStore:
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
        self.where = database_label(url)
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
        if check_schema:
            problem = self.schema_problem()
            if problem is not None:
                self.engine.dispose()
                raise SchemaOutOfDateError(problem)

    def describe(self) -> str:
        return f"sql:{redact(self.url)}"

    def close(self) -> None:
        self.engine.dispose()

    def _unavailable(self, exc: SQLAlchemyError) -> StorageUnavailableError:
        # The driver's message may quote SQL, names or a client's input: it
        # goes to the log (and stays the error's __cause__), not into a 503.
        log.error("database error on %s: %s", redact(self.url), exc)
        return StorageUnavailableError(
            self.where, f"database error ({_error_kind(exc)}); the server's log has the details"
        )

    def schema_problem(self) -> str | None:
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
    def _txn(self) -> _SqlTxn | None:
        txn: _SqlTxn | None = getattr(self._local, "txn", None)
        return txn

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Connection]:
        txn = self._txn()
        if txn is not None:
            # Inside this thread's transaction: read what it has written so far.
            yield txn.conn
            return
        try:
            with self._read_engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    @staticmethod
    def _read_generation(conn: Connection) -> int | None:
        value = conn.execute(_GENERATION).scalar()
        return None if value is None else int(value)

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Cached reads in this scope share one generation check (one round
        trip for all of them)."""
        if self._txn() is not None or hasattr(self._local, "generation"):
            yield
            return
        with self._reader() as conn:
            self._local.generation = self._read_generation(conn)
        try:
            yield
        finally:
            del self._local.generation

    def read_document(self, doc: Document) -> Any | None:
        txn = self._txn()
        if txn is not None:
            return txn.read_document(doc)
        with self._reader() as conn:
            return document_placement(doc).read(conn)

    def read_cached(self, doc: Document, parse: Callable[[Any | None], T]) -> T:
        # Parsed once per generation; the result is shared, not to be mutated.
        placement = document_placement(doc)
        if self._txn() is not None:
            return parse(self.read_document(doc))
        key = (doc.name, parse)
        generation: int | None = getattr(self._local, "generation", None)
        if generation is not None:
            hit = self._cache.get(generation, key)
            if hit is not _MISS:
                return hit  # type: ignore[no-any-return]
        with self._reader() as conn:
            if generation is None:
                # Read before the document: a write between the two leaves a
                # newer value under an older generation, never the reverse.
                generation = self._read_generation(conn)
                if generation is None:  # no generation row: nothing can be trusted
                    return parse(placement.read(conn))
                hit = self._cache.get(generation, key)
                if hit is not _MISS:
                    return hit  # type: ignore[no-any-return]
            value = parse(placement.read(conn))
        self._cache.put(generation, key, value)
        return value

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_SqlTxn]:
        current = self._txn()
        if current is not None:
            yield current  # re-entrant, like the JSON backend's lock
            return
        try:
            with self.engine.connect() as raw:
                conn = raw.execution_options(valhalla_write=True)
                with conn.begin():
                    self._begin_write(conn)
                    txn = _SqlTxn(conn)
                    self._local.txn = txn
                    try:
                        yield txn
                    finally:
                        self._local.txn = None
        except IntegrityError as exc:
            log.error("refused by %s: %s", redact(self.url), exc)
            raise StorageUnavailableError(
                self.where,
                f"refused by the database ({_error_kind(exc)}); the server's log has the details",
            ) from exc
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[SqlSnapshot]:
        """Reads inside one read-only transaction: REPEATABLE READ on
        PostgreSQL, a deferred transaction on SQLite (WAL: it reads the
        database as of its first read). Its first read is made here, so every
        write committed before the call is in it; writers carry on meanwhile."""
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

    def _begin_write(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            row = conn.execute(_BEGIN_WRITE_PG, {"channel": LOG_CHANNEL}).first()
        else:
            conn.execute(_BUMP)
            row = conn.execute(_GENERATION).first()
        if row is None:
            raise StorageCorruptError(
                f"{self.where} table store_generation",
                "its row is missing; restore it with "
                "INSERT INTO store_generation (id, n) VALUES (1, 0)",
            )

    def scan_log(
        self,
        log: Log,
        *,
        before: str | None = None,
        kind: str | None = None,
        take: int | None = None,
    ) -> Iterator[LogEntry]:
        return _scan(self._reader, log, before, kind, take, newest_first=True)

    def scan_log_forward(self, log: Log, *, after: str | None = None) -> Iterator[LogEntry]:
        return _scan(self._reader, log, after, None, None, newest_first=False)

    def scan_log_bulk(self, log: Log) -> Iterator[BulkRun]:
        placement = log_placement(log)
        txn = self._txn()
        if txn is not None:
            # Inside this thread's transaction: read what it has written.
            result = txn.conn.execute(placement.query(None).order_by(placement.key.asc()))
            yield from _bulk_records(placement, log.name, result)
            return
        try:
            with self._read_engine.connect() as conn:
                pages = _key_pages(conn, placement, _BULK_BATCH)
                for rows in _prefetched(pages):
                    yield from _bulk_records(placement, log.name, rows)
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from exc
        except self.engine.dialect.loaded_dbapi.Error as exc:
            # The driver's own cursor: its errors come unwrapped.
            raise self._unavailable(DBAPIError(None, None, exc)) from exc

    def log_version(self, log: Log) -> str:
        # The newest key: one probe of the log's index.
        placement = log_placement(log)
        query = _NEWEST_KEY.get((log, log.sql))
        if query is None:
            query = _NEWEST_KEY[(log, log.sql)] = placement.query(None).with_only_columns(
                func.max(placement.key)
            )
        with self._reader() as conn:
            return str(conn.execute(query).scalar())

    def probe(self, *, write: bool = True) -> list[str]:
        # Nothing is written either way (``write`` matters to the JSON backend).
        try:
            problem = self.schema_problem()
        except StorageUnavailableError as exc:
            return [str(exc)]
        if problem is not None:
            return [f"{self.where}: {problem}"]
        problems: list[str] = []
        try:
            for doc in self.schema.documents:
                try:
                    self.read_document(doc)  # it parses, or it is named
                except StorageCorruptError as exc:
                    problems.append(str(exc))
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
        return _scan(self._held, log, before, kind, take, newest_first=True)

    def scan_log_forward(self, log: Log, *, after: str | None = None) -> Iterator[LogEntry]:
        return _scan(self._held, log, after, None, None, newest_first=False)

    def _held(self) -> AbstractContextManager[Connection]:
        return contextlib.nullcontext(self._conn)

    def scan_log_bulk(self, log: Log) -> Iterator[BulkRun]:
        placement = log_placement(log)
        for rows in _key_pages(self._conn, placement, _BULK_BATCH):
            yield from _bulk_records(placement, log.name, rows)


def _scan(
    connect: Callable[[], AbstractContextManager[Connection]],
    log: Log,
    cursor: str | None,
    kind: str | None,
    take: int | None,
    *,
    newest_first: bool,
) -> Iterator[LogEntry]:
    """Keyset pages over the placement's key in growing batches, each read on
    a connection from ``connect``. ``cursor`` is a boundary: rows below it
    newest first, rows at or above it oldest first."""
    placement = log_placement(log)
    bound = None if cursor is None else placement.parse_cursor(cursor)
    batch = _FIRST_BATCH if take is None else max(1, min(take, _MAX_BATCH))
    while True:
        page = _page(placement, log, kind, bound is not None, newest_first, batch)
        with connect() as conn:
            rows = conn.execute(page, {"bound": bound}).all()
        for row in rows:
            # Backward: the boundary before the row is its key; forward: after it.
            after = row[0] if newest_first else placement.after(row[0])
            yield LogEntry(str(after), placement.record(log.name, row))
        if len(rows) < batch:
            return
        bound = rows[-1][0] if newest_first else placement.after(rows[-1][0])
        batch = min(batch * 4, _MAX_BATCH)


def _key_pages(conn: Connection, placement: SqlLog, size: int) -> Iterator[list[Any]]:
    """Keyset pages of ``size`` rows in key order, fetched by the driver's own
    cursor: SQLAlchemy's per-row work would cost more than the walk itself."""
    key = placement.key
    bound: Any | None = None
    while True:
        query = _from(placement, bound)
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


def _from(placement: SqlLog, start: Any | None) -> Select[Any]:
    """The placement's rows with keys from ``start`` on (all of them for None)."""
    query = placement.query(None)
    return query if start is None else query.where(placement.key >= start)


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


class _SqlTxn:
    """One write transaction: plain reads and writes on its connection (the
    writer lock is held from its first statement to commit)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def read_document(self, doc: Document) -> Any | None:
        return document_placement(doc).read(self.conn)

    def write_document(self, doc: Document, value: Any) -> None:
        document_placement(doc).write(self.conn, value)

    def append_log(self, log: Log, record: dict[str, Any]) -> None:
        log_placement(log).insert(self.conn, [record])

    def append_many(self, log: Log, records: Iterable[dict[str, Any]]) -> int:
        placement = log_placement(log)
        records_iter = iter(records)
        count = 0
        for batch in iter(lambda: list(islice(records_iter, 1000)), []):
            placement.insert(self.conn, batch)
            count += len(batch)
        return count

    def rewrite_log(self, log: Log, keep: Callable[[dict[str, Any]], bool]) -> int:
        from sqlalchemy import Column, delete

        placement = log_placement(log)
        key = placement.key
        dropped: list[Any] = []
        bound: Any | None = None
        while True:
            page = _from(placement, bound)
            rows = self.conn.execute(page.order_by(key.asc()).limit(_MAX_BATCH)).all()
            dropped += [row[0] for row in rows if not keep(placement.record(log.name, row))]
            if len(rows) < _MAX_BATCH:
                break
            bound = placement.after(rows[-1][0])
        if not dropped:
            return 0
        rows_of = cast(Column[Any], key).table
        for at in range(0, len(dropped), _MAX_BATCH):
            self.conn.execute(delete(rows_of).where(key.in_(dropped[at : at + _MAX_BATCH])))
        return len(dropped)

    def last_log_record(self, log: Log) -> dict[str, Any] | None:
        last = _last_row(log_placement(log), log.name, self.conn)
        return None if last is None else last[1]
