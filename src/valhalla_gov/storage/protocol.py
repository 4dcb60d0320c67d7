"""The storage protocol every backend implements.

Two kinds of data: *documents* (small JSON values replaced whole) and *logs*
(append-only records read newest first with a cursor). Every
read-modify-write happens inside :meth:`Store.transaction`, which is
exclusive across threads and processes, so services keep their invariants
with plain reads and writes inside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

# Names shared by the services and every backend.
DOC_GO_SESSION = "go_session"
DOC_CONE_STATE = "cone_state"
DOC_GO_PROGRESS = "go_progress"
DOC_THRESHOLDS = "thresholds"
DOC_TOKENS = "tokens"
DOCUMENTS = (DOC_GO_SESSION, DOC_CONE_STATE, DOC_GO_PROGRESS, DOC_THRESHOLDS, DOC_TOKENS)

LOG_AUDIT = "audit"
LOG_SESSIONS = "go_sessions"
LOG_DECISIONS = "cone_decisions"
LOG_SERVER_ERRORS = "server_errors"
LOGS = (LOG_AUDIT, LOG_SESSIONS, LOG_DECISIONS, LOG_SERVER_ERRORS)
# The record field a log can be filtered on with ``scan_log(kind=...)``.
KIND_FIELD = {LOG_AUDIT: "event"}


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


class StoreTxn(Protocol):
    """What a service may do while it holds the store's exclusive lock."""

    def read_document(self, name: str) -> Any | None: ...

    def write_document(self, name: str, doc: Any) -> None: ...

    def append_log(self, log: str, record: dict[str, Any]) -> None: ...

    def append_many(self, log: str, records: Iterable[dict[str, Any]]) -> int:
        """Bulk append (imports): durable once, at the end; returns the count."""
        ...

    def last_log_record(self, log: str) -> dict[str, Any] | None: ...


class Store(Protocol):
    """A storage backend: JSON files, or SQL (SQLite / PostgreSQL)."""

    # True when reads go over the network (SQL): async code must move them
    # off the event loop. Local JSON reads are cheap enough to do inline.
    blocking: bool

    def describe(self) -> str: ...

    def read_document(self, name: str) -> Any | None: ...

    def read_cached(self, name: str, parse: Callable[[Any | None], T]) -> T:
        """``parse(read_document(name))``, reusing the last result while the
        stored document is unchanged. The result is shared: treat it as
        read-only."""
        ...

    def transaction(self) -> AbstractContextManager[StoreTxn]: ...

    def scan_log(
        self, log: str, *, before: str | None = None, kind: str | None = None
    ) -> Iterator[LogEntry]:
        """Records newest first, starting just older than cursor ``before``;
        with ``kind``, only records whose ``KIND_FIELD`` equals it."""
        ...

    def scan_log_forward(self, log: str, *, after: str | None = None) -> Iterator[LogEntry]:
        """Records oldest first, starting just newer than cursor ``after``."""
        ...

    def log_version(self, log: str) -> str:
        """A cheap token that changes whenever ``log`` gains a record (from any
        process or replica): what live readers poll before scanning."""
        ...

    def probe(self) -> list[str]:
        """Problems that make the store unusable now (empty when healthy)."""
        ...
