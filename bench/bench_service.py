"""Where a JSON start+end's time goes, in process: the services alone
against the raw durable writes they must make, in one run.

Not a target figure (those are over HTTP, ``bench.bench_writes``): this tells
how much of the pair is the services' own CPU, which no change to the HTTP
path can remove. Interleaved rounds of:

- ``service``: ``session_service.start_session`` + ``end_session`` on a JSON
  data dir (real fsyncs), one long-lived ChainWatcher as a server holds;
- ``service, no fsync``: the same with fsync replaced by a no-op (the
  services' CPU without the disk's waits);
- ``raw``: the floor's writes (``bench_writes.Floor``: replace, append,
  append, replace, append, with fsync).

Each with wall time and this process's user and system CPU per pair.

    .venv/bin/python -m bench.bench_service
    .venv/bin/python -m bench.bench_service --pairs 500 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.bench_writes import Floor
from bench.common import load_text, source_state
from valhalla_gov.audit.service import ChainWatcher
from valhalla_gov.compose import open_json
from valhalla_gov.go import session_service
from valhalla_gov.storage import json_store
from valhalla_gov.timeutil import utc_now


def _measure(op: Callable[[], None], pairs: int) -> dict[str, float]:
    before, began = os.times(), time.perf_counter()
    for _ in range(pairs):
        op()
    wall, after = time.perf_counter() - began, os.times()
    return {
        "wall_ms": wall / pairs * 1000,
        "user_ms": (after.user - before.user) / pairs * 1000,
        "sys_ms": (after.system - before.system) / pairs * 1000,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="valhalla-bench-service-", dir=args.tmp))
    store = open_json(work / "data")
    watcher = ChainWatcher()
    (work / "floor").mkdir()
    floor = Floor(work / "floor")

    def pair() -> None:
        session_service.start_session(
            store=store, clock=utc_now, actor="bench", notes=None, watcher=watcher
        )
        session_service.end_session(
            store=store, clock=utc_now, actor="bench", notes=None, watcher=watcher
        )

    real_fsync = json_store.FileOps.fsync

    def pair_without_fsync() -> None:
        json_store.FileOps.fsync = lambda self, fd: None  # type: ignore[method-assign]
        try:
            pair()
        finally:
            json_store.FileOps.fsync = real_fsync  # type: ignore[method-assign]

    def raw() -> None:
        floor.replace()
        floor.append()
        floor.append()
        floor.replace()
        floor.append()

    ops = {"service": pair, "service, no fsync": pair_without_fsync, "raw": raw}
    for op in ops.values():  # imports, caches
        for _ in range(50):
            op()
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in ops}
    for _ in range(args.rounds):
        for name, op in ops.items():
            samples[name].append(_measure(op, args.pairs))
    medians = {
        name: {k: round(statistics.median(s[k] for s in runs), 3) for k in runs[0]}
        for name, runs in samples.items()
    }
    return {
        "code": source_state(),
        "load": load_text(),
        "pairs_per_round": args.pairs,
        "rounds": args.rounds,
        "per_pair_median": medians,
        "service wall / raw wall": round(
            medians["service"]["wall_ms"] / medians["raw"]["wall_ms"], 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tmp", default=None, help="scratch dir (the data dir's file system)")
    args = parser.parse_args()
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
