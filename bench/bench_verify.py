"""How fast ``valhalla audit verify`` walks a long chain, against raw SHA-256.

Fills N chained audit events (the record ``log_event`` writes, hashed with
``chain_hash``; default 500,000) into a data dir and, with ``--database-url``,
into a PostgreSQL scratch database, then times in one run:

- **raw**: ``hashlib.sha256(line).hexdigest()`` for every line of the same
  ``audit.log``, read from the file in one process (the floor: every verify
  hashes each line once);
- **in process**: ``verify_chain`` on the store (JSON dir or PostgreSQL), as
  a server's route runs it;
- **CLI**: ``valhalla audit verify`` as a fresh process, end to end (a direct
  read: it opens the store itself, builds no app), and the same command on
  an empty data dir or database (its start-up share).

Each is run ``--rounds`` times; the figure is the minimum (the least
disturbed run). The ratios are speeds: raw time / verify time (the issue's
target is CLI ≥ 0.3, that is verify ≤ 3.3x the raw hashing). CPU seconds are
printed too: on a shared machine they are the steadier figure.

    .venv/bin/python -m bench.bench_verify                      # JSON, 500,000 events
    .venv/bin/python -m bench.bench_verify --database-url postgresql+psycopg://postgres@127.0.0.1:5432/valhalla_bench

The filled dir is cached in ``bench/results/verify-<N>/`` and the database is
``<name>_verify_<N>`` (created with the marker of ``bench/pg.py``; loaded once
with COPY and kept).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench.common import load_text, source_state, wait_quiet
from bench.fill import _moment, cached_audit_dir
from bench.pg import derived_url, ensure_database, libpq, reset_schema
from valhalla_gov.audit.service import verify_chain
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.compose import open_json, open_sql, upgrade_database
from valhalla_gov.timeutil import new_id

BIN = Path(sys.executable).parent
DEFAULT_ENTRIES = 500_000
# Bump when the generated lines change, so stale caches are rebuilt.
FILL_VERSION = 1
_BASE_US = 1_700_000_000_000_000


def _event(seq: int, micros: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
    start = seq % 2 == 1
    payload: dict[str, Any] = {
        "session_id": new_id(_moment(micros), rng.randbytes(10)),
        "notes": f"bench session {seq // 2} {'start' if start else 'end'}",
    }
    if not start:
        payload["duration_seconds"] = round(rng.uniform(30, 200), 6)
    return ("GO_SESSION_START" if start else "GO_SESSION_END"), payload


def fill_dir(entries: int) -> Path:
    """The cached data dir holding ``entries`` chained audit events (built once)."""
    return cached_audit_dir(
        f"verify-{entries}", FILL_VERSION, entries, _event, seed=1, base_us=_BASE_US
    )


def load_pg(base_url: str, data: Path, entries: int) -> str:
    """``<name>_verify_<N>`` holding the same lines as rows (COPY, once)."""
    url = derived_url(base_url, f"verify_{entries}")
    ensure_database(url)
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        row = (
            conn.execute(
                "SELECT count(*) FROM log_records WHERE log = %s", (AUDIT_LOG.name,)
            ).fetchone()
            if _has_table(conn)
            else None
        )
    if row is not None and row[0] == entries:
        upgrade_database(url)  # a kept database, brought to this version's schema
        return url
    print(f"loading {entries:,} rows into the scratch database (COPY, cached) ...")
    reset_schema(url)
    import orjson

    with (
        psycopg.connect(libpq(url)) as conn,
        conn.cursor() as cur,
        cur.copy("COPY log_records (log, kind, ts_utc, body) FROM STDIN") as copy,
        open(data / AUDIT_LOG.file, encoding="utf-8") as lines,
    ):
        for line in lines:
            body = line.rstrip("\n")
            record = orjson.loads(body)
            copy.write_row((AUDIT_LOG.name, record["event"], record["ts_utc"], body))
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) log_records")
    return url


def _has_table(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('public.log_records')").fetchone()
    return row is not None and row[0] is not None


def raw_hash(path: Path) -> None:
    sha = hashlib.sha256
    with open(path, "rb") as fh:
        for line in fh:
            sha(line).hexdigest()


def timed(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Minimum wall and minimum CPU seconds (this process) over ``rounds``."""
    walls, cpus = [], []
    for _ in range(rounds):
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def timed_cli(argv: list[str], env: dict[str, str], rounds: int) -> tuple[float, float]:
    """Minimum wall and minimum CPU seconds (the child, plus what it ran) over ``rounds``."""
    walls, cpus = [], []
    for _ in range(rounds):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        walls.append(time.perf_counter() - wall)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0 or "OK" not in done.stdout:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stdout}{done.stderr}")
    return min(walls), min(cpus)


def pg_rows(
    url: str, base_url: str, env: dict[str, str], rounds: int, check: Callable[[Any], None]
) -> list[tuple[str, float, float]]:
    """The PostgreSQL rows: in process, the CLI and its start-up."""
    valhalla = str(BIN / "valhalla")
    rows: list[tuple[str, float, float]] = []
    sql_store = open_sql(url)
    try:
        rows.append(
            ("verify_chain in process, PostgreSQL", *timed(lambda: check(sql_store), rounds))
        )
    finally:
        sql_store.close()
    pg_env = {**env, "VALHALLA_DATABASE_URL": url}
    rows.append(
        (
            "`valhalla audit verify`, PostgreSQL",
            *timed_cli([valhalla, "audit", "verify"], pg_env, rounds),
        )
    )
    empty_url = derived_url(base_url, "verify_empty")
    ensure_database(empty_url)
    upgrade_database(empty_url)
    empty_env = {**env, "VALHALLA_DATABASE_URL": empty_url}
    rows.append(
        (
            "`valhalla audit verify`, empty database (start-up)",
            *timed_cli([valhalla, "audit", "verify"], empty_env, rounds),
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, default=DEFAULT_ENTRIES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=None, help="PostgreSQL server and name prefix")
    parser.add_argument("--wait-quiet", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.entries < 1 or args.rounds < 1:
        parser.error("--entries and --rounds must be >= 1")
    data = fill_dir(args.entries)
    log_path = data / AUDIT_LOG.file
    url = None if args.database_url is None else load_pg(args.database_url, data, args.entries)
    noise = wait_quiet(args.wait_quiet) if args.wait_quiet else load_text()
    print(f"measuring {source_state()}; {noise}")
    print(f"{args.entries:,} chained events, {log_path.stat().st_size / 2**20:.0f} MiB")

    env = {k: v for k, v in os.environ.items() if not k.startswith("VALHALLA_")}
    valhalla = str(BIN / "valhalla")
    rows: list[tuple[str, float, float]] = []
    raw = timed(lambda: raw_hash(log_path), args.rounds)
    rows.append(("raw SHA-256 per line (file, one process)", *raw))

    def check(store: Any) -> None:
        result = verify_chain(store=store)
        if not result.ok or result.events != args.entries:
            raise SystemExit(f"verify_chain failed: {result}")

    with tempfile.TemporaryDirectory() as scratch:
        empty = Path(scratch) / "empty"
        subprocess.run([valhalla, "init", str(empty)], env=env, check=True, capture_output=True)
        json_store = open_json(data)
        rows.append(
            ("verify_chain in process, JSON", *timed(lambda: check(json_store), args.rounds))
        )
        cli = [valhalla, "audit", "verify", "--data-dir"]
        rows.append(
            ("`valhalla audit verify`, JSON", *timed_cli([*cli, str(data)], env, args.rounds))
        )
        rows.append(
            (
                "`valhalla audit verify`, empty dir (start-up)",
                *timed_cli([*cli, str(empty)], env, args.rounds),
            )
        )
        if url is not None:
            rows += pg_rows(url, args.database_url, env, args.rounds, check)
    print(f"\n{args.rounds} rounds each, minimum; speed = raw / verify (CLI target: >= 0.3)")
    print("| what | wall s | CPU s | speed vs raw (wall) | speed vs raw (CPU) |")
    print("|---|---:|---:|---:|---:|")
    for name, wall, cpu in rows:
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {raw[0] / wall:.2f} | {raw[1] / cpu:.2f} |")
    print(f"\nat the end: {load_text()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
