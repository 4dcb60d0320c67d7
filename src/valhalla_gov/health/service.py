"""Health: the worst of a few cheap checks, each with a readable reason.

Every check reads a bounded amount (a few documents, the newest lines of two
logs, the audit lines appended since the last look), so the cost does not
grow with the audit log.

Health is also taken inside writes (a GO session's snapshot), so nothing here
writes, and what was already judged is not judged again: documents are parsed
once per stored value (``read_cached``), the deny rate and the error count are
kept per store with the version of the log they were counted from
(``log_version``, which every append from any worker or replica changes) and
the thresholds they used, and the error count also with the moment its oldest
counted error leaves the window. The chain watcher is incremental already.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..audit.service import ChainWatcher
from ..cone.canon import BAND_MEANING
from ..cone.models import ConeState
from ..cone.store import DECISIONS, cached_state, recent_decisions
from ..storage.errors import StorageCorruptError, StorageError
from ..storage.protocol import Store
from ..timeutil import Clock, iso_z, parse_iso
from .models import STATUS_RANK, CheckResult, HealthStatus, Readiness, Thresholds
from .store import SERVER_ERRORS, cached_thresholds


def _band_check(cone: ConeState) -> CheckResult:
    meaning = BAND_MEANING[cone.band]
    if cone.band == "A":
        return CheckResult(status="green", detail=f"cone band A ({meaning})")
    if cone.band == "B":
        return CheckResult(status="yellow", detail=f"cone band B ({meaning}): {cone.reason}")
    return CheckResult(status="red", detail=f"cone band {cone.band} ({meaning}): {cone.reason}")


@dataclass(frozen=True, slots=True)
class _Counted:
    """A check result and what it was computed from."""

    version: str  # the log's version, read before the log was
    limits: Thresholds
    result: CheckResult
    at: datetime | None = None  # the clock then (error count only)
    until: datetime | None = None  # when the oldest counted error leaves the window


class _Memo:
    def __init__(self) -> None:
        self.deny: _Counted | None = None
        self.errors: _Counted | None = None


_MEMOS: weakref.WeakKeyDictionary[Store, _Memo] = weakref.WeakKeyDictionary()
_MEMOS_LOCK = threading.Lock()


def _memo(store: Store) -> _Memo:
    with _MEMOS_LOCK:
        memo = _MEMOS.get(store)
        if memo is None:
            memo = _MEMOS[store] = _Memo()
        return memo


def _deny_rate_check(store: Store, limits: Thresholds, memo: _Memo) -> CheckResult:
    # The version first: an append racing the scan leaves an older version
    # beside a newer count, which the next call recounts (never the reverse).
    version = store.log_version(DECISIONS)
    hit = memo.deny
    if hit is not None and hit.version == version and hit.limits == limits:
        return hit.result
    result = _count_denials(store, limits)
    memo.deny = _Counted(version, limits, result)
    return result


def _count_denials(store: Store, limits: Thresholds) -> CheckResult:
    decisions = recent_decisions(store=store, window=limits.deny_window)
    total = len(decisions)
    if total < limits.deny_min_decisions:
        return CheckResult(
            status="green",
            detail=(
                f"{_decisions(total)} so far; drift is judged from {limits.deny_min_decisions}"
            ),
        )
    denied = sum(1 for d in decisions if not d.get("allowed"))
    rate = denied / total
    text = f"deny rate {rate:.0%} over the last {_decisions(total)}"
    if rate >= limits.deny_rate_red:
        return CheckResult(status="red", detail=f"{text} (red from {limits.deny_rate_red:.0%})")
    if rate >= limits.deny_rate_yellow:
        return CheckResult(
            status="yellow", detail=f"{text} (yellow from {limits.deny_rate_yellow:.0%})"
        )
    return CheckResult(status="green", detail=text)


def _error_time(record: dict[str, Any]) -> datetime:
    raw = record.get("ts_utc")
    if isinstance(raw, str):
        try:
            return parse_iso(raw)
        except ValueError:
            pass
    raise StorageCorruptError(
        SERVER_ERRORS.file, f"a record has no readable ts_utc ({raw!r}); left untouched"
    )


def _errors_check(store: Store, limits: Thresholds, clock: Clock, memo: _Memo) -> CheckResult:
    now = clock()
    version = store.log_version(SERVER_ERRORS)
    hit = memo.errors
    if (
        hit is not None
        and hit.version == version
        and hit.limits == limits
        and hit.at is not None
        and hit.at <= now  # a clock stepped back may bring older errors in
        and (hit.until is None or now <= hit.until)
    ):
        return hit.result
    span = timedelta(minutes=limits.error_window_minutes)
    since = now - span
    count = 0
    oldest: datetime | None = None
    for entry in store.scan_log(SERVER_ERRORS):
        moment = _error_time(entry.record)
        if moment < since:
            break
        count += 1
        oldest = moment if oldest is None else min(oldest, moment)
    result = _errors_result(count, limits)
    # The count holds until its oldest error ages out: the window's start
    # moves forward only, so no error it stopped at comes back in.
    until = None if oldest is None else oldest + span
    memo.errors = _Counted(version, limits, result, at=now, until=until)
    return result


def _errors_result(count: int, limits: Thresholds) -> CheckResult:
    window = f"{limits.error_window_minutes:g} minutes"
    if count >= limits.errors_red:
        return CheckResult(
            status="red", detail=f"{count} unhandled server errors in the last {window}"
        )
    return CheckResult(status="green", detail=f"no unhandled server errors in the last {window}")


def _guard(name: str, checks: dict[str, CheckResult], fn: Any, *args: Any) -> Any:
    """Run one check; a storage failure becomes a red check, not an outage."""
    try:
        return fn(*args)
    except StorageError as exc:
        checks[name] = CheckResult(status="red", detail=str(exc))
        return None


def get_health_status(*, store: Store, clock: Clock, watcher: ChainWatcher) -> HealthStatus:
    with store.reading():  # one consistency check for every read below (SQL)
        return _health_status(store=store, clock=clock, watcher=watcher)


def _health_status(*, store: Store, clock: Clock, watcher: ChainWatcher) -> HealthStatus:
    memo = _memo(store)
    checks: dict[str, CheckResult] = {}
    cone: ConeState | None = _guard("band", checks, lambda: cached_state(store))
    if cone is not None:
        checks["band"] = _band_check(cone)
    limits: Thresholds | None = _guard("thresholds", checks, lambda: cached_thresholds(store=store))
    effective = limits or Thresholds()
    deny = _guard("deny_rate", checks, _deny_rate_check, store, effective, memo)
    if deny is not None:
        checks["deny_rate"] = deny
    # Asked without writing a probe file: this runs on the request path and
    # inside writes; readiness still makes the test write.
    problems = store.probe(write=False)
    checks["storage"] = (
        CheckResult(status="red", detail="; ".join(problems))
        if problems
        else CheckResult(status="green", detail="storage readable and writable")
    )
    try:
        broken = watcher.check(store)
    except StorageError as exc:  # e.g. audit.log unreadable: red, not an outage
        broken = str(exc)
    checks["audit"] = (
        CheckResult(status="red", detail=broken)
        if broken
        else CheckResult(status="green", detail="audit chain intact")
    )
    errors = _guard("server_errors", checks, _errors_check, store, effective, clock, memo)
    if errors is not None:
        checks["server_errors"] = errors
    worst = max(checks.values(), key=lambda c: STATUS_RANK[c.status]).status
    reasons = [c.detail for c in checks.values() if c.status != "green"] or ["all signals green"]
    return HealthStatus(
        status=worst,
        reasons=reasons,
        checks=checks,
        cone_band=cone.band if cone is not None else None,
        checked_at_utc=iso_z(clock()),
    )


def get_readiness(*, store: Store, checks: Iterable[Callable[[Store], object]] = ()) -> Readiness:
    """Ready when the store is usable and every document reads as its model
    (each feature's checks): a file that parses but has the wrong shape still
    fails its every call."""
    problems = store.probe()
    for check in checks:
        try:
            check(store)
        except StorageError as exc:
            if str(exc) not in problems:
                problems.append(str(exc))
    return Readiness(ready=not problems, reasons=problems)


def _decisions(count: int) -> str:
    return f"{count} cone decision" + ("" if count == 1 else "s")
