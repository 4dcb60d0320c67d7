"""The embedded backend: JSON documents and JSON-Lines logs in one data dir."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import orjson

from . import encoding, json_index, json_store
from .errors import (
    InvalidCursorError,
    StorageCorruptError,
    StorageError,
    StorageUnavailableError,
)
from .protocol import BulkRun, Document, Log, LogEntry, Schema, T, parse_int_cursor, unwrap, wrap

log = logging.getLogger(__name__)

LOCK_FILE = ".valhalla.lock"
# scan_log_bulk parses this many lines at a time: few enough that they stay in
# the CPU's cache until the caller has used them.
_PARSE_RUN = 256
# A snapshot copies logs in blocks of this size.
_COPY_BLOCK = 4 * 1024 * 1024


class JsonStore:
    """Each document in its own JSON file and each log as JSON Lines, in ``data_dir``."""

    def __init__(self, data_dir: Path, schema: Schema, *, create: bool = True) -> None:
        """``create=False`` refuses a missing data dir instead of making one."""
        self.data_dir = Path(data_dir)
        self.schema = schema
        if not create and not self.data_dir.is_dir():
            raise StorageUnavailableError(self.data_dir, "no such data dir")
        json_store.ensure_private_dir(self.data_dir)
        self._lock = json_store.DataDirLock(self.data_dir / LOCK_FILE)
        self._parsed: dict[tuple[str, object], tuple[bytes | None, Any]] = {}
        self._held = threading.local()
        self._indexes: dict[str, json_index.KindIndex] = {}

    def describe(self) -> str:
        return f"json:{self.data_dir.resolve()}"

    def doc_path(self, doc: Document) -> Path:
        return self.data_dir / doc.file

    def log_path(self, log: Log) -> Path:
        return self.data_dir / log.file

    # -- documents -------------------------------------------------------
    def _doc_bytes(self, path: Path) -> bytes | None:
        known: _Known | None = getattr(self._held, "known", None)
        if known is not None:
            # This thread holds the lock (inside a transaction): what it last
            # read or wrote is still what is stored.
            return known.doc_bytes(path)
        seen: dict[Path, bytes | None] | None = getattr(self._held, "seen", None)
        if seen is None:
            return json_store.read_bytes(path)
        # Inside reading(): each file is read once for the whole scope.
        if path not in seen:
            seen[path] = json_store.read_bytes(path)
        return seen[path]

    def read_document(self, doc: Document) -> Any | None:
        path = self.doc_path(doc)
        raw = self._doc_bytes(path)
        stored = None if raw is None else json_store.parse_json_bytes(path, raw)
        return unwrap(doc, str(path), stored)

    def read_cached(self, doc: Document, parse: Callable[[Any | None], T]) -> T:
        # Keyed on the file's bytes, not its stat: a rewrite within one clock
        # tick can keep size and mtime, and a recycled inode number the inode.
        path = self.doc_path(doc)
        raw = self._doc_bytes(path)
        key = (doc.name, parse)
        hit = self._parsed.get(key)
        if hit is not None and hit[0] == raw:
            return hit[1]  # type: ignore[no-any-return]
        stored = None if raw is None else json_store.parse_json_bytes(path, raw)
        value = parse(unwrap(doc, str(path), stored))
        self._parsed[key] = (raw, value)
        return value

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        # The scope's reads share what each document file held when first
        # read: one consistent view of the files for the whole scope.
        if getattr(self._held, "seen", None) is not None:
            yield
            return
        self._held.seen = {}
        try:
            yield
        finally:
            self._held.seen = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_JsonTxn]:
        with self._lock.hold():
            # What the lock holder has read or written stays known until it
            # releases the lock: nobody else writes meanwhile. Nested transactions (a service
            # calling another) share it, so neither sees the other's past.
            outer: _Known | None = getattr(self._held, "known", None)
            known = outer if outer is not None else _Known()
            self._held.known = known
            txn = _JsonTxn(self, known)
            try:
                yield txn
            except BaseException:
                # All or nothing, like a database: a later write failing (disk
                # full) takes back the earlier ones of the same operation.
                txn.rollback()
                raise
            finally:
                self._held.known = outer
                seen: dict[Path, bytes | None] | None = getattr(self._held, "seen", None)
                if seen:
                    seen.clear()  # a reading scope around a write reads afresh after it

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[JsonStore]:
        """A private copy of every declared file as it was at one moment,
        read through a store of its own; removed afterwards. Under the
        data-dir lock only the documents are read and each log is hard-linked
        with the length of its whole lines, so writers wait for moments: a
        log only grows past that length (a rewrite replaces the file, which
        the link keeps), and the copy up to it is made after the lock is
        released. It lives in the data dir (one file system, as private)."""
        try:
            where = Path(tempfile.mkdtemp(prefix=".snapshot-", dir=self.data_dir))
        except OSError as exc:
            raise StorageUnavailableError(self.data_dir, f"cannot make a snapshot: {exc}") from exc
        try:
            links: list[tuple[Path, int, Path]] = []
            with self._lock.hold():
                for doc in self.schema.documents:
                    raw = json_store.read_bytes(self.doc_path(doc))
                    if raw is not None:
                        _write_new(where / doc.file, [raw])
                for log in self.schema.logs:
                    link = where / f".{log.file}.link"
                    end = _link_whole_lines(self.log_path(log), link)
                    if end is not None:
                        links.append((link, end, where / log.file))
            for link, end, target in links:
                _write_new(target, _prefix(link, end))
                link.unlink()
            yield JsonStore(where, self.schema)
        finally:
            shutil.rmtree(where, ignore_errors=True)

    # -- logs ------------------------------------------------------------
    def _parse_line(self, path: Path, offset: int, line: bytes) -> dict[str, Any]:
        try:
            value = encoding.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StorageCorruptError(
                path, f"line at byte {offset} does not parse as JSON ({exc}); left untouched"
            ) from exc
        if not isinstance(value, dict):
            raise StorageCorruptError(path, f"line at byte {offset} is not a JSON object")
        return value

    def _cursor_offset(self, path: Path, cursor: str) -> int:
        offset = parse_int_cursor(cursor)
        if not json_store.is_line_start(path, offset):
            raise _not_a_boundary(cursor)
        return offset

    def kind_index(self, log: Log) -> json_index.KindIndex | None:
        """The log's index by its kind field (None for a log without one)."""
        if log.kind_field is None:
            return None
        index = self._indexes.get(log.name)
        if index is None:
            index = self._indexes.setdefault(
                log.name, json_index.KindIndex(self.log_path(log), log.kind_field, self._lock.hold)
            )
        return index

    def scan_log(
        self,
        log: Log,
        *,
        before: str | None = None,
        kind: str | None = None,
        take: int | None = None,  # the backward read is lazy already
    ) -> Iterator[LogEntry]:
        path = self.log_path(log)
        end = None if before is None else self._cursor_offset(path, before)
        index = None if kind is None else self.kind_index(log)
        if index is not None and kind is not None and log.kind_field is not None:
            hits = index.offsets(kind, end)
            if hits is not None:
                # Only the lines the index names are read; each is checked.
                for start, stop in hits:
                    line = json_index.read_line(path, start, stop)
                    record = None if line is None else self._parse_line(path, start, line)
                    if record is not None and record.get(log.kind_field) == kind:
                        end = start
                        yield LogEntry(str(start), record)
                        continue
                    if record is not None and json_index.kind_hash(
                        record.get(log.kind_field)
                    ) == json_index.kind_hash(kind):
                        continue  # two kinds with one hash: not this one
                    # The index is stale: drop it, and scan the rest as before.
                    logging.getLogger(__name__).warning(
                        "%s: its kind index was stale; rebuilding it", path
                    )
                    index.forget()
                    break
                else:
                    return
        kind_field = log.kind_field if kind is not None else None
        # A last line read without its newline was never acknowledged: the
        # newline is part of the one write an acknowledged append made durable.
        torn = None if end is not None else (lambda offset: log_torn(path, offset))
        for offset, line in json_store.iter_lines_backward(path, end, on_unterminated=torn):
            record = self._parse_line(path, offset, line)
            if kind_field is not None and record.get(kind_field) != kind:
                continue
            yield LogEntry(str(offset), record)

    def scan_log_forward(self, log: Log, *, after: str | None = None) -> Iterator[LogEntry]:
        path = self.log_path(log)
        start = 0 if after is None else parse_int_cursor(after)
        # Only the last line can be torn; it is skipped whether or not its
        # bytes happen to parse, as scan_log does.
        torn = lambda offset: log_torn(path, offset)  # noqa: E731
        # The boundary is checked by the same read as the lines (one open).
        lines = json_store.iter_lines_forward(path, start, on_unterminated=torn, line_start=True)
        try:
            for offset, line in lines:
                yield self._forward_entry(path, offset, line)
        except json_store.NotALineStart:
            raise _not_a_boundary(after or "") from None

    def scan_log_bulk(self, log: Log) -> Iterator[BulkRun]:
        path = self.log_path(log)
        torn = lambda offset: log_torn(path, offset)  # noqa: E731
        fast = orjson.loads
        for first, block in json_store.iter_line_blocks(path, 0, on_unterminated=torn):
            for at in range(0, len(block), _PARSE_RUN):
                lines = cast(list[bytes | str], block[at : at + _PARSE_RUN])
                # A run of well-formed lines is parsed without a Python step
                # per line; one that is not goes line by line, naming the bad one.
                try:
                    records = list(map(fast, lines))
                except orjson.JSONDecodeError:
                    pass
                else:
                    if set(map(type, records)) <= {dict}:
                        yield lines, records
                        continue
                yield from self._parsed_one_by_one(path, first, block, at)

    def _parsed_one_by_one(
        self, path: Path, first: int, block: list[bytes], at: int
    ) -> Iterator[BulkRun]:
        """The run of ``block`` at ``at``, parsed line by line: blank lines
        skipped, what orjson refuses read by the standard library, a line
        that does not parse raised (naming its offset) after the run before it."""
        texts: list[bytes | str] = []
        parsed: list[dict[str, Any]] = []
        for line in block[at : at + _PARSE_RUN]:
            if not line.strip():
                continue  # a blank line, skipped as every scan does
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = None  # NaN, say: the standard library may take it
            try:
                if type(record) is not dict:
                    record = self._parse_line(path, _offset_of(first, block, line), line)
            except StorageCorruptError:
                if texts:  # every record before the bad one first
                    yield texts, parsed
                raise
            texts.append(line)
            parsed.append(record)
        if texts:
            yield texts, parsed

    def _forward_entry(self, path: Path, offset: int, line: bytes) -> LogEntry:
        return LogEntry(str(offset + len(line) + 1), self._parse_line(path, offset, line))

    def log_version(self, log: Log) -> str:
        # One stat: an append grows the file; a rollback or repair that cuts
        # it changes the size or mtime too.
        try:
            st = os.stat(self.log_path(log))
        except FileNotFoundError:
            return "absent"
        except OSError as exc:
            raise StorageUnavailableError(self.log_path(log), f"cannot stat: {exc}") from exc
        return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"

    def probe(self, *, write: bool = True) -> list[str]:
        problems: list[str] = []
        for doc in self.schema.documents:
            try:
                if write:
                    self.read_document(doc)
                else:
                    # Parsed once per content: the bytes are the cache key.
                    self.read_cached(doc, _parses)
            except StorageError as exc:
                problems.append(str(exc))
        problem = self._write_probe() if write else self._writable_problem()
        if problem is not None:
            problems.append(f"{self.data_dir}: data dir is not writable ({problem})")
        return problems

    def _write_probe(self) -> str | None:
        # Per thread: concurrent probes (parallel /readyz) must not unlink each other's file.
        probe = self.data_dir / f".probe.{os.getpid()}.{threading.get_ident()}"
        try:
            with contextlib.suppress(FileNotFoundError):
                probe.unlink()  # a left-over (or planted link) is removed, not followed
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, b"ok\n")
            finally:
                os.close(fd)
        except OSError as exc:
            return exc.strerror or str(exc)
        finally:
            with contextlib.suppress(OSError):  # also when the write failed (disk full)
                probe.unlink()
        return None

    def _writable_problem(self) -> str | None:
        """What would refuse a small new file in the data dir, asked without
        writing one: permission or a read-only mount (``access`` answers
        EROFS for those, root included), no free block or no free inode."""
        try:
            if not os.access(self.data_dir, os.W_OK | os.X_OK):
                return os.strerror(errno.EROFS if _read_only(self.data_dir) else errno.EACCES)
            fs = os.statvfs(self.data_dir)
        except OSError as exc:
            return exc.strerror or str(exc)
        if fs.f_bavail == 0 or (fs.f_files and fs.f_favail == 0):
            return os.strerror(errno.ENOSPC)
        return None


def _write_new(target: Path, chunks: Iterable[bytes]) -> None:
    """A new private file holding ``chunks`` (a snapshot's: no fsync)."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    except OSError as exc:
        raise StorageUnavailableError(target, f"cannot write a snapshot: {exc}") from exc


def _link_whole_lines(source: Path, link: Path) -> int | None:
    """Hard-link ``source`` at ``link``; return the length of its whole lines
    (a torn last line is not a record), None for a missing log."""
    try:
        os.link(source, link)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageUnavailableError(source, f"cannot link for a snapshot: {exc}") from exc
    try:
        with open(link, "rb") as fh:
            end = os.fstat(fh.fileno()).st_size
            while end > 0:  # back to just past the last newline
                start = max(0, end - _COPY_BLOCK)
                newline = os.pread(fh.fileno(), end - start, start).rfind(b"\n")
                if newline >= 0:
                    return start + newline + 1
                end = start
    except OSError as exc:
        raise StorageUnavailableError(source, f"cannot read for a snapshot: {exc}") from exc
    return 0


def _prefix(path: Path, end: int) -> Iterator[bytes]:
    """The first ``end`` bytes of ``path``, in blocks."""
    with open(path, "rb") as fh:
        done = 0
        while done < end:
            chunk = os.pread(fh.fileno(), min(_COPY_BLOCK, end - done), done)
            if not chunk:
                return
            yield chunk
            done += len(chunk)


def _offset_of(start: int, lines: list[bytes], line: bytes) -> int:
    """The byte offset of ``line`` in a block of ``lines`` read from ``start``
    (its first occurrence: an equal line before it would have parsed too)."""
    index = lines.index(line)
    return start + sum(len(before) + 1 for before in lines[:index])


def _parses(_value: Any | None) -> None:
    """A parse step for :meth:`JsonStore.read_cached` that keeps nothing."""


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _not_a_boundary(cursor: str) -> InvalidCursorError:
    # Not a boundary this log handed out: reading from it would split a line
    # and misreport a healthy file as corrupt.
    return InvalidCursorError(
        f"invalid cursor {cursor!r}: not a record boundary of this log; "
        "pass back a next_cursor value"
    )


def log_torn(path: Path, offset: int) -> None:
    log.warning(
        "%s: ignoring an incomplete last line at byte %d (a write that never finished)",
        path,
        offset,
    )


class _Known:
    """Documents as the lock holder last read or wrote them (the lock keeps them so)."""

    def __init__(self) -> None:
        self.docs: dict[Path, bytes | None] = {}  # a document's bytes (None: absent)

    def doc_bytes(self, path: Path) -> bytes | None:
        if path not in self.docs:
            self.docs[path] = json_store.read_bytes(path)
        return self.docs[path]

    def forget(self) -> None:
        self.docs.clear()


class _JsonTxn:
    """Operations under the data-dir lock; each write is durable on return,
    and remembered so that :meth:`rollback` can take it back.

    Each document is read at most once per lock hold: its bytes are kept
    from the first read (or this holder's own write) on, since no other
    writer can change them meanwhile; they are also what a rollback restores.
    """

    def __init__(self, store: JsonStore, known: _Known) -> None:
        self._store = store
        self._known = known
        # (path, old bytes or None) for documents, (path, old size) for logs.
        self._undo: list[tuple[Path, bytes | int | None]] = []
        self._index_undo: list[tuple[Path, int]] = []  # (kind index, old size)

    def read_document(self, doc: Document) -> Any | None:
        path = self._store.doc_path(doc)
        raw = self._known.doc_bytes(path)
        # Parsed afresh each time: the caller owns (and may change) what it gets.
        stored = None if raw is None else json_store.parse_json_bytes(path, raw)
        return unwrap(doc, str(path), stored)

    def write_document(self, doc: Document, value: Any) -> None:
        path = self._store.doc_path(doc)
        before = self._known.doc_bytes(path)
        payload = encoding.document_bytes(wrap(doc, value))
        self._known.docs.pop(path, None)  # unknown if the write fails half-way
        json_store.write_bytes_atomic(path, payload)
        self._known.docs[path] = payload
        self._undo.append((path, before))

    def append_log(self, log: Log, record: dict[str, Any]) -> None:
        path = self._store.log_path(log)
        self._set_aside_torn_tail(path)
        line = encoding.canonical_bytes(record) + b"\n"
        start = json_store.append_line(path, line)
        self._undo.append((path, start))
        if log.kind_field is not None:
            kind = json_index.kind_hash(record.get(log.kind_field))
            self._index(path, [(start, start + len(line), kind)])

    def append_many(self, log: Log, records: Iterable[dict[str, Any]]) -> int:
        path = self._store.log_path(log)
        self._set_aside_torn_tail(path)
        start = json_store.file_size(path)
        field = log.kind_field
        entries: list[tuple[int, int, int]] = []

        def lines() -> Iterator[bytes]:
            offset = start
            for record in records:
                line = encoding.canonical_bytes(record) + b"\n"
                if field is not None:
                    kind = json_index.kind_hash(record.get(field))
                    entries.append((offset, offset + len(line), kind))
                offset += len(line)
                yield line

        count = json_store.append_lines(path, lines())
        self._undo.append((path, start))
        if entries:
            self._index(path, entries)
        return count

    def _index(self, path: Path, entries: list[tuple[int, int, int]]) -> None:
        """Add the lines just made durable to the log's kind index: a plain
        write under the same lock, no fsync (readers check and repair it)."""
        sidecar = json_index.sidecar_path(path)
        before = json_index.append_entries(sidecar, entries)
        if before is not None:
            self._index_undo.append((sidecar, before))

    def rollback(self) -> None:
        """Undo this transaction's writes, newest first (log cuts free space
        before documents are restored). A crash mid-rollback is covered by
        the services' write order."""
        self._known.forget()  # files change under what was known
        for path, before in reversed(self._undo):
            try:
                if isinstance(before, int):
                    json_store.truncate_file(path, before)
                elif before is None:
                    json_store.remove_file(path)
                else:
                    json_store.write_bytes_atomic(path, before)
            except StorageError as exc:
                log.error("could not take back a write to %s: %s", path, exc)
        self._undo.clear()
        for sidecar, size in reversed(self._index_undo):
            json_index.cut_back(sidecar, size)
        self._index_undo.clear()

    def last_log_record(self, log: Log) -> dict[str, Any] | None:
        return next((e.record for e in self._store.scan_log(log)), None)

    def rewrite_log(self, log: Log, keep: Callable[[dict[str, Any]], bool]) -> int:
        path = self._store.log_path(log)
        self._set_aside_torn_tail(path)  # torn bytes kept beside it, never dropped
        before = json_store.read_bytes(path)
        if before is None:
            return 0
        kept = bytearray()
        dropped = 0
        offset = 0
        for line in before.split(b"\n"):
            if line.strip():
                if keep(self._store._parse_line(path, offset, line)):
                    kept += line + b"\n"  # the stored bytes, as they were
                else:
                    dropped += 1
            offset += len(line) + 1
        if not dropped:
            return 0
        json_store.write_bytes_atomic(path, bytes(kept))
        self._undo.append((path, before))
        if log.kind_field is not None:
            # Offsets moved: the index is rebuilt from the log when next read.
            json_store.remove_file(json_index.sidecar_path(path))
            index = self._store._indexes.get(log.name)
            if index is not None:
                index.forget()
        return dropped

    def _set_aside_torn_tail(self, path: Path) -> None:
        """Move an unfinished last line into a side file before appending.

        Appending after it would glue two records into one corrupt line; the
        torn bytes are kept (never dropped in silence) next to the log.
        """
        if json_store.ends_with_newline(path):
            return
        size = json_store.file_size(path)
        tail = json_store.last_line(path)
        if tail is None or tail[0] + len(tail[1]) != size:
            # Only blank bytes after the last newline: end the line, lose nothing.
            json_store.append_line(path, b"\n")
            return
        cut, torn = tail
        side = path.with_name(f"{path.name}.torn-{cut}")
        n = 1
        while side.exists():  # an earlier torn write at the same offset: keep both
            side = path.with_name(f"{path.name}.torn-{cut}.{n}")
            n += 1
        # Both raise StorageUnavailableError (disk full ...); the side copy is
        # durable before the log is cut, so the bytes always exist somewhere.
        json_store.write_new_file(side, torn)
        json_store.truncate_file(path, cut)
        log.warning("%s: moved an unfinished last line (%d bytes) to %s", path, len(torn), side)
