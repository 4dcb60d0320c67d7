"""The embedded backend: JSON documents and JSON-Lines logs in one data dir."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import json_store
from .errors import (
    InvalidCursorError,
    StorageCorruptError,
    StorageError,
    StorageUnavailableError,
)
from .protocol import (
    DOC_CONE_STATE,
    DOC_GO_PROGRESS,
    DOC_GO_SESSION,
    DOC_THRESHOLDS,
    LOG_AUDIT,
    LOG_DECISIONS,
    LOG_SERVER_ERRORS,
    LOG_SESSIONS,
    LogEntry,
)

log = logging.getLogger(__name__)

DOCUMENT_FILES = {
    DOC_GO_SESSION: "go_session.json",
    DOC_CONE_STATE: "cone_state.json",
    DOC_GO_PROGRESS: "go_progress.json",
    DOC_THRESHOLDS: "thresholds.json",
}
LOG_FILES = {
    LOG_AUDIT: "audit.log",
    LOG_SESSIONS: "go_session_history.jsonl",
    LOG_DECISIONS: "cone_decisions.jsonl",
    LOG_SERVER_ERRORS: "server_errors.jsonl",
}
LOCK_FILE = ".valhalla.lock"


def parse_cursor(cursor: str) -> int:
    if not cursor.isdigit():
        raise InvalidCursorError(f"invalid cursor {cursor!r}; pass back a next_cursor value")
    value = int(cursor)
    return value


class JsonStore:
    """Documents as ``<name>.json`` and logs as JSON Lines in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailableError(self.data_dir, f"cannot create data dir: {exc}") from exc
        self._lock = json_store.DataDirLock(self.data_dir / LOCK_FILE)

    def describe(self) -> str:
        return f"json:{self.data_dir.resolve()}"

    def doc_path(self, name: str) -> Path:
        return self.data_dir / DOCUMENT_FILES[name]

    def log_path(self, log_name: str) -> Path:
        return self.data_dir / LOG_FILES[log_name]

    # -- documents -------------------------------------------------------
    def read_document(self, name: str) -> Any | None:
        return json_store.read_json(self.doc_path(name))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_JsonTxn]:
        with self._lock.hold():
            yield _JsonTxn(self)

    # -- logs ------------------------------------------------------------
    def _parse_line(self, path: Path, offset: int, line: bytes) -> dict[str, Any]:
        try:
            value = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StorageCorruptError(
                path, f"line at byte {offset} does not parse as JSON ({exc}); left untouched"
            ) from exc
        if not isinstance(value, dict):
            raise StorageCorruptError(path, f"line at byte {offset} is not a JSON object")
        return value

    def _is_torn_tail(self, path: Path, offset: int, line: bytes) -> bool:
        # A line without its newline was never acknowledged: the newline is
        # part of the single write that an acknowledged append made durable.
        return offset + len(line) == json_store.file_size(
            path
        ) and not json_store.ends_with_newline(path)

    def scan_log(self, log: str, *, before: str | None = None) -> Iterator[LogEntry]:
        path = self.log_path(log)
        end = None if before is None else parse_cursor(before)
        first = True
        for offset, line in json_store.iter_lines_backward(path, end):
            if first and end is None:
                first = False
                if self._is_torn_tail(path, offset, line):
                    log_torn(path, offset)
                    continue
            yield LogEntry(str(offset), self._parse_line(path, offset, line))

    def scan_log_forward(self, log: str, *, after: str | None = None) -> Iterator[LogEntry]:
        path = self.log_path(log)
        start = 0 if after is None else parse_cursor(after)
        for offset, line in json_store.iter_lines_forward(path, start):
            next_offset = offset + len(line) + 1
            try:
                record = self._parse_line(path, offset, line)
            except StorageCorruptError:
                if self._is_torn_tail(path, offset, line):
                    log_torn(path, offset)
                    return
                raise
            yield LogEntry(str(next_offset), record)

    def probe(self) -> list[str]:
        problems: list[str] = []
        for name in DOCUMENT_FILES:
            try:
                self.read_document(name)
            except StorageError as exc:
                problems.append(str(exc))
        probe = self.data_dir / f".probe.{os.getpid()}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, b"ok\n")
            finally:
                os.close(fd)
            probe.unlink()
        except OSError as exc:
            problems.append(f"{self.data_dir}: data dir is not writable ({exc.strerror or exc})")
        return problems


def log_torn(path: Path, offset: int) -> None:
    log.warning(
        "%s: ignoring an incomplete last line at byte %d (a write that never finished)",
        path,
        offset,
    )


class _JsonTxn:
    """Operations under the data-dir lock; each write is durable on return."""

    def __init__(self, store: JsonStore) -> None:
        self._store = store

    def read_document(self, name: str) -> Any | None:
        return self._store.read_document(name)

    def write_document(self, name: str, doc: Any) -> None:
        json_store.write_json(self._store.doc_path(name), doc)

    def append_log(self, log: str, record: dict[str, Any]) -> None:
        path = self._store.log_path(log)
        self._set_aside_torn_tail(path)
        line = (json_store.canonical_json(record) + "\n").encode("utf-8")
        json_store.append_line(path, line)

    def last_log_record(self, log: str) -> dict[str, Any] | None:
        for entry in self._store.scan_log(log):
            return entry.record
        return None

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
        side.write_bytes(torn)
        json_store.fsync_dir(path.parent)
        with open(path, "r+b") as fh:
            fh.truncate(cut)
            os.fsync(fh.fileno())
        log.warning("%s: moved an unfinished last line (%d bytes) to %s", path, len(torn), side)
