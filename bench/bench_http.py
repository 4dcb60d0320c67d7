"""GET /core/go/session against a bare route in the same server, under wrk.

One uvicorn process (1 worker) serves ``bench.bench_app``; wrk, a separate
process, loads ``/bench/bare`` and ``/core/go/session`` alternately for a few
rounds of fixed duration. With at least two CPUs the server and wrk are pinned
to different ones (taskset), so the load generator does not steal the
server's CPU. Run on an empty data dir and on one holding N history and
N audit lines (built once by ``bench.fill`` and cached under bench/results/),
or with ``--backend postgres`` on an empty database and one loaded with the
same N sessions and audit lines (``bench.pg``; PostgreSQL is not pinned).

    .venv/bin/python -m bench.bench_http              # defaults: 3 x 10 s, 32 conns, 1e6
    .venv/bin/python -m bench.bench_http --entries 10000 --duration 3 --rounds 2
    .venv/bin/python -m bench.bench_http --backend postgres

Target: session throughput >= 0.8 x bare (median of per-round ratios).
Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import begin_run, save_run, wait_quiet
from bench.fill import DEFAULT_ENTRIES, RESULTS_DIR, ensure_filled
from bench.pg import (
    DEFAULT_URL,
    PostgresCpu,
    db_name,
    empty_database,
    ensure_filled_pg,
    server_settings,
)

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "wrk_report.lua"
BARE, SESSION = "/bench/bare", "/core/go/session"
TARGET_RATIO = 0.8
SATURATED = 0.9  # server CPU share above which req/s is the server's own limit
FIGURES = (
    "rps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "server_cpu",
    "req_per_cpu_s",
    "db_cpu",
    "statements_per_req",
    "fence_per_req",
    "checkouts_per_req",
    "connects_per_req",
)


@dataclass(frozen=True)
class WrkRun:
    path: str
    round: int
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    server_cpu: float  # server CPU seconds per wall second (1.0 = one full core)
    req_per_cpu_s: float  # requests per server CPU second: robust to contention
    # PostgreSQL only (None on JSON): CPU of all its processes per wall second,
    # and the server's SQL statements (SQLAlchemy's and the event loop's
    # generation reads; the latter also apart) / pool checkouts / new
    # connections per request.
    db_cpu: float | None = None
    statements_per_req: float | None = None
    fence_per_req: float | None = None
    checkouts_per_req: float | None = None
    connects_per_req: float | None = None


@dataclass(frozen=True)
class Dataset:
    name: str
    where: str  # data dir or database name, for the report
    env: dict[str, str]  # what the server is started with


@dataclass(frozen=True)
class Pinning:
    server: list[str]
    wrk: list[str]
    text: str


def pinning() -> Pinning:
    """Server on the first allowed CPU, wrk on the rest (when both exist)."""
    cpus = sorted(os.sched_getaffinity(0))
    taskset = shutil.which("taskset")
    if taskset is None or len(cpus) < 2:
        return Pinning([], [], "not pinned (needs taskset and >= 2 CPUs): wrk shares the CPU")
    rest = ",".join(str(c) for c in cpus[1:])
    return Pinning(
        [taskset, "-c", str(cpus[0])],
        [taskset, "-c", rest],
        f"server on CPU {cpus[0]}, wrk on CPU {rest}",
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")" closing the command name: field 3 is fields[0]; utime and
    # stime are fields 14 and 15 of proc(5).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get_raw(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # loopback only
        body: bytes = resp.read()
        return body


def get_json(url: str, timeout: float = 5.0) -> Any:
    return json.loads(get_raw(url, timeout))


@contextlib.contextmanager
def server(dataset: Dataset, pin: Pinning, log_path: Path) -> Iterator[tuple[str, int]]:
    """A uvicorn subprocess on a free loopback port; yields its URL and pid."""
    port = free_port()
    cmd = [
        *pin.server,
        sys.executable,
        "-m",
        "uvicorn",
        "bench.bench_app:create_bench_app",
        "--factory",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
    ]
    env = {**os.environ, **dataset.env}
    base = f"http://{HOST}:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(proc, f"{base}/bench/info", log_path)
            yield base, proc.pid  # taskset execs, so this is the server's pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            get_json(url, timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server did not answer {url} within 60 s; log in {log_path}")


def run_wrk(
    url: str, *, duration: int, connections: int, threads: int, pin: Pinning
) -> dict[str, Any]:
    cmd = [
        *pin.wrk,
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
            return result
    raise RuntimeError(f"no WRKJSON line in wrk output:\n{out.stdout}\n{out.stderr}")


def _per(
    after: dict[str, int] | None, before: dict[str, int] | None, key: str, n: int
) -> float | None:
    if after is None or before is None or n == 0:
        return None
    return (after[key] - before[key]) / n


def _sum(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def measure(
    url: str,
    pid: int,
    path: str,
    rnd: int,
    *,
    duration: int,
    connections: int,
    threads: int,
    pin: Pinning,
    pg: PostgresCpu | None,
) -> WrkRun:
    sql_before = get_json(f"{url}/bench/info")["sql"]
    db_before = pg.seconds() if pg else None
    cpu = cpu_seconds(pid)
    raw = run_wrk(url + path, duration=duration, connections=connections, threads=threads, pin=pin)
    used = max(cpu_seconds(pid) - cpu, 1e-9)
    db_after = pg.seconds() if pg else None
    sql_after = get_json(f"{url}/bench/info")["sql"]
    wall = raw["duration_us"] / 1e6
    errors = sum(int(v) for k, v in raw.items() if k.startswith("err_"))
    n = int(raw["requests"])
    return WrkRun(
        path=path,
        round=rnd,
        requests=int(raw["requests"]),
        rps=raw["requests"] / wall,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        errors=errors,
        server_cpu=used / wall,
        req_per_cpu_s=raw["requests"] / used,
        db_cpu=None if db_after is None or db_before is None else (db_after - db_before) / wall,
        statements_per_req=_sum(
            _per(sql_after, sql_before, "statements", n), _per(sql_after, sql_before, "fence", n)
        ),
        fence_per_req=_per(sql_after, sql_before, "fence", n),
        checkouts_per_req=_per(sql_after, sql_before, "checkouts", n),
        connects_per_req=_per(sql_after, sql_before, "connects", n),
    )


def bench_dataset(dataset: Dataset, args: argparse.Namespace, pin: Pinning) -> dict[str, Any]:
    quiet = wait_quiet(args.wait_quiet)
    tag = "".join(c for c in f"{args.backend}{dataset.name}" if c.isalnum())
    log_path = RESULTS_DIR / f"server-{tag}.log"
    load = {"duration": args.duration, "connections": args.connections, "threads": args.threads}
    pg = PostgresCpu() if args.backend == "postgres" else None
    with server(dataset, pin, log_path) as (base, pid):
        stack = get_json(f"{base}/bench/info")
        raw = get_raw(f"{base}{SESSION}")  # a 200, or this raises
        session = json.loads(raw)
        print(
            f"\n== {args.backend}, {dataset.name}: {dataset.where}\n   server: uvicorn, 1 worker,"
            f" {stack['loop']}, {stack['http']}, store {stack['store']}; {pin.text}\n"
            f"   GET {SESSION}: {len(raw)} bytes, active={session.get('active')},"
            f" id={session.get('id')}\n   before the runs: {quiet}"
        )
        # Warm-up: imports, first-request caches, the thread pool, TCP, the DB pool.
        for path in (BARE, SESSION):
            measure(base, pid, path, 0, **{**load, "duration": args.warmup}, pin=pin, pg=pg)
        runs: list[WrkRun] = []
        for rnd in range(1, args.rounds + 1):
            # Alternate which route goes first so slow drift hits both alike.
            order = (BARE, SESSION) if rnd % 2 else (SESSION, BARE)
            for path in order:
                run = measure(base, pid, path, rnd, **load, pin=pin, pg=pg)
                runs.append(run)
                db = (
                    f"  DB CPU {run.db_cpu:4.0%}  SQL/req {run.statements_per_req:.2f}"
                    f" (generation reads {run.fence_per_req:.2f})"
                    f"  conns/req {run.connects_per_req:.3f}"
                    if run.db_cpu is not None
                    and run.statements_per_req is not None
                    and run.fence_per_req is not None
                    and run.connects_per_req is not None
                    else ""
                )
                print(
                    f"   round {rnd} {path:<17} {run.rps:9,.0f} req/s  p50 {run.p50_ms:6.2f} ms"
                    f"  p99 {run.p99_ms:6.2f} ms  server CPU {run.server_cpu:4.0%}"
                    f"  {run.req_per_cpu_s:7,.0f} req/CPU-s  errors {run.errors}{db}"
                )
    summary = summarize(dataset, stack, runs, by_rps=args.backend == "postgres")
    return {**summary, "before": quiet}


def summarize(
    dataset: Dataset, stack: dict[str, Any], runs: list[WrkRun], *, by_rps: bool
) -> dict[str, Any]:
    def med(path: str, field: str) -> float | None:
        values = [getattr(r, field) for r in runs if r.path == path]
        if any(v is None for v in values):
            return None
        return float(statistics.median(values))

    rounds = sorted({r.round for r in runs})
    by = {(r.round, r.path): r for r in runs}
    ratios = [by[(n, SESSION)].rps / by[(n, BARE)].rps for n in rounds]
    ratio = statistics.median(ratios)
    cpu_ratio = statistics.median(
        by[(n, SESSION)].req_per_cpu_s / by[(n, BARE)].req_per_cpu_s for n in rounds
    )
    errors = sum(r.errors for r in runs)
    # req/s compares routes only while the server has its core to itself; when
    # other processes took part of it, compare the work per CPU second instead.
    # On PostgreSQL the server also waits for the database, so it cannot fill
    # its core: there req/s is the only fair basis (the target's own terms).
    saturated = all(r.server_cpu >= SATURATED for r in runs)
    basis = ratio if saturated or by_rps else cpu_ratio
    summary: dict[str, Any] = {
        "dataset": dataset.name,
        "where": dataset.where,
        "server": stack,
        "bare": {f: med(BARE, f) for f in FIGURES},
        "session": {f: med(SESSION, f) for f in FIGURES},
        "round_ratios": ratios,
        "ratio": ratio,
        "ratio_per_cpu_s": cpu_ratio,
        "server_saturated": saturated,
        "verdict_basis": "req/s" if saturated or by_rps else "req per server CPU second",
        "target_met": basis >= TARGET_RATIO and errors == 0,
        "errors": errors,
        "runs": [asdict(r) for r in runs],
    }
    verdict = "MET" if summary["target_met"] else "NOT MET"
    if not saturated and not by_rps:
        print(
            f"   note: the server got less than {SATURATED:.0%} of its CPU in some runs (a busy"
            " machine), so req/s understates; the verdict uses req per server CPU second"
        )
    print(
        f"   median: bare {summary['bare']['rps']:,.0f} req/s,"
        f" session {summary['session']['rps']:,.0f} req/s;"
        f" session/bare {ratio:.3f} (target >= {TARGET_RATIO}: {verdict});"
        f" per server CPU second {cpu_ratio:.3f}"
    )
    return summary


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def _num(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def print_table(results: list[dict[str, Any]], backend: str) -> None:
    db = backend == "postgres"
    extra = " DB CPU | SQL stmts/req (generation reads incl.) | new conns/req |" if db else ""
    print(
        "\n| dataset | route | req/s | p50 ms | p99 ms | server CPU | req/CPU-s |"
        f"{extra} session/bare (req/s) | session/bare (req/CPU-s) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|" + ("---:|" * 3 if db else "") + "---:|---:|")
    for res in results:
        for key, path in (("bare", BARE), ("session", SESSION)):
            fig = res[key]
            ratios = (
                f"{res['ratio']:.2f} | {res['ratio_per_cpu_s']:.2f}" if key == "session" else " | "
            )
            cols = (
                f" {_pct(fig['db_cpu'])} | {_num(fig['statements_per_req'], '.2f')}"
                f" | {_num(fig['connects_per_req'], '.3f')} |"
                if db
                else ""
            )
            print(
                f"| {res['dataset']} | GET {path} | {fig['rps']:,.0f} | {fig['p50_ms']:.2f}"
                f" | {fig['p99_ms']:.2f} | {fig['server_cpu']:.0%} | {fig['req_per_cpu_s']:,.0f} |"
                f"{cols} {ratios} |"
            )


def datasets(args: argparse.Namespace, scratch: Path) -> Iterator[Dataset]:
    """The empty and the filled dataset of the chosen backend, built as needed."""
    if args.backend == "postgres":
        if not args.skip_empty:
            url = empty_database(args.database_url)
            yield Dataset("empty", db_name(url), {"VALHALLA_DATABASE_URL": url})
        if not args.skip_filled:
            # GET only reads, so the loaded database is served as is.
            url = ensure_filled_pg(args.database_url, args.entries, verify=args.verify)
            yield Dataset(f"{args.entries:,} entries", db_name(url), {"VALHALLA_DATABASE_URL": url})
        return
    if not args.skip_empty:
        yield Dataset("empty", str(scratch), {"VALHALLA_DATA_DIR": str(scratch)})
    if not args.skip_filled:
        # GET only reads, so the cached dir is served as is (nothing is written).
        filled = ensure_filled(args.entries)
        yield Dataset(f"{args.entries:,} entries", str(filled), {"VALHALLA_DATA_DIR": str(filled)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GET session vs a bare route, under wrk.")
    parser.add_argument("--backend", choices=("json", "postgres"), default="json")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_URL,
        help="server and name prefix of the scratch databases (postgres only; see bench/pg.py)",
    )
    parser.add_argument("--entries", type=int, default=DEFAULT_ENTRIES, help="filled dataset's N")
    # wrk takes whole seconds.
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per route")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--warmup", type=int, default=2, help="seconds per route first")
    parser.add_argument(
        "--wait-quiet", type=float, default=0.0, help="wait up to S s for an idle machine first"
    )
    parser.add_argument(
        "--verify", action="store_true", help="postgres: verify_chain on the loaded database"
    )
    parser.add_argument("--skip-empty", action="store_true")
    parser.add_argument("--skip-filled", action="store_true")
    args = parser.parse_args(argv)
    if min(args.duration, args.warmup, args.rounds) < 1 or args.connections < args.threads:
        parser.error("need --duration, --warmup, --rounds >= 1 and --connections >= --threads")
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    pin = pinning()
    postgres = server_settings(args.database_url) if args.backend == "postgres" else None
    header = begin_run(RESULTS_DIR, postgres)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="http-empty-", dir=RESULTS_DIR) as empty:
        for dataset in datasets(args, Path(empty)):
            results.append(bench_dataset(dataset, args, pin))
    print_table(results, args.backend)
    save_run(RESULTS_DIR, f"http-{args.backend}", args, header, {"results": results})
    return 0 if all(r["target_met"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
