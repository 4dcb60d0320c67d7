"""``valhalla audit verify`` against raw SHA-256 over the same bytes.

On the cached data dir of ``bench.fill`` with N chained audit lines (default
500,000) and, with ``--database-url``, on the database ``bench.pg`` loads from
it, times in one run (each ``--rounds`` times, the minimum counts: the run
least disturbed by the machine's other work):

- **raw SHA-256**: ``hashlib.sha256(line).hexdigest()`` of every line of that
  ``audit.log``, read from the file by this process: the floor of any check
  that hashes each line once;
- **CLI**: ``valhalla audit verify`` as a fresh process, start to exit (what
  an operator waits for), and the same command on an empty data dir (its
  start-up share);
- ``verify_chain`` in this process on the same store (what the server's
  ``GET /core/audit/verify`` does).

Speed = raw time / verify time. Guardrail: CLI speed >= 0.3 (verify at most
3.3x the raw hashing).

    python -m bench verify
    python -m bench verify --database-url postgresql+psycopg://postgres@127.0.0.1:5432/valhalla_bench
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import common
from bench.common import Guardrail

LIMIT = 0.3


def raw_hash(path: Path) -> None:
    sha = hashlib.sha256
    with open(path, "rb") as fh:
        for line in fh:
            sha(line).hexdigest()


def best(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def cli(argv: list[str], env: dict[str, str]) -> Callable[[], None]:
    def run() -> None:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(
                f"{' '.join(argv)} exited {done.returncode}: {done.stdout}{done.stderr}"
            )

    return run


def in_process(store: Any, entries: int) -> Callable[[], None]:
    from valhalla_gov.audit.service import verify_chain

    def run() -> None:
        result = verify_chain(store=store)
        if not result.ok or result.events != entries:
            raise SystemExit(f"verify_chain: {result}")

    return run


def run(args: argparse.Namespace) -> list[Guardrail]:
    from bench.fill import ensure_filled
    from valhalla_gov.audit.store import AUDIT_LOG
    from valhalla_gov.compose import open_json, open_sql

    info = common.header("verify")
    data = ensure_filled(args.entries)
    log = data / AUDIT_LOG.file
    url = None
    if args.database_url:
        from bench.pg import ensure_filled_pg

        url = ensure_filled_pg(args.database_url, args.entries)
    env = common.bench_env()
    verify = [common.VALHALLA, "audit", "verify"]
    print(f"# {common.wait_quiet(args.wait_quiet)}")
    print(f"# {args.entries:,} chained events, audit.log {log.stat().st_size / 2**20:.0f} MiB")
    rows: list[tuple[str, float]] = []
    raw = best(lambda: raw_hash(log), args.rounds)
    rows.append(("raw SHA-256 of each line (one process)", raw))
    cli_json = best(cli([*verify, "--data-dir", str(data)], env), args.rounds)
    rows.append(("`valhalla audit verify`, JSON data dir", cli_json))
    scratch = Path(tempfile.mkdtemp(prefix="verify-", dir=common.RESULTS_DIR))
    empty = scratch / "empty"
    subprocess.run([common.VALHALLA, "init", str(empty)], env=env, check=True, capture_output=True)
    start_up = best(cli([*verify, "--data-dir", str(empty)], env), args.rounds)
    rows.append(("`valhalla audit verify`, empty data dir (start-up)", start_up))
    in_json = best(in_process(open_json(data), args.entries), args.rounds)
    rows.append(("verify_chain in process, JSON", in_json))
    cli_pg = None
    if url is not None:
        # The database is the store; the data dir holds only local files.
        pg_env = {**env, "VALHALLA_DATABASE_URL": url}
        cli_pg = best(cli([*verify, "--data-dir", str(empty)], pg_env), args.rounds)
        rows.append(("`valhalla audit verify`, PostgreSQL", cli_pg))
        store = open_sql(url)
        try:
            in_pg = best(in_process(store, args.entries), args.rounds)
        finally:
            store.close()
        rows.append(("verify_chain in process, PostgreSQL", in_pg))
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nbest of {args.rounds}; speed = raw / this\n")
    print("| what | seconds | speed vs raw |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {raw / seconds:.2f} |")
    how = f"`python -m bench verify --entries {args.entries}`"
    guardrails = [
        Guardrail("`audit verify` (JSON) / raw SHA-256", raw / cli_json, LIMIT, True, how)
    ]
    if cli_pg is not None:
        name = "`audit verify` (PostgreSQL) / raw SHA-256"
        guardrails.append(Guardrail(name, raw / cli_pg, LIMIT, True, f"{how} --database-url URL"))
    common.print_guardrails(guardrails)
    common.save(
        "verify",
        {**info, "args": vars(args)},
        {"seconds": dict(rows), "guardrails": common.guardrails_json(guardrails)},
    )
    return guardrails


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--entries", type=int, default=500_000, help="audit events (default 5e5)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each; the minimum counts")
    parser.add_argument(
        "--database-url",
        default=None,
        help="also on PostgreSQL: server and name prefix of the scratch databases (bench/pg.py)",
    )
    common.add_common(parser)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench verify", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.entries < 1 or args.rounds < 1:
        parser.error("--entries and --rounds must be >= 1")
    return common.exit_code(run(args), args.strict)
