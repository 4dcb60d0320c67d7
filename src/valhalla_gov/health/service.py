"""Health: the worst of a few checks, each with a readable reason.

Every check reads a bounded amount (a few documents, the newest lines of two
logs, the audit lines appended since the last look), so the cost does not
grow with the audit log. Health is computed by each serving process's
:class:`~.publisher.HealthPublisher`, not per request: nothing here writes,
and nothing here remembers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from ..audit.service import ChainWatcher
from ..cone.canon import BAND_MEANING
from ..cone.models import ConeState
from ..cone.store import cached_state, recent_decisions
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


# The error count reads at most this many lines past the threshold: a burst
# of errors must not make each health check read the whole burst.
ERRORS_COUNTED = 1000


def _errors_check(store: Store, limits: Thresholds, clock: Clock) -> CheckResult:
    since = clock() - timedelta(minutes=limits.error_window_minutes)
    cap = limits.errors_red + ERRORS_COUNTED
    count = 0
    for entry in store.scan_log(SERVER_ERRORS, take=cap):
        if _error_time(entry.record) < since:
            break
        count += 1
        if count >= cap:
            break
    return _errors_result(count, limits, capped=count >= cap)


def _errors_result(count: int, limits: Thresholds, *, capped: bool = False) -> CheckResult:
    window = f"{limits.error_window_minutes:g} minutes"
    if count >= limits.errors_red:
        many = f"{count}+" if capped else str(count)
        return CheckResult(
            status="red", detail=f"{many} unhandled server errors in the last {window}"
        )
    return CheckResult(status="green", detail=f"no unhandled server errors in the last {window}")


def _guard(name: str, checks: dict[str, CheckResult], fn: Any, *args: Any) -> Any:
    """Run one check; a storage failure becomes a red check, not an outage."""
    try:
        return fn(*args)
    except StorageError as exc:
        checks[name] = CheckResult(status="red", detail=str(exc))
        return None


def compute_health(*, store: Store, clock: Clock, watcher: ChainWatcher) -> HealthStatus:
    """Judge every signal now (see :class:`~.publisher.HealthPublisher` for
    who calls this, and how often)."""
    with store.reading():  # one consistent view for every read below
        checks: dict[str, CheckResult] = {}
        cone: ConeState | None = _guard("band", checks, lambda: cached_state(store))
        if cone is not None:
            checks["band"] = _band_check(cone)
        limits: Thresholds | None = _guard(
            "thresholds", checks, lambda: cached_thresholds(store=store)
        )
        effective = limits or Thresholds()
        deny = _guard("deny_rate", checks, _count_denials, store, effective)
        if deny is not None:
            checks["deny_rate"] = deny
        # Judged without writing a probe file (readiness makes the test write).
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
        errors = _guard("server_errors", checks, _errors_check, store, effective, clock)
        if errors is not None:
            checks["server_errors"] = errors
    return _judged(checks, cone.band if cone is not None else None, iso_z(clock()))


def _judged(checks: dict[str, CheckResult], band: str | None, at_utc: str) -> HealthStatus:
    worst = max(checks.values(), key=lambda c: STATUS_RANK[c.status]).status
    reasons = [c.detail for c in checks.values() if c.status != "green"] or ["all signals green"]
    return HealthStatus(
        status=worst, reasons=reasons, checks=checks, cone_band=band, checked_at_utc=at_utc
    )


def with_cone(health: HealthStatus, cone: ConeState) -> HealthStatus:
    """``health`` judged again with ``cone`` as the band (the cone a read or
    a write's transaction just saw), so the two agree: a band-D snapshot is
    never green, whatever was published a moment before."""
    band = _band_check(cone)
    if health.cone_band == cone.band and health.checks.get("band") == band:
        return health
    return _judged({**health.checks, "band": band}, cone.band, health.checked_at_utc)


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
