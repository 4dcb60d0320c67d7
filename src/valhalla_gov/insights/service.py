"""Sum the GO session history up per bucket.

The history is a log in start order (one session at a time, appended when it
ends), read newest first: the scan starts at the newest session and stops at
the first one that started before ``since``. A report therefore costs the
sessions from ``since`` to now, whatever the history holds before that; the
range is bounded (buckets, sessions scanned) before and during the work.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..cone.canon import BANDS
from ..errors import InvalidInputError
from ..go.session_store import HISTORY, scan_history
from ..health.models import STATUSES
from ..storage.errors import StorageCorruptError
from ..storage.protocol import Store
from ..timeutil import iso_z, parse_iso
from .models import Bucket, InsightBucket, Insights

DEFAULT_BUCKETS = 12
MAX_BUCKETS = 400
# A report reads at most this many sessions (decades of real use); a wider
# range is refused rather than left to tie up a worker.
MAX_SESSIONS = 100_000


def bucket_start(moment: datetime, bucket: Bucket) -> datetime:
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if bucket == "week":
        return day - timedelta(days=day.weekday())
    if bucket == "month":
        return day.replace(day=1)
    return day


def next_start(start: datetime, bucket: Bucket) -> datetime:
    if bucket == "day":
        return start + timedelta(days=1)
    if bucket == "week":
        return start + timedelta(days=7)
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def previous_start(start: datetime, bucket: Bucket) -> datetime:
    return bucket_start(start - timedelta(days=1), bucket)


@dataclass
class _Sums:
    durations: list[float] = field(default_factory=list)
    steps: int = 0
    bands: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BANDS, 0))
    statuses: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))

    def item(self, start: datetime) -> InsightBucket:
        return InsightBucket(
            start=iso_z(start),
            sessions=len(self.durations),
            total_seconds=round(sum(self.durations), 3),
            median_seconds=round(statistics.median(self.durations), 3) if self.durations else None,
            steps_completed=self.steps,
            bands=self.bands,
            statuses=self.statuses,
        )


@dataclass(frozen=True, slots=True)
class _Facts:
    started: datetime
    duration: float
    steps: int
    band: str
    status: str


def _facts(record: dict[str, Any], cursor: str) -> _Facts | None:
    """What a report needs of one history record; None for a record with no
    start time (never written by this service). Read from the raw record:
    validating whole sessions would cost more than everything else here."""
    try:
        started_raw = record.get("started_at_utc")
        if not isinstance(started_raw, str):
            return None
        started = parse_iso(started_raw)
        duration = record.get("duration_seconds")
        if not isinstance(duration, int | float):
            ended = record.get("ended_at_utc")
            duration = (parse_iso(ended) - started).total_seconds() if isinstance(ended, str) else 0
        steps = record.get("steps_completed")
        snapshot = record.get("snapshot") if isinstance(record.get("snapshot"), dict) else {}
        band = record.get("cone_band") or ((snapshot or {}).get("cone") or {}).get("band")
        status = record.get("status") or ((snapshot or {}).get("status") or {}).get("status")
    except (ValueError, TypeError, AttributeError) as exc:
        raise StorageCorruptError(
            HISTORY.file, f"the session at {cursor} is unreadable: {exc}"
        ) from exc
    return _Facts(
        started=started,
        duration=max(0.0, float(duration)),
        steps=len(steps) if isinstance(steps, list) else 0,
        band=str(band) if band else "unknown",
        status=str(status) if status else "unknown",
    )


def resolve_range(
    *, since: datetime | None, until: datetime | None, bucket: Bucket, now: datetime
) -> tuple[datetime, datetime, list[datetime]]:
    """The range and its bucket starts; 422 when it is inverted, too wide, or
    reaches past the years a date can hold."""
    try:
        return _resolve_range(since=since, until=until, bucket=bucket, now=now)
    except (OverflowError, ValueError):  # timedelta past year 1, replace() past 9999
        raise InvalidInputError(
            "the range's buckets reach past the years a date can hold (1 to 9999); "
            "move since/until inside them"
        ) from None


def _resolve_range(
    *, since: datetime | None, until: datetime | None, bucket: Bucket, now: datetime
) -> tuple[datetime, datetime, list[datetime]]:
    end = until or now
    first = bucket_start(since, bucket) if since is not None else bucket_start(end, bucket)
    if since is None:
        for _ in range(DEFAULT_BUCKETS - 1):
            first = previous_start(first, bucket)
    if since is not None and since > end:
        raise InvalidInputError("since is later than until")
    starts: list[datetime] = []
    cursor = first
    while cursor <= end:
        if len(starts) == MAX_BUCKETS:
            raise InvalidInputError(
                f"the range spans more than {MAX_BUCKETS} {bucket}s; "
                "narrow since/until or use a longer bucket"
            )
        starts.append(cursor)
        cursor = next_start(cursor, bucket)
    return since or first, end, starts


def get_insights(
    *,
    store: Store,
    since: datetime | None,
    until: datetime | None,
    bucket: Bucket,
    now: datetime,
) -> Insights:
    low, high, starts = resolve_range(since=since, until=until, bucket=bucket, now=now)
    sums = {start: _Sums() for start in starts}
    scanned = 0
    for entry in scan_history(store=store):
        facts = _facts(entry.record, entry.cursor)
        if facts is None:
            continue
        if facts.started < low:
            break  # start order: everything further is older still
        scanned += 1
        if scanned > MAX_SESSIONS:
            raise InvalidInputError(
                f"the range holds more than {MAX_SESSIONS} sessions; narrow since/until"
            )
        if facts.started > high:
            continue
        into = sums[bucket_start(facts.started, bucket)]
        into.durations.append(facts.duration)
        into.steps += facts.steps
        into.bands[facts.band] = into.bands.get(facts.band, 0) + 1
        into.statuses[facts.status] = into.statuses.get(facts.status, 0) + 1
    return Insights(
        bucket=bucket,
        since=iso_z(low),
        until=iso_z(high),
        items=[sums[start].item(start) for start in starts],
    )
