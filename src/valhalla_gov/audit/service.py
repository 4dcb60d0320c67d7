"""Audit rules: append to the hash chain, page through events, verify."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, repeat
from operator import methodcaller
from typing import Any, cast

import orjson
from pydantic import ValidationError

from ..errors import InvalidInputError
from ..observability.metrics import AUDIT_EVENTS
from ..storage.encoding import canonical_bytes, loads
from ..storage.errors import InvalidCursorError, StorageCorruptError
from ..storage.protocol import BulkRun, Store, StoreTxn
from ..timeutil import Clock, iso_z, parse_iso
from . import parts
from .models import AuditEvent, AuditHead, AuditPage, AuditVerifyResult
from .store import AUDIT_LOG

GENESIS = "0" * 64
MAX_PAGE = 500
# Health re-checks at most this many of the newest lines when a process first
# looks, so its cost stays flat however long the log grows.
HEALTH_WINDOW = 1000


def chain_hash(prev: str, body: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the record's canonical JSON."""
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
    AUDIT_EVENTS.labels(event=event).inc()
    return AuditEvent.model_validate(record)


def record_event(
    *, store: Store, event: str, payload: dict[str, Any], actor: str, clock: Clock
) -> AuditEvent:
    with store.transaction() as txn:
        return log_event(txn, event=event, payload=payload, actor=actor, clock=clock)


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


@dataclass
class _ChainState:
    prev: str = GENESIS
    seq: int = 0
    events: int = 0
    legacy: int = 0


def _check(record: dict[str, Any], state: _ChainState, *, anchored: bool) -> str | None:
    """Advance ``state`` over one record; return why it breaks the chain."""
    if not is_chained(record):
        if state.events:
            return "a line without chain fields follows chained lines"
        state.legacy += 1
        return None
    seq, prev, digest = record.get("seq"), record.get("prev"), record.get("hash")
    if not isinstance(seq, int) or not isinstance(prev, str) or not isinstance(digest, str):
        return "chain fields are missing or of the wrong type"
    if anchored and (seq != state.seq + 1 or prev != state.prev):
        return f"expected seq {state.seq + 1} after hash {state.prev[:12]}..."
    if chain_hash(prev, _body(record)) != digest:
        return "hash does not match the record (edited line)"
    state.prev, state.seq = digest, seq
    state.events += 1
    return None


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


_SORTED = orjson.OPT_SORT_KEYS
# Lines checked together by _clean_hashes: enough to pay for its passes, few
# enough that a chunk's objects stay in the CPU's cache (measured: 256 runs
# about 15% faster than 4,096).
_CHUNK = 256
_MISSING: Any = object()


def _clean_hashes(records: list[dict[str, Any]], prev: str, seq: int) -> list[str] | None:
    """The chunk's hashes when every line passes :func:`_walk_lines`'s fast
    path from ``prev`` and ``seq`` on, else None (the chunk's records as they
    were). The same test, line for line, in C-level passes over the chunk
    instead of a Python step per line: each line's stored ``prev`` must be the
    hash before it and its ``seq`` the next integer, and SHA-256 over its
    ``prev``, a newline and orjson's sorted spelling of the record without its
    ``hash`` must be the stored ``hash``, all 64 lowercase hex digits (compared
    as bytes: one ``fromhex`` per chunk instead of a ``hexdigest`` per line)."""
    hashes = list(map(dict.pop, records, repeat("hash"), repeat(_MISSING)))
    try:
        if _chunk_holds(records, hashes, prev, seq):
            return hashes
    except (TypeError, ValueError, orjson.JSONEncodeError):
        pass  # not a clean chunk: the line-by-line check decides
    for record, digest in zip(records, hashes, strict=True):
        if digest is not _MISSING:
            record["hash"] = digest
    return None


def _chunk_holds(records: list[dict[str, Any]], hashes: list[Any], prev: str, seq: int) -> bool:
    prevs = list(map(dict.get, records, repeat("prev")))
    seqs = list(map(dict.get, records, repeat("seq")))
    if not (
        set(map(type, hashes)) == {str}
        and set(map(len, hashes)) == {64}
        and prevs[0] == prev
        and prevs[1:] == hashes[:-1]
        and set(map(type, seqs)) == {int}
        and seqs == list(range(seq + 1, seq + 1 + len(seqs)))
    ):
        return False
    stored = "".join(hashes)
    wanted = bytes.fromhex(stored)
    if wanted.hex() != stored:
        return False  # upper case or spaces: hexdigest() would not match it
    bodies = map(orjson.dumps, records, repeat(None), repeat(_SORTED))
    # Every prev is now a verified hash (or the genesis): ASCII.
    lines = map(b"\n".join, zip(map(str.encode, cast(list[str], prevs)), bodies, strict=True))
    return b"".join(map(_DIGEST, map(hashlib.sha256, lines))) == wanted


_DIGEST = methodcaller("digest")


class _Broken:
    """A scan's error, carried in the stream to where the walk reaches it."""

    def __init__(self, error: StorageCorruptError) -> None:
        self.error = error


def _guarded(runs: Iterable[BulkRun]) -> Iterator[BulkRun | _Broken]:
    # A bulk scan raises at a line that does not parse once every line before
    # it was yielded: the walk checks those first, as it did line by line.
    try:
        yield from runs
    except StorageCorruptError as exc:
        yield _Broken(exc)


def _walk(
    runs: Iterable[BulkRun], state: _ChainState, anchor_seq: int | None
) -> tuple[str | None, str | None]:
    """Check the records of ``runs`` (a bulk scan's) in order from ``state``
    on; stop at the first break.

    Returns the problem (None when every link holds) and the hash of the
    event at ``anchor_seq`` when the walk passed it. Lines go in chunks: a
    chunk of clean lines is checked by :func:`_clean_hashes`, any other by
    :func:`_walk_lines`, which decides. A scan error raises once the lines
    before it are checked.
    """
    anchored_hash: str | None = None
    for run in _guarded(runs):
        if isinstance(run, _Broken):
            raise run.error
        texts, records = run
        for at in range(0, len(records), _CHUNK):
            chunk = records[at : at + _CHUNK] if len(records) > _CHUNK else records
            hashes = _clean_hashes(chunk, state.prev, state.seq)
            if hashes is not None:
                if anchor_seq is not None and state.seq < anchor_seq <= state.seq + len(hashes):
                    anchored_hash = hashes[anchor_seq - state.seq - 1]
                state.prev, state.seq = hashes[-1], state.seq + len(hashes)
                state.events += len(hashes)
                continue
            lines = zip(texts[at : at + _CHUNK], chunk, strict=True)
            problem, found = _walk_lines(lines, state, anchor_seq)
            anchored_hash = found or anchored_hash
            if problem is not None:
                return problem, anchored_hash
    return None, anchored_hash


def _walk_lines(
    records: Iterable[tuple[bytes | str, dict[str, Any]]],
    state: _ChainState,
    anchor_seq: int | None,
) -> tuple[str | None, str | None]:
    """:func:`_walk` one line at a time.

    The fast path is the whole check for a well-formed line: orjson's sorted
    spelling of the body *is* the canonical one, except for a few float and
    long-integer spellings (see ``storage/encoding.py``); a line holding one
    of those, or one that fails here for any reason, is checked again by
    :func:`_check` on the exactly parsed record, which decides. A hash that
    only matches orjson's spelling would have to be computed by whoever
    forged it, who could as well have written the canonical one: the fast
    path accepts no chain that tells a different story.
    """
    sha = hashlib.sha256
    dumps = orjson.dumps
    prev, seq, events = state.prev, state.seq, state.events
    prefix = prev.encode("ascii") + b"\n"
    anchored_hash: str | None = None
    try:
        for raw, record in records:
            digest = record.pop("hash", None)
            if (
                type(digest) is str
                and record.get("prev") == prev
                and record.get("seq") == seq + 1
                and type(record["seq"]) is int
                and sha(prefix + dumps(record, option=_SORTED)).hexdigest() == digest
            ):
                prev, seq, events = digest, seq + 1, events + 1
                prefix = digest.encode("ascii") + b"\n"
                if seq == anchor_seq:
                    anchored_hash = digest
                continue
            state.prev, state.seq, state.events = prev, seq, events
            problem = _check(loads(raw), state, anchored=True)
            if problem is not None:
                return problem, anchored_hash
            prev, seq, events = state.prev, state.seq, state.events
            prefix = prev.encode("ascii") + b"\n"
            if events and seq == anchor_seq:
                anchored_hash = prev
    finally:
        state.prev, state.seq, state.events = prev, seq, events
    return None, anchored_hash


def check_part(
    store: Store, after: str, until: str | None, anchor_seq: int | None
) -> parts.Outcome | str:
    """Walk one part of the log (a worker's share, see :mod:`.parts`) from
    the state its first line claims. A string when the part is not clean
    (why, for tests; the caller walks it again)."""
    runs: Iterator[BulkRun] = iter(store.scan_log_bulk(AUDIT_LOG, after=after, until=until))
    first = next(runs, None)
    if first is None:
        return None
    head = first[1][0]
    prev, seq = head.get("prev"), head.get("seq")
    if type(prev) is not str or type(seq) is not int or "hash" not in head:
        return "the part's first line is not a chained event"
    state = _ChainState(prev=prev, seq=seq - 1)
    problem, anchored_hash = _walk(chain([first], runs), state, anchor_seq)
    if problem is not None:
        return problem
    if state.legacy or state.events == 0:
        return "the part holds a legacy line"
    return parts.PartResult(prev, seq, state.prev, state.seq, state.events, anchored_hash)


def _walk_log(
    store: Store, state: _ChainState, anchor_seq: int | None, started: parts.Started | None
) -> tuple[str | None, str | None]:
    """:func:`_walk` over the whole log, its parts joined (see :mod:`.parts`)."""
    if started is not None:
        try:
            return _walk_parts(store, state, anchor_seq, started)
        except InvalidCursorError:
            # The log was rewritten shorter under the parts: one walk of it as it is.
            state.prev, state.seq, state.events, state.legacy = GENESIS, 0, 0, 0
    return _walk(store.scan_log_bulk(AUDIT_LOG), state, anchor_seq)


def _walk_parts(
    store: Store, state: _ChainState, anchor_seq: int | None, started: parts.Started
) -> tuple[str | None, str | None]:
    until = started.cuts[0]
    problem, anchored_hash = _walk(store.scan_log_bulk(AUDIT_LOG, until=until), state, anchor_seq)
    if problem is not None:
        return problem, anchored_hash
    for after, outcome in started.results():
        if outcome is None:
            continue  # a part without a line
        if (
            isinstance(outcome, parts.PartResult)
            and outcome.first_prev == state.prev
            and outcome.first_seq == state.seq + 1
        ):
            state.prev, state.seq = outcome.last_hash, outcome.last_seq
            state.events += outcome.events
            anchored_hash = outcome.anchored_hash or anchored_hash
            continue
        # Not clean, or not linked to the part before: walked again from its
        # start to the end, from the state reached, which decides.
        problem, found = _walk(store.scan_log_bulk(AUDIT_LOG, after=after), state, anchor_seq)
        return problem, found or anchored_hash
    return None, anchored_hash


def verify_chain(
    *, store: Store, anchor: Anchor | None = None, workers: parts.Workers | None = None
) -> AuditVerifyResult:
    """Walk the whole log and check every link. Catches edited, dropped and
    reordered lines; legacy lines before the chain are counted, not failed.
    With an ``anchor`` it also catches lines cut from the tail (or a log
    rewritten from some point on), which no walk of the log alone can see.
    ``workers``: a long log is walked in parts by that many processes (only
    where this process runs no other thread: see :mod:`.parts`)."""
    state = _ChainState()
    anchor_seq = None if anchor is None else anchor.seq
    started = parts.start(store, workers, anchor_seq, check_part)
    try:
        problem, anchored_hash = _walk_log(store, state, anchor_seq, started)
        if problem is not None:
            # The next seq the chain expected, whatever the bad line claims:
            # every event before it verified (an edited, dropped or moved
            # line all break the chain at the same place).
            return AuditVerifyResult(
                ok=False,
                events=state.events,
                legacy_events=state.legacy,
                first_bad_seq=state.seq + 1,
                detail=problem,
            )
    except StorageCorruptError as exc:
        return AuditVerifyResult(
            ok=False,
            events=state.events,
            legacy_events=state.legacy,
            first_bad_seq=state.seq + 1,
            detail=str(exc),
        )
    finally:
        if started is not None:
            started.stop()
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
        return AuditVerifyResult(
            ok=False,
            events=state.events,
            legacy_events=state.legacy,
            first_bad_seq=first_bad,
            detail=problem,
            **head,
        )
    return AuditVerifyResult(
        ok=True,
        events=state.events,
        legacy_events=state.legacy,
        anchored=anchor is not None,
        **head,
    )


class ChainWatcher:
    """Incremental chain check for health: verifies only what is new.

    On first use it anchors at most ``HEALTH_WINDOW`` lines from the end; after
    that each call reads forward from the last line it verified: that line
    must still be there unchanged (catching an edit or truncation at the
    tail), and the lines after it are checked. One read per call. The full
    walk is :func:`verify_chain`.

    Where the store has generations (SQL), a call at the generation of the
    last good check, within ``RECHECK_S`` of it, answers from that check:
    every write bumps the generation, so only a change made outside Valhalla
    that does not bump it (which the documented repair path does) waits up
    to ``RECHECK_S`` to be seen.
    """

    RECHECK_S = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cursor: str | None = None  # just past the last verified line
        self._before_last: str | None = None  # just before it (None: the log's start)
        self._last_record: dict[str, Any] | None = None
        self._state = _ChainState()
        self._problem: str | None = None
        self._good_at: tuple[int, float] | None = None  # (generation, monotonic time)
        self._read_at: float | None = None  # monotonic time of the last good check that read

    def check(self, store: Store) -> str | None:
        with self._lock, store.reading() as generation:
            now = time.monotonic()
            good = self._good_at
            if (
                good is not None
                and generation is not None
                and good[0] == generation
                and now - good[1] < self.RECHECK_S
            ):
                return None
            self._good_at = None
            if self._problem is not None:
                # Start over from the window: the operator may have repaired it.
                self._cursor, self._last_record, self._state = None, None, _ChainState()
            try:
                self._problem = self._advance(store)
            except (StorageCorruptError, InvalidCursorError) as exc:
                self._problem = str(exc)
            if self._problem is None and generation is not None:
                self._good_at, self._read_at = (generation, now), now
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
