"""The cost of GET /core/go/insights at 1,000, 100,000 and 1,000,000 sessions.

In-process, through ``insights.service.get_insights`` (what the route calls),
on the cached JSON fills of ``bench.fill`` (one session every 5 minutes, the
newest ending a day before the fill). Two cases:

- ``last 2 days, per day``: the two days up to the newest session, the same
  576 sessions at every size. This is the "flat" claim: the history before
  ``since`` is never read, because the log is in start order and is read
  newest first, stopping at ``since``.
- ``last 12 weeks, per week`` (the default range): 1,000 sessions in the
  smallest fill, about 24,000 in the larger ones. Its cost follows the
  sessions in the range, not the history's length.

Two measures for each: the history records read (counted by wrapping the
store's scan: exact, whatever the machine's load), and the time (median and
p90 of ``time.perf_counter_ns``). The sizes are timed in turn, call by call,
so a load that comes and goes hits every size alike; ratios are taken
between sizes of the same run.

    python -m bench insights
    python -m bench insights --sizes 1000 100000 --calls 30

Flat means: records read equal, and the median at the largest size <= 1.2 x
the median at the smallest.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from bench import common
from bench.common import wait_quiet
from bench.fill import ensure_filled
from valhalla_gov.compose import SCHEMA
from valhalla_gov.go.session_store import scan_history
from valhalla_gov.insights.service import get_insights
from valhalla_gov.storage.json_backend import JsonStore
from valhalla_gov.storage.protocol import Log, LogEntry
from valhalla_gov.timeutil import parse_iso

SIZES = (1_000, 100_000, 1_000_000)
CASES = ("last 2 days, per day", "last 12 weeks, per week")


class CountingStore(JsonStore):
    """The JSON store, counting the log records its scans hand out."""

    read = 0

    def scan_log(
        self,
        log: Log,
        *,
        before: str | None = None,
        kind: str | None = None,
        take: int | None = None,
    ) -> Iterator[LogEntry]:
        for entry in super().scan_log(log, before=before, kind=kind, take=take):
            self.read += 1
            yield entry


def _calls(store: JsonStore) -> dict[str, Callable[[], Any]]:
    newest = next(iter(scan_history(store=store))).record
    now = parse_iso(newest["ended_at_utc"])
    return {
        CASES[0]: lambda: get_insights(
            store=store, since=now - timedelta(days=2), until=now, bucket="day", now=now
        ),
        CASES[1]: lambda: get_insights(store=store, since=None, until=None, bucket="week", now=now),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench insights", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--calls", type=int, default=30, help="timed calls per size and case")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="per case, all sizes")
    parser.add_argument("--wait-quiet", type=float, default=0.0)
    args = parser.parse_args(argv)

    info = common.header("insights")
    stores = {size: CountingStore(ensure_filled(size), SCHEMA) for size in args.sizes}
    if args.wait_quiet:
        print(wait_quiet(args.wait_quiet))
    figures: dict[str, dict[str, Any]] = {}
    for case in CASES:
        calls = {size: _calls(store)[case] for size, store in stores.items()}
        samples: dict[int, list[int]] = {size: [] for size in args.sizes}
        for size, call in calls.items():
            store = stores[size]
            store.read = 0
            report = call()  # warm-up, and the counts
            figures.setdefault(case, {})[str(size)] = {
                "records_read": store.read,
                "sessions_in_range": sum(item.sessions for item in report.items),
            }
        deadline = time.monotonic() + args.max_seconds
        rounds = 0
        while rounds < args.calls and (rounds < 3 or time.monotonic() < deadline):
            for size, call in calls.items():  # every size in turn, under the same load
                began = time.perf_counter_ns()
                call()
                samples[size].append(time.perf_counter_ns() - began)
            rounds += 1
        for size in args.sizes:
            ordered = sorted(samples[size])
            row = figures[case][str(size)]
            row.update(
                median_ms=statistics.median(ordered) / 1e6,
                p90_ms=ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] / 1e6,
                n=len(ordered),
            )
            print(
                f"{size:>9,} sessions | {case:<24} | {row['sessions_in_range']:>6,} in range | "
                f"{row['records_read']:>6,} read | median {row['median_ms']:9.2f} ms | "
                f"p90 {row['p90_ms']:9.2f} ms | n={row['n']}"
            )
    print()
    for case, by_size in figures.items():
        sizes = sorted(by_size, key=int)
        for low in sizes[:-1]:
            ratio = by_size[sizes[-1]]["median_ms"] / by_size[low]["median_ms"]
            print(f"{case}: median at {int(sizes[-1]):,} / at {int(low):,} = {ratio:.2f}")
    common.save("insights", {**info, "args": vars(args)}, {"figures": figures})
    return 0
