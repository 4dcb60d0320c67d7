"""GET /core/go/session against the framework-only GET, under wrk.

Two servers run at once on the server CPU: ``valhalla serve`` (one worker, a
fresh data dir or an empty PostgreSQL scratch database, the bench's owner
token sent on every request) and the framework-only app
(``bench.framework_app``: a sync route with a response model of the same
fields, no work). wrk, a separate process pinned to the load CPU, loads each
in turn for ``--duration`` seconds, ``--rounds`` times, alternating which goes
first. The figure of each route is its best round (req/s): the machine is
shared, and the best round is the one least disturbed by others.

Guardrail: session req/s / framework-only req/s >= 0.8 on JSON, >= 0.5 on
PostgreSQL.

    python -m bench reads                       # JSON, 3 rounds x 5 s, 32 connections
    python -m bench reads --backend postgres
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import common
from bench.common import Guardrail

LUA = Path(__file__).resolve().parent / "wrk_report.lua"
SESSION, FRAMEWORK = "GET /core/go/session", "framework-only GET"
JSON_LIMIT, PG_LIMIT = 0.8, 0.5


@dataclass(frozen=True)
class Run:
    route: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    server_cpu: float  # the server's CPU seconds per wall second (1.0: its whole CPU)
    errors: int


def wrk(
    url: str, headers: list[str], args: argparse.Namespace, cpus: common.Cpus, duration: int
) -> dict[str, Any]:
    argv = [*cpus.load_prefix(), "wrk", "-t1", f"-c{args.connections}", f"-d{duration}s"]
    for h in headers:
        argv += ["-H", h]
    argv += ["--timeout", "5s", "-s", str(LUA), url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=True)
    for line in done.stdout.splitlines():
        if line.startswith("WRKJSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
            return result
    raise SystemExit(f"no WRKJSON line from wrk:\n{done.stdout}\n{done.stderr}")


def measure(
    route: str,
    rnd: int,
    url: str,
    headers: list[str],
    pid: int,
    args: argparse.Namespace,
    cpus: common.Cpus,
) -> Run:
    cpu = common.cpu_seconds(pid)
    raw = wrk(url, headers, args, cpus, args.duration)
    wall = raw["duration_us"] / 1e6
    errors = sum(int(v) for k, v in raw.items() if k.startswith("err_"))
    return Run(
        route=route,
        round=rnd,
        rps=raw["requests"] / wall,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        server_cpu=(common.cpu_seconds(pid) - cpu) / wall,
        errors=errors,
    )


def run(args: argparse.Namespace) -> list[Guardrail]:
    backend = "JSON" if args.backend == "json" else "PostgreSQL"
    limit = JSON_LIMIT if args.backend == "json" else PG_LIMIT
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk; `make bench` does it as root)")
        return [Guardrail(f"{backend} GET session / framework-only GET", None, limit, True)]
    info = common.header(f"reads ({args.backend})")
    cpus = common.cpus()
    print(f"# {cpus.text}; wrk: 1 thread, {args.connections} connections")
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="reads-", dir=common.RESULTS_DIR))
    env = common.bench_env()
    data_dir = work / "data"
    if args.backend == "postgres":
        from bench.pg import empty_database

        env["VALHALLA_DATABASE_URL"] = empty_database(args.database_url)
        data_dir.mkdir()
    else:
        subprocess.run([common.VALHALLA, "init", str(data_dir)], env=env, check=True)
    runs: list[Run] = []
    try:
        with ExitStack() as stack:
            token = common.create_token(env, data_dir)
            v_port, f_port = common.free_port(), common.free_port()
            v_pid = stack.enter_context(
                common.serving(
                    cpus.server_prefix() + common.valhalla_serve(v_port, data_dir),
                    env,
                    v_port,
                    work / "serve.log",
                )
            )
            f_pid = stack.enter_context(
                common.serving(
                    cpus.server_prefix() + common.framework_serve(f_port),
                    common.bench_env(),
                    f_port,
                    work / "framework.log",
                )
            )
            base = f"http://{common.HOST}"
            routes = {
                SESSION: (
                    f"{base}:{v_port}/core/go/session",
                    [f"Authorization: Bearer {token}"],
                    v_pid,
                ),
                FRAMEWORK: (f"{base}:{f_port}/read", [], f_pid),
            }
            body = common.Client(v_port, token).call("GET", "/core/go/session")
            print(f"# GET /core/go/session answers {len(body)} bytes")
            for url, headers, _ in routes.values():  # imports, caches, thread pools
                wrk(url, headers, args, cpus, 1)
            quiet = common.wait_quiet(args.wait_quiet)
            print(f"# before the timed rounds: {quiet}\n")
            print("| round | route | req/s | p50 ms | p99 ms | server CPU | errors |")
            print("|---|---|---:|---:|---:|---:|---:|")
            for rnd in range(1, args.rounds + 1):
                order = list(routes) if rnd % 2 else list(reversed(routes))
                for route in order:
                    url, headers, pid = routes[route]
                    r = measure(route, rnd, url, headers, pid, args, cpus)
                    runs.append(r)
                    print(
                        f"| {rnd} | {route} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f}"
                        f" | {r.server_cpu:.0%} | {r.errors} |"
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if any(r.errors for r in runs):
        raise SystemExit("some requests failed (see the errors column): no figure")
    best = {route: max(r.rps for r in runs if r.route == route) for route in routes}
    print(f"\nbest round: session {best[SESSION]:,.0f} req/s, framework {best[FRAMEWORK]:,.0f}")
    rows = [
        Guardrail(
            f"{backend} GET session / framework-only GET",
            best[SESSION] / best[FRAMEWORK],
            limit,
            at_least=True,
            detail=f"`python -m bench reads --backend {args.backend}`, best of {args.rounds}",
        )
    ]
    common.print_guardrails(rows)
    common.save(
        f"reads-{args.backend}",
        {**info, "args": vars(args)},
        {"runs": [asdict(r) for r in runs], "guardrails": common.guardrails_json(rows)},
    )
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bench.pg import DEFAULT_URL

    parser.add_argument("--backend", choices=("json", "postgres"), default="json")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_URL,
        help="PostgreSQL server and name prefix of the scratch databases (bench/pg.py)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per route")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    common.add_common(parser)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench reads", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    if min(args.rounds, args.duration, args.connections) < 1:
        parser.error("--rounds, --duration and --connections must be >= 1")
    return common.exit_code(run(args), args.strict)
