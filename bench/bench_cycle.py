"""The session start+end cycle against one durable atomic file write.

In-process timing (``time.perf_counter_ns``) of:

- ``cycle``: ``session_service.start_session`` then ``end_session`` on a real
  store with the real clock and one long-lived ``ChainWatcher`` per dataset
  (as a server holds one);
- ``write``: one ``json_store.write_json`` of a document the size of
  ``go_session.json`` (temp file, fsync, rename, fsync of the dir): the unit
  every durable change costs on the JSON backend;
- with ``--backend postgres`` also ``insert``: one committed single-row INSERT
  transaction of that document on the same database, through the store's
  engine (pool checkout, BEGIN, INSERT, COMMIT): the unit a durable change
  costs there.

on an empty dataset and a filled one: a copy of the cached N-entry data dir
(a copy, so runs do not grow the cache), or the database loaded with the same
N sessions and audit lines (``bench.pg``; the rows a run adds are deleted
afterwards). The operations are interleaved, in a rotating order, so drift in
disk or CPU speed hits them alike.

    .venv/bin/python -m bench.bench_cycle                      # 300 x, 1e6 entries
    .venv/bin/python -m bench.bench_cycle --entries 10000 --iterations 50
    .venv/bin/python -m bench.bench_cycle --backend postgres

Target: the cycle's median at N entries <= 1.2 x its median on the empty dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Column, MetaData, Table, Text, event, insert
from sqlalchemy.engine import make_url

from bench.common import begin_run, save_run, wait_quiet
from bench.fill import DEFAULT_ENTRIES, RESULTS_DIR, ensure_filled
from bench.pg import (
    DEFAULT_URL,
    PostgresCpu,
    db_name,
    empty_database,
    ensure_filled_pg,
    libpq,
    restore,
    server_settings,
)
from valhalla_gov.audit.service import verify_chain
from valhalla_gov.auth.service import LOCAL_ACTOR
from valhalla_gov.compose import open_json, open_sql
from valhalla_gov.go import session_service
from valhalla_gov.go.session_store import CURRENT
from valhalla_gov.health.publisher import HealthPublisher
from valhalla_gov.storage.encoding import canonical_json
from valhalla_gov.storage.json_store import read_json, write_json
from valhalla_gov.storage.protocol import Store
from valhalla_gov.storage.sql_backend import SqlStore
from valhalla_gov.timeutil import utc_now

TARGET_RATIO = 1.2


@dataclass
class Op:
    """One timed operation and its samples (nanoseconds): wall clock, and the
    CPU time this thread used (the rest is waiting: for the disk, or for a
    CPU taken by other processes)."""

    name: str
    run: Callable[[], None]
    samples: list[int] = field(default_factory=list)
    cpu_samples: list[int] = field(default_factory=list)

    def timed(self, record: bool) -> int:
        cpu = time.thread_time_ns()
        began = time.perf_counter_ns()
        self.run()
        elapsed = time.perf_counter_ns() - began
        if record:
            self.samples.append(elapsed)
            self.cpu_samples.append(time.thread_time_ns() - cpu)
        return elapsed


def percentile(values: list[int], q: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank] / 1e6


def cycle_op(name: str, store: Store) -> Op:
    light = HealthPublisher(store=store, clock=utc_now)  # one per process, as the server's

    def run() -> None:
        session_service.start_session(
            store=store,
            clock=utc_now,
            actor=LOCAL_ACTOR,
            notes="bench start",
            health=light.current(),
        )
        session_service.end_session(
            store=store, clock=utc_now, actor=LOCAL_ACTOR, notes="bench end", health=light.current()
        )

    return Op(name, run)


def write_op(name: str, directory: Path, doc: Any) -> Op:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "go_session.json"
    return Op(name, lambda: write_json(target, doc))


@contextmanager
def patched_fsync(*, skip: bool = False) -> Iterator[dict[str, int]]:
    """Count fsync calls on files and on directories while the block runs.

    With ``skip`` they are not performed: what is left of a cycle's time is
    its CPU and plain system-call cost, the rest is waiting for the disk.
    """
    counts = {"file": 0, "dir": 0}
    real = os.fsync

    def counted(fd: Any) -> None:
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        counts[kind] += 1
        if not skip:
            real(fd)

    os.fsync = counted
    try:
        yield counts
    finally:
        os.fsync = real


# The INSERT baseline's own table, created in each bench database and dropped after.
_INSERTS = Table("bench_insert", MetaData(), Column("body", Text, nullable=False))


def insert_op(name: str, store: SqlStore, doc: Any) -> Op:
    with psycopg.connect(libpq(store.url), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_insert")
        conn.execute("CREATE TABLE bench_insert (id bigserial PRIMARY KEY, body text NOT NULL)")
    body = canonical_json(doc)

    def run() -> None:
        with store.engine.begin() as conn:
            conn.execute(insert(_INSERTS).values(body=body))

    return Op(name, run)


def drop_inserts(url: str) -> None:
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_insert")


def without_commit_flush(url: str) -> str:
    """The URL with ``synchronous_commit=off`` for its sessions only: COMMIT
    returns before the WAL is flushed (the SQL analogue of stubbing fsync)."""
    return (
        make_url(url)
        .update_query_dict({"options": "-c synchronous_commit=off"})
        .render_as_string(hide_password=False)
    )


@contextmanager
def counted_sql(store: SqlStore) -> Iterator[dict[str, int]]:
    """Statements, COMMITs and pool checkouts of the store while the block runs."""
    counts = {"statements": 0, "commits": 0, "checkouts": 0}

    def statement(*_: Any) -> None:
        counts["statements"] += 1

    def commit(*_: Any) -> None:
        counts["commits"] += 1

    def checkout(*_: Any) -> None:
        counts["checkouts"] += 1

    hooks: list[tuple[Any, str, Callable[..., None]]] = [
        (store.engine, "before_cursor_execute", statement),
        (store.engine, "commit", commit),
        (store.engine.pool, "checkout", checkout),
    ]
    for target, name, fn in hooks:
        event.listen(target, name, fn)
    try:
        yield counts
    finally:
        for target, name, fn in hooks:
            event.remove(target, name, fn)


def wal_bytes(url: str, run: Callable[[], None]) -> int:
    """WAL the server wrote while ``run`` ran (other sessions' writes included)."""
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        before = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
        run()
        row = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", (before[0] if before else 0,)
        ).fetchone()
    return int(row[0]) if row else 0


def interleave(ops: list[Op], iterations: int) -> None:
    for i in range(iterations):
        k = i % len(ops)
        for op in ops[k:] + ops[:k]:
            op.timed(record=True)


def run_json(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    empty = work / "empty"
    empty.mkdir()
    datasets = [("empty", empty)]
    if not args.skip_filled:
        cached = ensure_filled(args.entries)
        filled = work / "filled"
        began = time.perf_counter()
        shutil.copytree(cached, filled)
        print(f"copied the cached dir to {filled} in {time.perf_counter() - began:.1f} s")
        datasets.append(("filled", filled))
    cycles = [cycle_op(f"cycle {name}", open_json(data_dir)) for name, data_dir in datasets]
    # Warm the cycles first: imports, the watchers' first anchoring scan.
    for _ in range(args.warmup):
        for op in cycles:
            op.timed(record=False)
    # The write baseline uses the real current document (an ended session).
    doc = read_json(empty / "go_session.json")
    writes = [write_op(f"write {name}", work / f"write-{name}", doc) for name, _ in datasets]
    for op in writes:
        for _ in range(args.warmup):
            op.timed(record=False)
    # Flush the dirty pages of the copy and warm-up, so background writeback
    # does not slow the journal commits the timed fsyncs wait for.
    os.sync()
    time.sleep(1)
    quiet = wait_quiet(args.wait_quiet)
    print(f"before the timed runs: {quiet}")
    interleave(cycles + writes, args.iterations)
    with patched_fsync() as per_cycle:
        cycles[0].run()
    with patched_fsync() as per_write:
        writes[0].run()
    # Last, as it leaves unsynced pages behind: the same cycles without fsync.
    no_flush: dict[str, float] = {}
    with patched_fsync(skip=True):
        for op in cycles:
            runs = [op.timed(record=False) for _ in range(max(10, args.iterations // 3))]
            no_flush[op.name] = statistics.median(runs) / 1e6
    for name, data_dir in datasets:
        check = verify_chain(store=open_json(data_dir)) if args.verify else None
        if check is not None and not check.ok:
            raise SystemExit(f"audit chain of {name} broken after the bench: {check}")
    print(
        f"\nfsyncs per cycle: {per_cycle['file']} file + {per_cycle['dir']} dir;"
        f" per write: {per_write['file']} file + {per_write['dir']} dir"
    )
    names = [name for name, _ in datasets]
    baselines = {name: [(f"write {name}", "cycle/write")] for name in names}
    result = report(args, names, cycles + writes, baselines, no_flush, doc, {}, "fsync stubbed")
    return {
        **result,
        "fsyncs_per_cycle": per_cycle,
        "fsyncs_per_write": per_write,
        "before": quiet,
    }


def _sql_costs(url: str, store: SqlStore, op: Op) -> dict[str, int]:
    """Statements, COMMITs, pool checkouts and WAL bytes of one run of ``op``
    (the median WAL of five runs: other sessions may write meanwhile)."""
    with counted_sql(store) as counts:
        op.run()
    wal = sorted(wal_bytes(url, op.run) for _ in range(5))[2]
    return {**counts, "wal_bytes": wal}


def _db_cpu_ms(ops: list[Op], runs: int) -> dict[str, float]:
    """PostgreSQL CPU per run, from blocks of ``runs`` consecutive runs
    (clock-tick resolution, and every database on the server counts)."""
    pg = PostgresCpu()
    result: dict[str, float] = {}
    for op in ops:
        before = pg.seconds()
        for _ in range(runs):
            op.run()
        after = pg.seconds()
        if before is not None and after is not None:
            result[op.name] = (after - before) / runs * 1000
    return result


def _no_flush_pg(urls: dict[str, str], cycles: list[Op], runs: int) -> dict[str, float]:
    """Median cycle with COMMIT not waiting for the WAL flush, per database."""
    result: dict[str, float] = {}
    for url, cycle in zip(urls.values(), cycles, strict=True):
        store = open_sql(without_commit_flush(url))
        try:
            op = cycle_op(cycle.name, store)
            for _ in range(3):
                op.run()
            result[op.name] = statistics.median(op.timed(record=False) for _ in range(runs)) / 1e6
        finally:
            store.close()
    return result


def _verify_all(stores: dict[str, SqlStore]) -> None:
    for name, store in stores.items():
        check = verify_chain(store=store)
        if not check.ok:
            raise SystemExit(f"audit chain of {name} broken after the bench: {check}")


def run_postgres(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    urls = {"empty": empty_database(args.database_url)}
    if not args.skip_filled:
        urls["filled"] = ensure_filled_pg(args.database_url, args.entries, verify=args.verify)
    stores = {name: open_sql(url) for name, url in urls.items()}
    try:
        cycles = [cycle_op(f"cycle {name}", store) for name, store in stores.items()]
        for _ in range(args.warmup):
            for op in cycles:
                op.timed(record=False)
        doc = stores["empty"].read_document(CURRENT)  # an ended session
        inserts = [insert_op(f"insert {name}", store, doc) for name, store in stores.items()]
        write = write_op("write", work / "write", doc)
        for op in [*inserts, write]:
            for _ in range(args.warmup):
                op.timed(record=False)
        os.sync()
        time.sleep(1)
        quiet = wait_quiet(args.wait_quiet)
        print(f"before the timed runs: {quiet}")
        interleave([*cycles, *inserts, write], args.iterations)
        costs = {
            "cycle": _sql_costs(urls["empty"], stores["empty"], cycles[0]),
            "insert": _sql_costs(urls["empty"], stores["empty"], inserts[0]),
        }
        db_cpu = _db_cpu_ms([*cycles, *inserts], max(20, args.iterations // 5))
        no_flush = _no_flush_pg(urls, cycles, max(10, args.iterations // 3))
        if args.verify:
            _verify_all(stores)
    finally:
        for name, store in stores.items():
            store.close()
            drop_inserts(urls[name])
        if "filled" in urls:
            print(
                f"deleted the {restore(urls['filled']):,} rows the run added to the loaded database"
            )
    for what, c in costs.items():
        print(
            f"\nper {what}: {c['statements']} SQL statements, {c['commits']} COMMITs,"
            f" {c['checkouts']} pool checkouts, ~{c['wal_bytes']:,} WAL bytes"
        )
    baselines = {
        name: [(f"insert {name}", "cycle/insert"), ("write", "cycle/write")] for name in urls
    }
    result = report(
        args,
        list(urls),
        [*cycles, *inserts, write],
        baselines,
        no_flush,
        doc,
        db_cpu,
        "synchronous_commit=off",
    )
    return {
        **result,
        "databases": {name: db_name(url) for name, url in urls.items()},
        "sql_costs": costs,
        "db_cpu_ms": db_cpu,
        "before": quiet,
    }


def report(
    args: argparse.Namespace,
    names: list[str],
    ops: list[Op],
    baselines: dict[str, list[tuple[str, str]]],
    no_flush: dict[str, float],
    doc: Any,
    db_cpu: dict[str, float],
    no_flush_label: str,
) -> dict[str, Any]:
    figures = {
        op.name: {
            "median_ms": statistics.median(op.samples) / 1e6,
            "p90_ms": percentile(op.samples, 0.9),
            "min_ms": min(op.samples) / 1e6,
            "cpu_median_ms": statistics.median(op.cpu_samples) / 1e6,
            "n": len(op.samples),
        }
        for op in ops
    }
    doc_bytes = len(json.dumps(doc, ensure_ascii=False, indent=2)) + 1
    print(
        f"\n{args.iterations} timed iterations after {args.warmup} warm-up; doc {doc_bytes} bytes"
    )
    print(f"filled = the {args.entries:,}-entry dataset ({args.backend})")
    db = " DB CPU ms (mean) |" if db_cpu else ""
    print(
        f"\n| dataset | op | median ms | p90 ms | CPU ms (median) |{db} ratio (median)"
        f" | median ms, {no_flush_label} |"
    )
    print("|---|---|---:|---:|---:|" + ("---:|" if db_cpu else "") + "---|---:|")
    ratios: dict[str, dict[str, float]] = {}
    rows: list[tuple[str, str, str, str]] = []  # dataset, op, ratio cell, no-flush cell
    shared: list[str] = []  # baselines of every dataset (the file write on postgres)
    for name in names:
        cyc = figures[f"cycle {name}"]
        ratios[name] = {
            label: cyc["median_ms"] / figures[base]["median_ms"] for base, label in baselines[name]
        }
        ratio_text = ", ".join(f"{k} {v:.1f}" for k, v in ratios[name].items())
        rows.append((name, f"cycle {name}", ratio_text, f"{no_flush[f'cycle {name}']:.2f}"))
        for base, _ in baselines[name]:
            if base.endswith(f" {name}"):
                rows.append((name, base, "", ""))
            elif base not in shared:
                shared.append(base)
    rows.extend(("file system", base, "", "") for base in shared)
    for dataset, op_name, ratio_cell, flush_cell in rows:
        fig = figures[op_name]
        label = "start+end" if op_name.startswith("cycle") else op_name.split()[0]
        db_cell = f" {db_cpu[op_name]:.2f} |" if op_name in db_cpu else (" |" if db_cpu else "")
        print(
            f"| {dataset} | {label} | {fig['median_ms']:.2f} | {fig['p90_ms']:.2f}"
            f" | {fig['cpu_median_ms']:.2f} |{db_cell} {ratio_cell} | {flush_cell} |"
        )
    result: dict[str, Any] = {
        "figures": figures,
        "ratios": ratios,
        "cycle_median_ms_without_flush": no_flush,
        "write_doc_bytes": doc_bytes,
    }
    if len(names) == 2:
        small, big = (figures[f"cycle {name}"] for name in names)
        growth = big["median_ms"] / small["median_ms"]
        growth_p90 = big["p90_ms"] / small["p90_ms"]
        met = growth <= TARGET_RATIO
        print(
            f"\ncycle at {args.entries:,} entries / empty: median {growth:.3f},"
            f" p90 {growth_p90:.3f} (target <= {TARGET_RATIO}: {'MET' if met else 'NOT MET'})"
        )
        result.update(filled_over_empty=growth, filled_over_empty_p90=growth_p90, target_met=met)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="start+end cycle vs one durable write.")
    parser.add_argument("--backend", choices=("json", "postgres"), default="json")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_URL,
        help="server and name prefix of the scratch databases (postgres only; see bench/pg.py)",
    )
    parser.add_argument("--entries", type=int, default=DEFAULT_ENTRIES, help="filled dataset's N")
    parser.add_argument("--iterations", type=int, default=300, help="timed runs of each op")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs of each op first")
    parser.add_argument(
        "--wait-quiet", type=float, default=0.0, help="wait up to S s for an idle machine first"
    )
    parser.add_argument("--skip-filled", action="store_true", help="empty dataset only")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="verify_chain on the datasets (postgres: also on the load); slow at 1e6",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir for inspection")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.warmup < 1:
        parser.error("--iterations and --warmup must be >= 1")
    postgres = server_settings(args.database_url) if args.backend == "postgres" else None
    header = begin_run(RESULTS_DIR, postgres)
    # Under bench/results: the same file system as the cache, so fsync costs compare.
    work = Path(tempfile.mkdtemp(prefix="cycle-", dir=RESULTS_DIR))
    try:
        result = run_postgres(args, work) if args.backend == "postgres" else run_json(args, work)
    finally:
        if args.keep:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    save_run(RESULTS_DIR, f"cycle-{args.backend}", args, header, result)
    return 0 if result.get("target_met", True) else 1


if __name__ == "__main__":
    sys.exit(main())
