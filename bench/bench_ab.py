"""Two checkouts side by side: which one a user waits less for.

``bench_writes`` measures one checkout against its floors; comparing two of
its runs mixes in how the shared machine's speed moved between them. Here
both servers run at once (each on its own data dir or scratch database, both
pinned to CPU 0, this client to CPU 1) and blocks of the same operation
alternate between them, so both see the same machine. Reported: the median
per-operation time of each block, the median over the blocks, and
after / before.

    .venv/bin/python -m bench.bench_ab --before /tmp/old/src --op pair
    .venv/bin/python -m bench.bench_ab --before /tmp/old/src --op pair --backend postgres
    .venv/bin/python -m bench.bench_ab --before /tmp/old/src --op get --rounds 8

``--op``: ``pair`` (start + end), ``complete`` (a step done and undone in
turn, no session), ``get`` (GET /core/go/session), ``ryg`` (GET /core/status/ryg).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.bench_writes import STEP, VENV_BIN, Client, _free_port, _pin, _served
from bench.common import load_text, source_state


def _operation(op: str, client: Client) -> Callable[[int], float]:
    def pair(_: int) -> float:
        start = client.call("POST", "/core/go/start_session", {})
        return start + client.call("POST", "/core/go/end_session", {})

    def complete(n: int) -> float:
        return client.call("POST", "/core/go/complete", {"step_id": STEP, "done": n % 2 == 0})

    def get(_: int) -> float:
        return client.call("GET", "/core/go/session")

    def ryg(_: int) -> float:
        return client.call("GET", "/core/status/ryg")

    return {"pair": pair, "complete": complete, "get": get, "ryg": ryg}[op]


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="valhalla-bench-ab-", dir=args.tmp))
    base = {k: v for k, v in os.environ.items() if not k.startswith("VALHALLA_")}
    base["VALHALLA_RATE_LIMIT_START_SESSION"] = "100000/minute"
    base["VALHALLA_RATE_LIMIT_WRITES"] = "100000/minute"
    sides: dict[str, dict[str, str]] = {
        "before": {**base, "PYTHONPATH": args.before},
        "after": {**base, **({"PYTHONPATH": args.after} if args.after else {})},
    }
    if args.backend == "postgres":
        from bench.pg import DEFAULT_URL, derived_url, reset_schema

        for name, env in sides.items():
            url = derived_url(args.database_url or DEFAULT_URL, f"ab_{name}")
            reset_schema(url)
            env["VALHALLA_DATABASE_URL"] = url
    if len(_pin(1)):
        os.sched_setaffinity(0, {1})
    blocks: dict[str, list[float]] = {name: [] for name in sides}
    with contextlib.ExitStack() as servers:
        ops: dict[str, Callable[[int], float]] = {}
        for name, env in sides.items():
            port = _free_port()
            cmd = [str(VENV_BIN / "valhalla"), "serve", "--port", str(port)]
            cmd += ["--data-dir", str(work / name), "--workers", "1", "--log-level", "warning"]
            servers.enter_context(_served(_pin(0) + cmd, env, port, work / f"{name}.log"))
            ops[name] = _operation(args.op, Client(port))
        for op in ops.values():  # warm both (imports, caches, the pool)
            for n in range(args.warmup):
                op(n)
        for _ in range(args.rounds):
            for name, op in ops.items():
                times = [op(n) for n in range(args.iterations)]
                blocks[name].append(statistics.median(times))
    shutil.rmtree(work, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in blocks.items()}
    return {
        "backend": args.backend,
        "op": args.op,
        "before": args.before,
        "after": args.after or source_state(),
        "load": load_text(),
        "rounds": args.rounds,
        "iterations": args.iterations,
        "block_p50_ms": {k: [round(x, 3) for x in v] for k, v in blocks.items()},
        "median_ms": {k: round(v, 3) for k, v in medians.items()},
        "after / before": round(medians["after"] / medians["before"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the other checkout's src/")
    parser.add_argument("--after", default=None, help="this checkout's src/ by default")
    parser.add_argument("--backend", choices=["json", "postgres"], default="json")
    parser.add_argument("--database-url", default=None, help="PostgreSQL server and name prefix")
    parser.add_argument("--op", choices=["pair", "complete", "get", "ryg"], default="pair")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--tmp", default=None, help="scratch dir (the data dirs' file system)")
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
