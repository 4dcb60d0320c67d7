"""What one page of ``/core/audit/events`` costs at 1,000,000 lines, by filter.

Fills a JSON data dir with N chained audit events (default 1,000,000): GO
session starts and ends, plus one ``RARE_EVENT`` every 100,000 lines. Then
times ``query_events`` (the service behind the route, limit 100) for:

- the unfiltered first page;
- ``event=<absent>`` (a name no line has), ``event=RARE_EVENT`` (10 lines in
  the whole log), ``event=GO_SESSION_END`` (half the lines), first pages;
- a deep page: ``event=GO_SESSION_END`` from a cursor half-way down the log.

Each is timed warm (the same store, after one call; the median of ``--calls``)
and, for the filtered ones, cold: a new store, as a new process would open it,
with the derived kind index on disk (``.audit.log.kinds``) and without it
(rebuilt from the log and written back by that first read).

    .venv/bin/python -m bench.bench_events [--entries 1000000] [--calls 50]

Run it with ``PYTHONPATH=<other checkout>/src`` to time another version on
the same data (the data dir is cached in ``bench/results/events-<N>/``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import load_text, source_state
from bench.fill import _moment, cached_audit_dir
from valhalla_gov.audit.service import query_events
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.compose import open_json
from valhalla_gov.timeutil import new_id

DEFAULT_ENTRIES = 1_000_000
FILL_VERSION = 1
RARE_EVERY = 100_000
_BASE_US = 1_600_000_000_000_000
SIDECAR = f".{AUDIT_LOG.file}.kinds"


def _event(seq: int, micros: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
    if seq % RARE_EVERY == RARE_EVERY // 2:
        return "RARE_EVENT", {"n": str(seq)}
    event = "GO_SESSION_START" if seq % 2 else "GO_SESSION_END"
    return event, {"session_id": new_id(_moment(micros), rng.randbytes(10))}


def fill_dir(entries: int) -> Path:
    return cached_audit_dir(
        f"events-{entries}", FILL_VERSION, entries, _event, seed=2, base_us=_BASE_US
    )


def median_ms(fn: Callable[[], object], calls: int) -> float:
    fn()  # warm: caches, and the index in memory
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def once_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, default=DEFAULT_ENTRIES)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args(argv)
    data = fill_dir(args.entries)
    print(f"measuring {source_state()} ({Path(sys.modules['valhalla_gov'].__file__ or '').parent})")
    print(f"{args.entries:,} audit lines; {load_text()}")
    store = open_json(data)
    half = None
    for n, entry in enumerate(store.scan_log(AUDIT_LOG)):
        if n == args.entries // 2:
            half = entry.cursor
            break

    def page(event: str | None, cursor: str | None = None) -> Callable[[], object]:
        return lambda: query_events(store=store, event=event, limit=100, cursor=cursor)

    cases: list[tuple[str, str | None, str | None]] = [
        ("unfiltered, first page", None, None),
        ("event=<absent>, first page", "NO_SUCH_EVENT", None),
        ("event=RARE_EVENT (10 lines), first page", "RARE_EVENT", None),
        ("event=GO_SESSION_END (half), first page", "GO_SESSION_END", None),
        ("event=GO_SESSION_END, page at mid-log", "GO_SESSION_END", half),
    ]
    rows: list[tuple[str, float, str]] = []
    base = None
    for name, event, cursor in cases:
        if event is not None and event != "NO_SUCH_EVENT" and cursor is None:
            assert query_events(store=store, event=event, limit=100).items, f"no {event} lines"
        warm = median_ms(page(event, cursor), args.calls)
        base = warm if base is None else base
        rows.append((name, warm, f"{warm / base:.2f}"))

    sidecar = data / SIDECAR
    cold: list[tuple[str, float]] = []
    if sidecar.exists():
        fresh = open_json(data)
        cold.append(
            (
                "event=<absent>, new store, index on disk",
                once_ms(lambda: query_events(store=fresh, event="NO_SUCH_EVENT", limit=100)),
            )
        )
        sidecar.rename(sidecar.with_name(SIDECAR + ".bak"))
        try:
            fresh = open_json(data)
            cold.append(
                (
                    "event=<absent>, new store, no index on disk (rebuilt and written)",
                    once_ms(lambda: query_events(store=fresh, event="NO_SUCH_EVENT", limit=100)),
                )
            )
        finally:
            sidecar.with_name(SIDECAR + ".bak").replace(sidecar)
    else:
        fresh = open_json(data)
        cold.append(
            (
                "event=<absent>, new store (this version keeps no index)",
                once_ms(lambda: query_events(store=fresh, event="NO_SUCH_EVENT", limit=100)),
            )
        )

    print(f"\nlimit 100; warm: median of {args.calls} calls on one store")
    print("| page | ms (warm) | vs unfiltered first page |")
    print("|---|---:|---:|")
    for name, ms, ratio in rows:
        print(f"| {name} | {ms:.2f} | {ratio} |")
    print("\n| first filtered read of a new store | ms |")
    print("|---|---:|")
    for name, ms in cold:
        print(f"| {name} | {ms:.0f} |")
    print(f"\nat the end: {load_text()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
