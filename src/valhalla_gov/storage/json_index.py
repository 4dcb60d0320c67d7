"""A derived index of a JSON-Lines log by its kind field, kept beside the log.

Filtering a log on its ``kind_field`` (``scan_log(kind=...)``) would read the
whole log for a rare or absent kind. This index keeps, per kind, the offsets
of its lines in log order, so a filtered page reads only the lines it returns.

On disk it is ``.<log file>.kinds`` in the data dir: a fixed header, then one
24-byte entry per log line, appended by the writer inside the data-dir lock
right after the line is durable: the line's start and end offsets, a 4-byte
hash of its kind (0 for a line without one) and a CRC-32 of the entry. The file is derived from
the log and never trusted: it is written without fsync, and a reader checks
it against the log (entries in order, inside the log, the newest indexed line
unchanged), indexes whatever it lacks from the log itself (a gap, or lines
appended since), and rewrites it when it had to do much of that. Every line
a filtered read returns is read from the log and its kind compared, so a
stale entry is seen and the index rebuilt. A missing, torn, stale or corrupt
index costs a scan of the log, never an error of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import operator
import os
import struct
import threading
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from . import json_store
from .errors import StorageError

log = logging.getLogger(__name__)

HEADER = b"valhalla kind index v1\n\0"  # 24 bytes: entries stay aligned
# start, end, kind hash, and a running CRC-32 of the file up to this field:
# one CRC over the whole file proves every entry intact (in C, no loop per
# entry), and a damaged entry is seen as damaged, never read as another kind.
_ENTRY = struct.Struct("<QQII")
_BODY = struct.Struct("<QQI")
_SIZE = _ENTRY.size
_HEADER_CRC = zlib.crc32(HEADER)
# A reader that indexed more than this many log bytes itself rewrites the file.
REPAIR_BYTES = 256 * 1024


def sidecar_path(log_path: Path) -> Path:
    return log_path.with_name(f".{log_path.name}.kinds")


def kind_hash(value: Any) -> int:
    """The 4-byte key of a kind value; 0 for no kind. Two kinds may share a
    key: every line a filtered read finds is checked against its kind."""
    if not isinstance(value, str):
        return 0
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=4).digest()
    return int.from_bytes(digest, "little") or 1


def entries_bytes(entries: Iterable[tuple[int, int, int]], running: int) -> tuple[bytes, int]:
    """Entries as stored after a file whose CRC so far is ``running``; returns
    them and the CRC of the file with them."""
    out = bytearray()
    crc32, pack = zlib.crc32, _BODY.pack
    for entry in entries:
        body = pack(*entry)
        running = crc32(body, running)
        check = running.to_bytes(4, "little")
        running = crc32(check, running)
        out += body
        out += check
    return bytes(out), running


def append_entries(path: Path, entries: list[tuple[int, int, int]]) -> int | None:
    """Append entries for lines just made durable (inside the data-dir lock).

    A plain write, no fsync: the file is derived. Returns the file's size
    before (for a rollback to cut back to), or None when nothing was written.
    Never raises: a failure leaves the index behind, which readers repair.
    """
    try:
        # Never through a link planted in the data dir.
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        log.debug("%s: not updated (%s)", path, exc)
        return None
    try:
        size = os.fstat(fd).st_size
        extra = (size - len(HEADER)) % _SIZE if size >= len(HEADER) else size
        if extra:
            # An entry torn by a crash or a full disk: cut it, keep alignment.
            size -= extra
            os.ftruncate(fd, size)
        prefix = b""
        if size == 0:
            prefix, running = HEADER, _HEADER_CRC
        elif size == len(HEADER):
            running = _HEADER_CRC
        else:
            # The CRC of the file so far: from the last entry's own field.
            last = os.pread(fd, 4, size - 4)
            running = zlib.crc32(last, int.from_bytes(last, "little"))
        payload, _ = entries_bytes(entries, running)
        os.write(fd, prefix + payload)
        return size
    except OSError as exc:
        log.debug("%s: not updated (%s)", path, exc)
        return None
    finally:
        os.close(fd)


def cut_back(path: Path, size: int) -> None:
    """Take back entries a rolled-back transaction appended (best effort)."""
    with contextlib.suppress(OSError):
        os.truncate(path, size)


class _Stale(Exception):
    """What was indexed no longer matches the log: start over."""


class _Unparsed(Exception):
    """A log line does not parse: the index cannot be built now."""


@dataclass
class _State:
    log_ino: int = -1
    log_token: tuple[int, int, int] = (-1, -1, -1)
    covered: int = 0  # every complete line before this offset is indexed
    last_crc: int = 0  # crc32 of the newest indexed line's bytes
    side_ino: int = -1
    side_read: int = 0  # sidecar bytes taken in
    side_crc: int = _HEADER_CRC  # CRC of the sidecar up to side_read
    starts: array[int] = field(default_factory=lambda: array("Q"))
    ends: array[int] = field(default_factory=lambda: array("Q"))
    kinds: bytearray = field(default_factory=bytearray)  # 4 bytes per entry
    from_log: int = 0  # log bytes indexed by this reader (not from the sidecar)
    side_bad: bool = False


class KindIndex:
    """The in-memory view of one log's kind index, refreshed before each use."""

    def __init__(self, log_path: Path, kind_field: str, lock: Callable[[], Any]) -> None:
        self.log_path = log_path
        self.path = sidecar_path(log_path)
        self.field = kind_field
        self._lock = lock  # the data-dir lock, to rewrite the file
        self._mutex = threading.Lock()
        self._state = _State()

    # -- queries -----------------------------------------------------------
    def offsets(self, kind: str, before: int | None) -> Iterator[tuple[int, int]] | None:
        """``(start, end)`` of every indexed line whose kind may be ``kind``,
        newest first, before offset ``before``; None when the log cannot be
        indexed now (a line that does not parse: the caller scans as before)."""
        with self._mutex:
            try:
                try:
                    state = self._refresh()
                except _Stale:
                    self._state = _State()
                    state = self._refresh()
            except (_Stale, _Unparsed):
                self._state = _State()
                return None
            stop = len(state.starts) if before is None else bisect_left(state.starts, before)
            return _newest_first(state, kind_hash(kind).to_bytes(4, "little"), stop)

    def forget(self) -> None:
        """Drop what is known (a hit did not match its line)."""
        with self._mutex:
            self._state = _State()

    # -- keeping up with the log --------------------------------------------
    def _refresh(self) -> _State:
        state = self._state
        try:
            st = os.stat(self.log_path)
        except FileNotFoundError:
            self._state = _State()
            return self._state
        if st.st_size == 0:
            self._state = _State(log_ino=st.st_ino)
            return self._state
        token = (st.st_ino, st.st_size, st.st_mtime_ns)
        if token == state.log_token:
            return state
        if st.st_ino != state.log_ino or st.st_size < state.covered or not self._tail_same(state):
            state = self._state = _State(log_ino=st.st_ino)
        if not state.side_bad:
            self._read_sidecar(state, st.st_size)
        self._index_log(state, state.covered, st.st_size)
        state.log_token = token
        # A missing file is left to the next append (with a small log) or
        # written now (when reading the log took long enough to be worth it).
        if state.from_log > REPAIR_BYTES or (state.side_bad and self.path.exists()):
            self._rewrite(state)
        return state

    def _tail_same(self, state: _State) -> bool:
        if not state.starts:
            return True
        start, end = state.starts[-1], state.ends[-1]
        return zlib.crc32(_pread(self.log_path, start, end - start)) == state.last_crc

    def _read_sidecar(self, state: _State, log_size: int) -> None:
        """Take in the entries appended since the last look, if they hold."""
        data = self._sidecar_bytes(state)
        if data is None:
            state.side_bad = True
            return
        data = data[: len(data) - len(data) % _SIZE]  # a torn entry: not yet
        if not data:
            return
        if zlib.crc32(data[:-4], state.side_crc) != int.from_bytes(data[-4:], "little"):
            state.side_bad = True  # some entry is damaged: rebuilt from the log
            return
        words = memoryview(data).cast("Q")
        starts, ends = array("Q", words[0::3]), array("Q", words[1::3])
        kinds = bytearray(memoryview(data).cast("I")[4::6])
        # Every entry inside the log, after what is known, in order; a gap
        # between two entries only holds blank lines.
        if (
            starts[0] < state.covered
            or ends[-1] > log_size
            or not all(map(operator.lt, starts, ends))
            or not all(map(operator.le, ends[:-1], starts[1:]))
        ):
            state.side_bad = True
            return
        gaps = [(state.covered, starts[0])] if starts[0] > state.covered else []
        gaps += [
            (ends[i], starts[i + 1])
            for i in itertools.compress(
                range(len(ends) - 1), map(operator.ne, ends[:-1], starts[1:])
            )
        ]
        if any(_pread(self.log_path, a, b - a).strip() for a, b in gaps):
            state.side_bad = True  # lines the file lacks: rebuilt from the log
            return
        state.starts += starts
        state.ends += ends
        state.kinds += kinds
        state.covered = ends[-1]
        state.side_read += len(data)
        state.side_crc = zlib.crc32(data[-4:], int.from_bytes(data[-4:], "little"))
        self._remember_tail(state)

    def _sidecar_bytes(self, state: _State) -> bytes | None:
        """The file's entries not taken in yet (None: missing or not an index)."""
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                if st.st_ino != state.side_ino or st.st_size < state.side_read:
                    if state.side_ino != -1 or state.covered:
                        raise _Stale  # replaced by a rewrite, or cut: read it anew
                    state.side_ino, state.side_read = st.st_ino, 0
                if state.side_read == 0:
                    if fh.read(len(HEADER)) != HEADER:
                        return None
                    state.side_read = len(HEADER)
                fh.seek(state.side_read)
                return fh.read()
        except OSError:
            return None

    def _index_log(self, state: _State, start: int, stop: int) -> None:
        """Index the complete lines in ``[start, stop)`` from the log itself."""
        if start >= stop:
            return
        if not json_store.is_line_start(self.log_path, start):
            raise _Stale
        field_name = self.field
        added = done = False
        block = max(64 * 1024, min(stop - start, 4 * 1024 * 1024))
        starts, ends, kinds = state.starts, state.ends, state.kinds
        memo: dict[str, bytes] = {}
        for block_start, lines in json_store.iter_line_blocks(
            self.log_path, start, on_unterminated=_ignore, block=block
        ):
            offset = block_start
            for line in lines:
                end = offset + len(line) + 1
                if end > stop:
                    done = True
                    break
                if line.strip():
                    try:
                        record = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        try:
                            record = json_store.parse_json_bytes(self.log_path, line)
                        except StorageError as exc:
                            raise _Unparsed from exc
                    value = record.get(field_name) if isinstance(record, dict) else None
                    key = memo.get(value) if type(value) is str else None
                    if key is None:
                        key = kind_hash(value).to_bytes(4, "little")
                        if type(value) is str:
                            memo[value] = key  # a log holds few kinds
                    starts.append(offset)
                    ends.append(end)
                    kinds += key
                    added = True
                offset = end
            state.covered = offset
            if done or offset >= stop:
                break
        state.from_log += state.covered - start
        if added:
            self._remember_tail(state)

    def _remember_tail(self, state: _State) -> None:
        start, end = state.starts[-1], state.ends[-1]
        state.last_crc = zlib.crc32(_pread(self.log_path, start, end - start))

    def _rewrite(self, state: _State) -> None:
        """Write the whole index anew, under the data-dir lock (no writer
        appends meanwhile); no fsync: it is derived."""
        try:
            with self._lock():
                self._index_log(state, state.covered, os.stat(self.log_path).st_size)
                kinds = memoryview(bytes(state.kinds)).cast("I")
                payload, running = entries_bytes(
                    zip(state.starts, state.ends, kinds, strict=True), _HEADER_CRC
                )
                tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)  # a left-over (or planted link) is removed, not followed
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with open(fd, "wb") as out:
                    out.write(HEADER + payload)
                os.replace(tmp, self.path)
                st = os.stat(self.path)
                state.side_ino, state.side_read, state.side_crc = st.st_ino, st.st_size, running
                state.side_bad, state.from_log = False, 0
        except (OSError, StorageError) as exc:
            # A read-only data dir (no lock, no file): served from memory.
            log.debug("%s: not rewritten (%s)", self.path, exc)


def _newest_first(state: _State, needle: bytes, stop: int) -> Iterator[tuple[int, int]]:
    """Entries of kind ``needle`` below entry ``stop``, newest first: a
    backward byte search over the kinds (in C), keeping aligned hits."""
    # The arrays only grow at their end: the entries below ``stop`` stay put.
    kinds, starts, ends = state.kinds, state.starts, state.ends
    limit = 4 * stop
    while True:
        at = kinds.rfind(needle, 0, limit)
        if at < 0:
            return
        if at % 4:
            limit = at + 3  # straddles two entries: look before it
            continue
        number = at // 4
        yield starts[number], ends[number]
        limit = at


def _ignore(_offset: int) -> None:
    """An unfinished last line is not indexed (nor returned by scans)."""


def _pread(path: Path, start: int, length: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise _Stale from exc
    try:
        return os.pread(fd, length, start)
    finally:
        os.close(fd)


def read_line(path: Path, start: int, end: int) -> bytes | None:
    """The line at ``[start, end)`` without its newline, or None when the
    bytes there are not one whole line (the index is stale)."""
    lead = 1 if start else 0
    data = _pread(path, start - lead, end - start + lead)
    if len(data) != end - start + lead or not data.endswith(b"\n") or b"\n" in data[lead:-1]:
        return None
    if lead and data[:1] != b"\n":
        return None
    return data[lead:-1]
