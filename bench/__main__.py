"""``python -m bench <name> [options]``: the one entry point of the benchmarks.

``python -m bench --help`` lists them; ``python -m bench <name> --help`` tells
one's options. ``guardrails`` runs the ones with a guardrail and prints every
verdict in one table (``make bench``).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Callable

from bench import common

# name: (module, what it measures). Each module has main(argv) -> exit code.
BENCHES: dict[str, tuple[str, str]] = {
    "guardrails": ("bench.__main__", "every guardrail below, one verdict table (make bench)"),
    "writes": (
        "bench.bench_writes",
        "start+end over HTTP vs the disk floor, on empty and N-entry data [guardrails]",
    ),
    "reads": (
        "bench.bench_reads",
        "GET /core/go/session vs the framework-only GET, under wrk [guardrails]",
    ),
    "verify": (
        "bench.bench_verify",
        "`valhalla audit verify` vs raw SHA-256 over the same log [guardrail]",
    ),
    "cli": ("bench.bench_cli", "wall time of every local valhalla command vs `python -c pass`"),
    "pages": ("bench.bench_pages", "one history or audit page at 1e3, 1e5 and 1e6 rows"),
    "insights": ("bench.bench_insights", "GET /core/go/insights at 1e3, 1e5 and 1e6 sessions"),
    "webhooks": ("bench.bench_webhooks", "write latency with webhooks up, slow and down"),
    "growth": ("bench.bench_growth", "disk, verify, start-up, memory and backup at 1e6 and 1e7"),
    "fill": ("bench.fill", "build (or reuse) the N-entry data dir the benchmarks use"),
    "pg": ("bench.pg", "load (or reuse) the N-entry PostgreSQL database"),
}


def guardrails(argv: list[str]) -> int:
    """Run writes, reads and verify (both backends by default) and sum up."""
    from bench import bench_reads, bench_verify, bench_writes
    from bench.pg import DEFAULT_URL

    parser = argparse.ArgumentParser(
        prog="python -m bench guardrails",
        description="Every guardrail, measured in turn; one verdict table at the end.",
    )
    parser.add_argument("--backend", choices=("json", "postgres", "both"), default="both")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--entries", type=int, default=1_000_000, help="writes' filled dataset")
    parser.add_argument("--verify-entries", type=int, default=500_000, help="verify's log")
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds and shorter runs (a smoke run)"
    )
    common.add_common(parser)
    args = parser.parse_args(argv)
    backends = ["json", "postgres"] if args.backend == "both" else [args.backend]
    shared = ["--wait-quiet", str(args.wait_quiet)]
    rows: list[common.Guardrail] = []
    for backend in backends:
        db = ["--backend", backend, "--database-url", args.database_url]
        writes = [*db, *shared, "--entries", str(args.entries)]
        reads = [*db, *shared]
        if args.quick:
            writes += ["--rounds", "2", "--iterations", "20", "--warmup", "5"]
            reads += ["--rounds", "1", "--duration", "2"]
        rows += bench_writes.run(_parsed(bench_writes.add_arguments, writes))
        rows += bench_reads.run(_parsed(bench_reads.add_arguments, reads))
    verify = [*shared, "--entries", str(args.verify_entries)]
    if "postgres" in backends:
        verify += ["--database-url", args.database_url]
    if args.quick:
        verify += ["--rounds", "1"]
    rows += bench_verify.run(_parsed(bench_verify.add_arguments, verify))
    print("\n# all guardrails")
    common.print_guardrails(rows)
    return common.exit_code(rows, args.strict)


def _parsed(add: Callable[[argparse.ArgumentParser], None], argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


def usage() -> str:
    width = max(len(name) for name in BENCHES)
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in BENCHES.items()]
    return (
        "usage: python -m bench <name> [options]   (python -m bench <name> --help)\n\n"
        "Benchmarks of Valhalla GO (docs/dev/performance.md):\n" + "\n".join(lines)
    )


def _stop(signum: int, _frame: object) -> None:
    # A benchmark killed with SIGTERM stops its servers and removes its
    # scratch dirs on the way out, as on Ctrl-C.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop)
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in BENCHES:
        print(f"unknown benchmark {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    if name == "guardrails":
        return guardrails(rest)
    module = importlib.import_module(BENCHES[name][0])
    code: int = module.main(rest)
    return code


if __name__ == "__main__":
    sys.exit(main())
