"""The session start+end cycle against one durable atomic file write.

In-process timing (``time.perf_counter_ns``) of:

- ``cycle``: ``session_service.start_session`` then ``end_session`` on a real
  ``JsonStore`` with the real clock and one long-lived ``ChainWatcher`` per
  data dir (as a server holds one);
- ``write``: one ``json_store.write_json`` of a document the size of
  ``go_session.json`` (temp file, fsync, rename, fsync of the dir) on the
  same file system: the unit every durable change costs.

on an empty data dir and on a copy of the cached N-entry dir (a copy, so runs
do not grow the cache). The four operations are interleaved, in a rotating
order, so drift in disk or CPU speed hits them alike.

    .venv/bin/python -m bench.bench_cycle                      # 300 x, 1e6 entries
    .venv/bin/python -m bench.bench_cycle --entries 10000 --iterations 50

Target: the cycle's median at N entries <= 1.2 x its median on the empty dir.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import load_text, machine_text, source_state, wait_quiet
from bench.fill import DEFAULT_ENTRIES, RESULTS_DIR, ensure_filled
from valhalla_gov.audit.service import ChainWatcher, verify_chain
from valhalla_gov.context import LOCAL_ACTOR
from valhalla_gov.go import session_service
from valhalla_gov.storage.json_backend import JsonStore
from valhalla_gov.storage.json_store import read_json, write_json
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


def cycle_op(name: str, data_dir: Path) -> Op:
    store = JsonStore(data_dir)
    watcher = ChainWatcher()  # one per process, reused, as the server's

    def run() -> None:
        session_service.start_session(
            store=store, clock=utc_now, actor=LOCAL_ACTOR, notes="bench start", watcher=watcher
        )
        session_service.end_session(
            store=store, clock=utc_now, actor=LOCAL_ACTOR, notes="bench end", watcher=watcher
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


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
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
    ops: list[Op] = []
    for name, data_dir in datasets:
        ops.append(cycle_op(f"cycle {name}", data_dir))
    # Warm the cycles first: imports, the watchers' first anchoring scan.
    for _ in range(args.warmup):
        for op in ops:
            op.timed(record=False)
    # The write baseline uses the real current document (an ended session).
    doc = read_json(empty / "go_session.json")
    for name, _ in datasets:
        ops.append(write_op(f"write {name}", work / f"write-{name}", doc))
    for op in ops[len(datasets) :]:
        for _ in range(args.warmup):
            op.timed(record=False)
    # Flush the dirty pages of the copy and warm-up, so background writeback
    # does not slow the journal commits the timed fsyncs wait for.
    os.sync()
    time.sleep(1)
    quiet = wait_quiet(args.wait_quiet)
    print(f"before the timed runs: {quiet}")
    for i in range(args.iterations):
        k = i % len(ops)
        for op in ops[k:] + ops[:k]:
            op.timed(record=True)
    with patched_fsync() as per_cycle:
        ops[0].run()
    with patched_fsync() as per_write:
        ops[len(datasets)].run()
    # Last, as it leaves unsynced pages behind: the same cycles without fsync.
    no_fsync: dict[str, float] = {}
    with patched_fsync(skip=True):
        for op in ops[: len(datasets)]:
            runs = [op.timed(record=False) for _ in range(max(10, args.iterations // 3))]
            no_fsync[op.name] = statistics.median(runs) / 1e6
    for name, data_dir in datasets:
        check = verify_chain(store=JsonStore(data_dir)) if args.verify else None
        if check is not None and not check.ok:
            raise SystemExit(f"audit chain of {name} broken after the bench: {check}")
    return {**report(args, datasets, ops, per_cycle, per_write, no_fsync, doc), "before": quiet}


def report(
    args: argparse.Namespace,
    datasets: list[tuple[str, Path]],
    ops: list[Op],
    per_cycle: dict[str, int],
    per_write: dict[str, int],
    no_fsync: dict[str, float],
    doc: Any,
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
        f"\n{args.iterations} timed iterations after {args.warmup} warm-up;"
        f" write doc {doc_bytes} bytes; fsyncs per cycle: {per_cycle['file']} file +"
        f" {per_cycle['dir']} dir; per write: {per_write['file']} file + {per_write['dir']} dir"
    )
    print(f"\nfilled = a copy of the {args.entries:,}-entry dir")
    print(
        "\n| data dir | op | median ms | p90 ms | CPU ms (median) | cycle/write (median)"
        " | median ms, fsync stubbed |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    ratios: dict[str, float] = {}
    for name, _ in datasets:
        cyc, wr = figures[f"cycle {name}"], figures[f"write {name}"]
        ratios[name] = cyc["median_ms"] / wr["median_ms"]
        print(
            f"| {name} | start+end | {cyc['median_ms']:.2f} | {cyc['p90_ms']:.2f}"
            f" | {cyc['cpu_median_ms']:.2f} | | {no_fsync[f'cycle {name}']:.2f} |"
        )
        print(
            f"| {name} | write_json | {wr['median_ms']:.2f} | {wr['p90_ms']:.2f}"
            f" | {wr['cpu_median_ms']:.2f} | {ratios[name]:.2f} | |"
        )
    result: dict[str, Any] = {
        "figures": figures,
        "cycle_over_write": ratios,
        "fsyncs_per_cycle": per_cycle,
        "fsyncs_per_write": per_write,
        "cycle_median_ms_without_fsync": no_fsync,
        "write_doc_bytes": doc_bytes,
    }
    if len(datasets) == 2:
        base, big = (figures[f"cycle {name}"] for name, _ in datasets)
        growth = big["median_ms"] / base["median_ms"]
        growth_p90 = big["p90_ms"] / base["p90_ms"]
        met = growth <= TARGET_RATIO
        print(
            f"\ncycle at {args.entries:,} entries / empty: median {growth:.3f},"
            f" p90 {growth_p90:.3f} (target <= {TARGET_RATIO}: {'MET' if met else 'NOT MET'})"
        )
        result.update(filled_over_empty=growth, filled_over_empty_p90=growth_p90, target_met=met)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="start+end cycle vs one durable write.")
    parser.add_argument("--entries", type=int, default=DEFAULT_ENTRIES, help="filled dir's N")
    parser.add_argument("--iterations", type=int, default=300, help="timed runs of each op")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs of each op first")
    parser.add_argument(
        "--wait-quiet", type=float, default=0.0, help="wait up to S s for an idle machine first"
    )
    parser.add_argument("--skip-filled", action="store_true", help="empty data dir only")
    parser.add_argument(
        "--verify", action="store_true", help="verify_chain on both dirs afterwards (slow at 1e6)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir for inspection")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.warmup < 1:
        parser.error("--iterations and --warmup must be >= 1")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    source = source_state()
    machine = machine_text(RESULTS_DIR)
    print(f"measuring {source}\n{machine}")
    print(f"at the start: {load_text()}")
    # Under bench/results: the same file system as the cache, so fsync costs compare.
    work = Path(tempfile.mkdtemp(prefix="cycle-", dir=RESULTS_DIR))
    try:
        result = run(args, work)
    finally:
        if args.keep:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nat the end: {load_text()}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"cycle-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "args": vars(args),
                "source": source,
                "machine": machine,
                "machine_at_end": load_text(),
                **result,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nraw figures: {out}")
    return 0 if result.get("target_met", True) else 1


if __name__ == "__main__":
    sys.exit(main())
