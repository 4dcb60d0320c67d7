"""``valhalla data prune``: drop old records of the logs that may lose them.

Two logs grow without bound and are only read near their end: the cone's
decisions (health's deny rate reads the newest few hundred) and the server
errors (health counts those of the last minutes). Pruning drops their
records older than a cutoff, under the store's exclusive lock, and audits
what it did (``DATA_PRUNED``). It never drops what health reads, whatever
the cutoff: the newest ``deny_window * SCAN_FACTOR`` decisions and the
errors inside the error window stay, so pruning changes no light.

The audit log is never pruned: it is the tamper-evident history (see
docs/operations.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .audit.models import AuditEvent
from .audit.service import log_event
from .cone.store import DECISIONS, SCAN_FACTOR
from .health.models import Thresholds
from .health.store import SERVER_ERRORS, THRESHOLDS
from .storage.parsing import parse_stored
from .storage.protocol import Log, Reader, Snapshot, Store
from .timeutil import Clock, iso_z, parse_iso

EVENT = "DATA_PRUNED"

_DURATION = re.compile(r"^\s*([0-9]{1,6})\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``30m``, ``12h``, ``90d``, ``2w``: a whole number and a unit; ValueError
    with the accepted forms otherwise."""
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(
            f"bad duration {text!r}: use a whole number above 0 and a unit, "
            "m (minutes), h (hours), d (days) or w (weeks), e.g. 90d"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@dataclass
class Pruned:
    """What pruning one log did (or, on a dry run, would do)."""

    log: str
    older_than: str  # as the operator wrote it
    cutoff_utc: str  # records older than this go ...
    dropped: int = 0
    kept: int = 0
    # ... except these, which health still reads (or which carry no time).
    kept_for_health: int = 0

    def payload(self) -> dict[str, Any]:
        return {
            "older_than": self.older_than,
            "cutoff_utc": self.cutoff_utc,
            "removed": self.dropped,
            "kept": self.kept,
        }


@dataclass
class PruneReport:
    logs: list[Pruned] = field(default_factory=list)
    dry_run: bool = False
    event: AuditEvent | None = None


def _limits(reader: Reader) -> Thresholds:
    raw = reader.read_document(THRESHOLDS)
    if raw is None:
        return Thresholds()
    return parse_stored(Thresholds, raw, where=THRESHOLDS.file, what="set of thresholds")


def _time(record: dict[str, Any]) -> datetime | None:
    raw = record.get("ts_utc")
    if not isinstance(raw, str):
        return None
    try:
        return parse_iso(raw)
    except ValueError:
        return None


def _rule(
    reader: Snapshot, log: Log, older_than: str, now: datetime, limits: Thresholds
) -> tuple[Pruned, Callable[[dict[str, Any]], bool]]:
    """The log's report and its keep test, called once per record, oldest first."""
    cutoff = now - parse_duration(older_than)
    report = Pruned(log.name, older_than, iso_z(cutoff))
    protect_from: datetime | None = None
    newest = 0
    if log == DECISIONS:
        # The deny rate reads at most this many of the newest lines.
        newest = limits.deny_window * SCAN_FACTOR
    else:
        protect_from = now - timedelta(minutes=limits.error_window_minutes)
    total = sum(1 for _ in reader.scan_log_forward(log)) if newest else 0
    position = 0

    def keep(record: dict[str, Any]) -> bool:
        nonlocal position
        position += 1
        moment = _time(record)
        if moment is not None and moment >= cutoff:
            report.kept += 1
            return True
        health_reads = (
            moment is None
            or (newest > 0 and total - position < newest)
            or (protect_from is not None and moment >= protect_from)
        )
        if health_reads:
            report.kept += 1
            report.kept_for_health += 1
            return True
        report.dropped += 1
        return False

    return report, keep


def prune(
    *,
    store: Store,
    clock: Clock,
    actor: str,
    decisions_older_than: str | None = None,
    server_errors_older_than: str | None = None,
    dry_run: bool = False,
) -> PruneReport:
    """Drop the old records of the logs given a duration (``90d`` ...). A dry
    run counts on a snapshot and changes nothing; a real run rewrites each
    log under the store's lock and appends one ``DATA_PRUNED`` audit event."""
    asked = [(DECISIONS, decisions_older_than), (SERVER_ERRORS, server_errors_older_than)]
    wanted = [(log, older) for log, older in asked if older is not None]
    for _, older in wanted:
        parse_duration(older)  # a bad one is refused before anything is read
    report = PruneReport(dry_run=dry_run)
    if dry_run:
        with store.snapshot() as snapshot:
            now, limits = clock(), _limits(snapshot)
            for log, older in wanted:
                pruned, keep = _rule(snapshot, log, older, now, limits)
                for entry in snapshot.scan_log_forward(log):
                    keep(entry.record)
                report.logs.append(pruned)
        return report
    with store.transaction() as txn:
        now, limits = clock(), _limits(txn)
        for log, older in wanted:
            pruned, keep = _rule(store, log, older, now, limits)
            txn.rewrite_log(log, keep)
            report.logs.append(pruned)
        report.event = log_event(
            txn,
            event=EVENT,
            payload={pruned.log: pruned.payload() for pruned in report.logs},
            actor=actor,
            clock=clock,
        )
    return report
