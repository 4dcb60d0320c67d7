"""Audit rules: append to the hash chain, page through events, verify."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..errors import InvalidInputError
from ..storage.encoding import canonical_bytes, loads
from ..storage.errors import InvalidCursorError, StorageCorruptError
from ..storage.protocol import Store, StoreTxn
from ..timeutil import Clock, iso_z, parse_iso
from .models import AuditEvent, AuditHead, AuditPage, AuditVerifyResult
from .store import AUDIT_LOG

GENESIS = "0" * 64
MAX_PAGE = 500
# Health re-checks at most this many of the newest lines when a process first
# looks, so its cost stays flat however long the log grows.
HEALTH_WINDOW = 1000


def chain_hash(prev: str, body: dict[str, Any]) -> str:
    """SHA-256 over the previous hash, a newline and the record's canonical JSON."""
    digest = hashlib.sha256(prev.encode("ascii") + b"\n")
    digest.update(canonical_bytes(body))
    return digest.hexdigest()


def is_chained(record: dict[str, Any]) -> bool:
    return "hash" in record or "seq" in record or "prev" in record


def _body(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "hash"}


def log_event(
    txn: StoreTxn,
    *,
    event: str,
    payload: dict[str, Any],
    actor: str,
    clock: Clock,
) -> AuditEvent:
    """Append one event to the chain. Call inside the caller's transaction so
    the state change and its audit line are ordered under one lock."""
    last = txn.last_log_record(AUDIT_LOG)
    if last is not None and is_chained(last):
        prev = str(last.get("hash"))
        seq = int(last.get("seq") or 0) + 1
    else:
        prev, seq = GENESIS, 1
    # Never earlier than the event before it, whatever the clock (stepped
    # back, or another replica's running late): time order is seq order, so
    # the `since` filter may stop at the first older event.
    now = clock()
    before = None if last is None else _event_time(last)
    if before is not None and now < before:
        now = before
    body: dict[str, Any] = {
        "ts_utc": iso_z(now),
        "event": event,
        "payload": payload,
        "seq": seq,
        "actor": actor,
        "prev": prev,
    }
    record = {**body, "hash": chain_hash(prev, body)}
    txn.append_log(AUDIT_LOG, record)
    # Imported here: `valhalla audit verify` reads this module without the
    # metrics (importing prometheus_client is a third of its start-up).
    from ..observability.metrics import AUDIT_EVENTS

    AUDIT_EVENTS.labels(event=event).inc()
    return AuditEvent.model_validate(record)


def _event_time(record: dict[str, Any]) -> datetime | None:
    raw = record.get("ts_utc")
    if not isinstance(raw, str):
        return None
    try:
        return parse_iso(raw)
    except ValueError:
        return None


def _event(record: dict[str, Any], cursor: str) -> AuditEvent:
    try:
        return AuditEvent.model_validate(record)
    except ValidationError as exc:
        raise StorageCorruptError(
            "audit.log", f"the record at {cursor} is not an audit event: {exc}"
        ) from exc


def query_events(
    *,
    store: Store,
    event: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> AuditPage:
    """Events newest first. Stored times never decrease along the chain
    (:func:`log_event` clamps them), so the scan stops at the first event
    older than ``since``."""
    limit = max(1, min(limit, MAX_PAGE))
    items: list[AuditEvent] = []
    last_cursor: str | None = None
    # The backend filters on the event (an index on SQL).
    for entry in store.scan_log(AUDIT_LOG, before=cursor, kind=event):
        moment = _event_time(entry.record)
        if since is not None and moment is not None and moment < since:
            return AuditPage(items=items, next_cursor=None)
        if until is not None and moment is not None and moment > until:
            continue
        if len(items) == limit:
            return AuditPage(items=items, next_cursor=last_cursor)
        items.append(_event(entry.record, entry.cursor))
        last_cursor = entry.cursor
    return AuditPage(items=items, next_cursor=None)


@dataclass(slots=True)
class _ChainState:
    prev: str = GENESIS
    seq: int = 0
    events: int = 0
    legacy: int = 0


def _check(record: dict[str, Any], state: _ChainState, *, anchored: bool) -> str | None:
    """Advance ``state`` over one parsed record; return why it breaks the
    chain. Exact, and total: whatever the record holds, an answer."""
    if not is_chained(record):
        if state.events:
            return "a line without chain fields follows chained lines"
        state.legacy += 1
        return None
    seq, prev, digest = record.get("seq"), record.get("prev"), record.get("hash")
    # Exact types: true is an int to Python and 2.0 equals 2, neither is a seq.
    if type(seq) is not int or type(prev) is not str or type(digest) is not str:
        return "chain fields are missing or of the wrong type"
    if anchored and (seq != state.seq + 1 or prev != state.prev):
        return f"expected seq {state.seq + 1} after hash {state.prev[:12]}..."
    problem = _hash_problem(prev, record, digest)
    if problem is None:
        state.prev, state.seq = digest, seq
        state.events += 1
    return problem


def _hash_problem(prev: str, record: dict[str, Any], digest: str) -> str | None:
    try:
        expected = chain_hash(prev, _body(record))
    except ValueError as exc:  # NaN, nesting past the limit, a lone surrogate, a prev not ASCII
        return f"the line has no canonical JSON spelling to hash: {exc}"
    return None if expected == digest else "hash does not match the record (edited line)"


@dataclass(frozen=True)
class Anchor:
    """A chain head (seq and hash) kept apart from the log: the log must still
    hold that event, with that hash. It is what reveals lines cut from the tail."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


# Seq 1 is the first chained event; a seq of 0 names none.
ANCHOR_PATTERN = r"^[1-9][0-9]{0,17}:[0-9a-f]{64}$"


def parse_anchor(text: str) -> Anchor:
    """``SEQ:HASH`` as printed by ``valhalla audit head``."""
    seq, sep, digest = text.strip().partition(":")
    if not (sep and seq.isascii() and seq.isdigit() and len(digest) == 64 and int(seq) >= 1):
        raise InvalidInputError(f"invalid anchor {text!r}: expected SEQ:HASH (valhalla audit head)")
    if any(c not in "0123456789abcdef" for c in digest):
        raise InvalidInputError(f"invalid anchor {text!r}: the hash is 64 lowercase hex digits")
    return Anchor(int(seq), digest)


def chain_head(*, store: Store) -> AuditHead:
    """The newest chained event's seq and hash, read from the end of the log."""
    for entry in store.scan_log(AUDIT_LOG):
        record = entry.record
        seq, digest = record.get("seq"), record.get("hash")
        if is_chained(record) and isinstance(seq, int) and isinstance(digest, str):
            return AuditHead(seq=seq, hash=digest, ts_utc=record.get("ts_utc"))
        break
    return AuditHead(seq=0, hash=None, ts_utc=None)


def _hash_as_stored(prev: str, text: bytes | str, digest: str) -> str:
    """SHA-256 over ``prev``, a newline and the stored line without its
    ``,"hash":"<digest>"`` member.

    Stored lines are written in the canonical spelling (sorted keys, no
    spaces: see ``storage/encoding.py``), with ``"hash"`` a member of the
    top-level object. For a line written so, removing the member leaves
    exactly the body :func:`chain_hash` hashed: this is its hash.
    """
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    body = raw.replace(b',"hash":"%b"' % digest.encode("utf-8", "surrogatepass"), b"", 1)
    return hashlib.sha256(b"%b\n%b" % (prev.encode(), body)).hexdigest()


def verify_chain(*, store: Store, anchor: Anchor | None = None) -> AuditVerifyResult:
    """Walk the whole log, oldest line first, and check every link. Catches
    edited, dropped and reordered lines; legacy lines before the chain are
    counted, not failed. With an ``anchor`` it also catches lines cut from
    the tail (or a log rewritten from some point on), which no walk of the
    log alone can see. Whatever a line holds, the answer is a result, never
    an error (a store that cannot be read at all still raises).

    Each line is checked against its stored bytes first: its ``prev`` and
    ``seq`` must follow the line before, and SHA-256 over ``prev``, a newline
    and the stored line without its ``hash`` member (:func:`_hash_as_stored`)
    must be its ``hash``. That is the whole check for every line this code
    wrote, and it hashes each line once, as read. A line that does not pass
    there (a legacy line, one written in another spelling by an older
    version, an edited one) is parsed again exactly and checked by
    :func:`_check`, which decides.

    Checking the stored bytes accepts no chain that tells a different story.
    A hash binds the exact bytes it was computed over, and every hash this
    code wrote was computed over a canonical body: a stored line that passes
    with such a hash *is* that body with the member ``,"hash":"<its hash>"``
    put in, and parsed (the store parses every line) it says what was hashed.
    Put in anywhere but between two top-level members, the member would make
    the line invalid JSON, or leave it without a top-level ``hash`` equal to
    the one computed. A line in another spelling passes only if whoever wrote
    it computed its hash over those bytes; they could as well have hashed the
    canonical spelling, so it shows nothing they could not have forged: the
    links to the lines after it, and an anchor, bind it as before.
    """
    state = _ChainState()
    anchor_seq = None if anchor is None else anchor.seq
    anchored_hash: str | None = None
    try:
        for texts, records in store.scan_log_bulk(AUDIT_LOG):
            for text, record in zip(texts, records, strict=True):
                digest, seq = record.get("hash"), record.get("seq")
                if (
                    type(digest) is str
                    and type(seq) is int
                    and seq == state.seq + 1
                    and record.get("prev") == state.prev
                    and _hash_as_stored(state.prev, text, digest) == digest
                ):
                    state.prev, state.seq = digest, seq
                    state.events += 1
                else:
                    problem = _check_exactly(text, state)
                    if problem is not None:
                        return _broken(state, problem)
                if state.seq == anchor_seq and state.events:
                    anchored_hash = state.prev
    except StorageCorruptError as exc:  # a line that does not parse, named
        return _broken(state, str(exc))
    head = {"head_seq": state.seq, "head_hash": state.prev if state.events else None}
    if anchor is not None and anchored_hash != anchor.hash:
        if anchored_hash is None:
            problem = (
                f"the log ends at seq {state.seq} but the anchor says seq {anchor.seq} "
                f"({anchor.hash[:12]}...) existed: events were cut from the tail"
            )
            first_bad = state.seq + 1
        else:
            problem = (
                f"seq {anchor.seq} has hash {anchored_hash[:12]}... but the anchor says "
                f"{anchor.hash[:12]}...: the log was rewritten up to there"
            )
            first_bad = anchor.seq
        return _broken(state, problem, first_bad=first_bad, **head)
    return AuditVerifyResult(
        ok=True,
        events=state.events,
        legacy_events=state.legacy,
        anchored=anchor is not None,
        **head,
    )


def _check_exactly(text: bytes | str, state: _ChainState) -> str | None:
    """:func:`_check` on the line parsed again exactly (a bulk scan may read
    an integer past 64 bits as a float)."""
    try:
        record = loads(text)
    except ValueError as exc:  # the store parsed it, so this should not happen
        return f"the line does not parse as JSON: {exc}"
    if type(record) is not dict:
        return "the line is not a JSON object"
    return _check(record, state, anchored=True)


def _broken(
    state: _ChainState, problem: str, *, first_bad: int | None = None, **head: Any
) -> AuditVerifyResult:
    # By default the next seq the chain expected, whatever the bad line
    # claims: every event before it verified (an edited, dropped or moved
    # line all break the chain at the same place).
    return AuditVerifyResult(
        ok=False,
        events=state.events,
        legacy_events=state.legacy,
        first_bad_seq=state.seq + 1 if first_bad is None else first_bad,
        detail=problem,
        **head,
    )


class ChainWatcher:
    """Incremental chain check for health: verifies only what is new.

    On first use it anchors at most ``HEALTH_WINDOW`` lines from the end; after
    that each call reads forward from the last line it verified: that line
    must still be there unchanged (catching an edit or truncation at the
    tail), and the lines after it are checked. One read per call; after a
    problem, the next call starts over from the window (the operator may
    have repaired the log). The full walk is :func:`verify_chain`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cursor: str | None = None  # just past the last verified line
        self._before_last: str | None = None  # just before it (None: the log's start)
        self._last_record: dict[str, Any] | None = None
        self._state = _ChainState()
        self._problem: str | None = None

    def check(self, store: Store) -> str | None:
        """None while the chain holds; else what is wrong, for health."""
        with self._lock:
            if self._problem is not None:
                self._cursor, self._last_record, self._state = None, None, _ChainState()
            try:
                self._problem = self._advance(store)
            except (StorageCorruptError, InvalidCursorError) as exc:
                self._problem = str(exc)
            return self._problem

    def _advance(self, store: Store) -> str | None:
        anchored = True
        if self._cursor is None:
            anchored = False
            start: str | None = None
            for count, entry in enumerate(store.scan_log(AUDIT_LOG)):
                start = entry.cursor
                if count + 1 >= HEALTH_WINDOW:
                    break
            before = start
            entries = iter(store.scan_log_forward(AUDIT_LOG, after=start))
        else:
            before = self._before_last
            try:
                entries = iter(store.scan_log_forward(AUDIT_LOG, after=before))
                last = next(entries, None)
            except InvalidCursorError:
                last = None  # the log shrank or shifted under the last verified line
            # The whole record, not just its hash field: an edit that keeps the
            # hash field (and the line's length) must still be seen.
            if last is None or last.cursor != self._cursor or last.record != self._last_record:
                return "the last verified audit line changed or disappeared"
            before = last.cursor
        for entry in entries:
            problem = _check(entry.record, self._state, anchored=anchored)
            if problem is not None:
                return f"audit chain broken near seq {self._state.seq + 1}: {problem}"
            if is_chained(entry.record):
                anchored = True
            self._before_last, self._cursor = before, entry.cursor
            self._last_record = entry.record
            before = entry.cursor
        return None
