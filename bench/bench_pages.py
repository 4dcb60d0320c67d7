"""The cost of one history or audit page at 1,000, 100,000 and 1,000,000 rows.

In-process, through the service functions the routes call, timed with
``time.perf_counter_ns``:

- ``GET /core/go/sessions`` (``session_service.list_sessions``, limit 50): the
  first page, and a page from the middle of the history, reached by the
  cursor a client would hold there;
- ``GET /core/audit/events`` (``audit.service.query_events``, limit 100): the
  first page, a page from the middle, and the first page filtered on an
  event: ``GO_SESSION_END`` (every other line of the fill) and
  ``TOKEN_REVOKE`` (absent from the fill: the worst case for a filter).

on the JSON backend (the cached fills of ``bench.fill``) and on PostgreSQL
(the databases of ``bench.pg``). Both hold the same records, so every page
is also checked to be identical on both. Each case runs ``--calls`` times
(at most ``--max-seconds``, at least 3 calls) after a warm-up; median and p90.

    python -m bench pages                  # both backends, 1e3/1e5/1e6
    python -m bench pages --backend json --sizes 1000 100000

Flat means: the median at the largest size <= 1.2 x the median at the smallest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench import common
from bench.common import wait_quiet
from bench.fill import ensure_filled
from bench.pg import DEFAULT_URL, db_name, ensure_filled_pg, libpq, server_settings
from valhalla_gov.audit.service import query_events
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.compose import open_json, open_sql
from valhalla_gov.go.session_service import list_sessions
from valhalla_gov.go.session_store import HISTORY
from valhalla_gov.storage.json_backend import JsonStore
from valhalla_gov.storage.protocol import Store
from valhalla_gov.storage.sql_backend import SqlStore

FLAT = 1.2
SESSION_LIMIT, AUDIT_LIMIT = 50, 100
COMMON_EVENT, ABSENT_EVENT = "GO_SESSION_END", "TOKEN_REVOKE"
CASES = (
    "sessions, first page",
    "sessions, middle page (cursor)",
    "audit, first page",
    "audit, middle page (cursor)",
    f"audit, event={COMMON_EVENT} (1 line in 2)",
    f"audit, event={ABSENT_EVENT} (absent)",
)


@dataclass(frozen=True)
class Cursors:
    """Cursors at the middle of each log, in the backend's own terms."""

    sessions: str
    audit: str


def _line_start_after(path: Path, offset: int) -> tuple[int, dict[str, Any]]:
    """The first line starting at or after ``offset``, and its record."""
    with open(path, "rb") as fh:
        fh.seek(max(0, offset - 1))
        if offset > 0:
            fh.readline()  # the rest of the line ``offset`` falls in
        start = fh.tell()
        record: dict[str, Any] = json.loads(fh.readline())
    return start, record


def json_cursors(store: JsonStore) -> tuple[Cursors, dict[str, Any], dict[str, Any]]:
    """Middle-of-log cursors (byte offsets of a line start) and the records there."""
    history, audit = store.log_path(HISTORY), store.log_path(AUDIT_LOG)
    s_off, s_rec = _line_start_after(history, history.stat().st_size // 2)
    a_off, a_rec = _line_start_after(audit, audit.stat().st_size // 2)
    return Cursors(str(s_off), str(a_off)), s_rec, a_rec


def sql_cursors(url: str, session: dict[str, Any], event: dict[str, Any]) -> Cursors:
    """The same positions on SQL: a session's id, an audit row's id."""
    with psycopg.connect(libpq(url)) as conn:
        row = conn.execute(
            "SELECT id FROM log_records WHERE log = %s AND ts_utc = %s AND body LIKE %s",
            (AUDIT_LOG.name, event["ts_utc"], f'%"hash":"{event["hash"]}"%'),
        ).fetchone()
    if row is None:
        raise RuntimeError(f"audit record seq {event['seq']} is missing from {db_name(url)}")
    return Cursors(str(session["id"]), str(row[0]))


def page_calls(store: Store, cursors: Cursors) -> dict[str, Callable[[], Any]]:
    """Each case as a call returning the page's items (to compare backends)."""
    return dict(
        zip(
            CASES,
            (
                lambda: list_sessions(store=store, limit=SESSION_LIMIT).items,
                lambda: (
                    list_sessions(store=store, limit=SESSION_LIMIT, cursor=cursors.sessions).items
                ),
                lambda: query_events(store=store, limit=AUDIT_LIMIT).items,
                lambda: query_events(store=store, limit=AUDIT_LIMIT, cursor=cursors.audit).items,
                lambda: query_events(store=store, limit=AUDIT_LIMIT, event=COMMON_EVENT).items,
                lambda: query_events(store=store, limit=AUDIT_LIMIT, event=ABSENT_EVENT).items,
            ),
            strict=True,
        )
    )


def time_calls(call: Callable[[], Any], calls: int, max_seconds: float) -> dict[str, float]:
    for _ in range(3):
        call()  # warm-up: caches, the DB pool, prepared statements
    samples: list[int] = []
    deadline = time.monotonic() + max_seconds
    while len(samples) < calls and (len(samples) < 3 or time.monotonic() < deadline):
        began = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - began)
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(samples) / 1e6,
        "p90_ms": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] / 1e6,
        "n": len(samples),
    }


def explain(url: str, session_cursor: str, audit_cursor: str) -> dict[str, str]:
    """PostgreSQL's plan for the queries SqlStore sends for these pages
    (same text as sql_backend's, which fetches batches of 200)."""
    queries = {
        "sessions, middle page": (
            "SELECT id, body FROM go_sessions WHERE active IS false AND id < %s"
            " ORDER BY id DESC LIMIT 200",
            (session_cursor,),
        ),
        "audit, middle page": (
            "SELECT id, body FROM log_records WHERE log = %s AND id < %s"
            " ORDER BY id DESC LIMIT 200",
            (AUDIT_LOG.name, int(audit_cursor)),
        ),
        "audit, event filter": (
            "SELECT id, body FROM log_records WHERE log = %s AND kind = %s"
            " ORDER BY id DESC LIMIT 200",
            (AUDIT_LOG.name, ABSENT_EVENT),
        ),
    }
    plans: dict[str, str] = {}
    with psycopg.connect(libpq(url)) as conn:
        for name, (query, params) in queries.items():
            row = conn.execute(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query}", params
            ).fetchone()
            assert row is not None
            top = row[0][0]
            node = top["Plan"]
            steps = []
            while True:
                steps.append(
                    f"{node['Node Type']}"
                    + (f" on {node['Index Name']}" if "Index Name" in node else "")
                )
                if not node.get("Plans"):
                    break
                node = node["Plans"][0]
            plans[name] = f"{' > '.join(steps)}: {top['Execution Time']:.3f} ms"
    return plans


def run_size(
    backend: str, size: int, args: argparse.Namespace
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    data_dir = ensure_filled(size)
    json_store = open_json(data_dir)
    cursors, session, event = json_cursors(json_store)
    extra: dict[str, Any] = {}
    store: Store = json_store
    sql_store: SqlStore | None = None
    if backend == "postgres":
        url = ensure_filled_pg(args.database_url, size)
        sql_store = open_sql(url)
        store = sql_store
        json_cursor = cursors
        cursors = sql_cursors(url, session, event)
        # Same records on both backends: every page must match the JSON one.
        for (case, sql_call), json_call in zip(
            page_calls(sql_store, cursors).items(),
            page_calls(json_store, json_cursor).values(),
            strict=True,
        ):
            if case.endswith("(absent)") and size > 100_000:
                continue  # a full scan on JSON: compared at the smaller sizes
            if sql_call() != json_call():
                raise RuntimeError(f"{case}: pages differ between JSON and PostgreSQL at {size}")
        extra["plans"] = explain(url, cursors.sessions, cursors.audit)
        extra["database"] = db_name(url)
    try:
        quiet = wait_quiet(args.wait_quiet)
        print(f"\n== {backend}, {size:,} rows: before the runs: {quiet}")
        figures: dict[str, dict[str, float]] = {}
        for case, call in page_calls(store, cursors).items():
            figures[case] = time_calls(call, args.calls, args.max_seconds)
            fig = figures[case]
            print(
                f"   {case:<42} median {fig['median_ms']:8.3f} ms  p90 {fig['p90_ms']:8.3f} ms"
                f"  ({fig['n']} calls)"
            )
        for name, plan in extra.get("plans", {}).items():
            print(f"   plan, {name}: {plan}")
    finally:
        if sql_store is not None:
            sql_store.close()
    return figures, {**extra, "before": quiet}


def print_table(backend: str, sizes: list[int], figures: dict[int, dict[str, Any]]) -> None:
    small, big = sizes[0], sizes[-1]
    head = " | ".join(f"{n:,}: median ms" for n in sizes)
    print(f"\n{backend}:\n\n| page | {head} | p90 ms at {big:,} | {big:,} / {small:,} |")
    print("|---|" + "---:|" * (len(sizes) + 2))
    for case in CASES:
        meds = " | ".join(f"{figures[n][case]['median_ms']:.3f}" for n in sizes)
        ratio = figures[big][case]["median_ms"] / figures[small][case]["median_ms"]
        mark = "" if ratio <= FLAT else " (grows)"
        print(f"| {case} | {meds} | {figures[big][case]['p90_ms']:.3f} | {ratio:.2f}{mark} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench pages", description="One history / audit page at growing sizes."
    )
    parser.add_argument("--backend", choices=("json", "postgres", "both"), default="both")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_URL,
        help="server and name prefix of the scratch databases (see bench/pg.py)",
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1_000, 100_000, 1_000_000], help="rows per log"
    )
    parser.add_argument("--calls", type=int, default=200, help="timed calls per case")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="per case (>= 3 calls)")
    parser.add_argument(
        "--wait-quiet", type=float, default=0.0, help="wait up to S s for an idle machine first"
    )
    args = parser.parse_args(argv)
    if args.calls < 3 or min(args.sizes) < 1 or args.max_seconds <= 0:
        parser.error("need --calls >= 3, --sizes >= 1 and --max-seconds > 0")
    sizes = sorted(set(args.sizes))
    backends = ["json", "postgres"] if args.backend == "both" else [args.backend]
    postgres = server_settings(args.database_url) if "postgres" in backends else None
    info = {**common.header("pages"), "postgres": postgres}
    results: dict[str, Any] = {}
    for backend in backends:
        figures: dict[int, dict[str, Any]] = {}
        extras: dict[int, Any] = {}
        for size in sizes:
            figures[size], extras[size] = run_size(backend, size, args)
        results[backend] = {"figures": figures, "extra": extras}
    for backend in backends:
        print_table(backend, sizes, results[backend]["figures"])
    common.save("pages", {**info, "args": vars(args)}, {"results": results})
    return 0
