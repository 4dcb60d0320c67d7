"""Session start+end over HTTP, against the disk floor, on empty and large data.

A sequential client in this process (pinned to the load CPU) sends
``POST /core/go/start_session`` then ``POST /core/go/end_session`` (the
*pair*, what an operator waits for) with the bench's owner token, in blocks
that rotate, round by round, between:

- ``valhalla serve`` on an empty dataset and on one holding N ended sessions
  and N chained audit lines (a copy of ``bench.fill``'s cached dir, or the
  database ``bench.pg`` loads), each its own process on the server CPU;
- the framework-only app (``bench.framework_app``): two POSTs, same CPU;
- the *disk floor*, in this process: the durable writes a pair makes and
  nothing else. On JSON, the exact file system calls of one start+end
  (recorded through ``json_store.fs`` on a scratch store: each open, write of
  that many bytes, fsync, rename and directory fsync) replayed on files in
  the same file system; on PostgreSQL, as many committed single-row INSERT
  transactions as a pair commits, through psycopg on the same server.

Guardrails (medians of the same run): pair / floor (JSON <= 2.5, PostgreSQL
<= 3) and pair at N entries / pair on empty (<= 1.2).

    python -m bench writes                                  # JSON, N = 1,000,000
    python -m bench writes --backend postgres
    python -m bench writes --entries 10000 --rounds 3       # quicker
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import common
from bench.common import Client, Guardrail

START, END = "/core/go/start_session", "/core/go/end_session"
JSON_LIMIT, PG_LIMIT, GROWTH_LIMIT = 2.5, 3.0, 1.2


# -- the floor -------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One file system call of a start+end: what, on which file, how much."""

    op: str  # open, write, fsync, close, replace, unlink, ftruncate
    fd: int = -1
    name: str = ""  # relative to the data dir ("." is the dir itself)
    other: str = ""  # replace's destination
    number: int = 0  # open's flags, write's byte count, ftruncate's size


def record_json_pair(scratch: Path) -> list[Call]:
    """The file system calls of one start+end on a JSON store (after a first
    pair, which also creates the files)."""
    from valhalla_gov.compose import open_json
    from valhalla_gov.storage import json_store

    calls: list[Call] = []
    root = scratch.resolve()

    def rel(path: Path | str) -> str:
        return os.path.relpath(Path(path).resolve(), root)

    class Recording(json_store.FileOps):
        def open(self, path: Path, flags: int, mode: int = 0o600) -> int:
            fd = super().open(path, flags, mode)
            calls.append(Call("open", fd, rel(path), number=flags))
            return fd

        def write(self, fd: int, data: bytes | memoryview) -> int:
            calls.append(Call("write", fd, number=len(data)))
            return super().write(fd, data)

        def fsync(self, fd: int) -> None:
            calls.append(Call("fsync", fd))
            super().fsync(fd)

        def close(self, fd: int) -> None:
            calls.append(Call("close", fd))
            super().close(fd)

        def replace(self, src: Path, dst: Path) -> None:
            calls.append(Call("replace", name=rel(src), other=rel(dst)))
            super().replace(src, dst)

        def unlink(self, path: Path) -> None:
            calls.append(Call("unlink", name=rel(path)))
            super().unlink(path)

        def ftruncate(self, fd: int, size: int) -> None:
            calls.append(Call("ftruncate", fd, number=size))
            super().ftruncate(fd, size)

    store = open_json(scratch)
    _service_pair(store)
    calls.clear()
    real, json_store.fs = json_store.fs, Recording()
    try:
        _service_pair(store)
    finally:
        json_store.fs = real
    return calls


def record_sql_commits(url: str) -> int:
    """How many transactions one start+end commits on the database."""
    from sqlalchemy import event

    from valhalla_gov.compose import open_sql

    store = open_sql(url)
    commits = 0

    def count(*_: Any) -> None:
        nonlocal commits
        commits += 1

    try:
        _service_pair(store)
        event.listen(store.engine, "commit", count)
        _service_pair(store)
    finally:
        store.close()
    return commits


def _service_pair(store: Any) -> None:
    """A start+end through the services the routes call."""
    from valhalla_gov.go import session_service
    from valhalla_gov.health.publisher import HealthPublisher
    from valhalla_gov.timeutil import utc_now

    light = HealthPublisher(store=store, clock=utc_now)
    session_service.start_session(
        store=store, clock=utc_now, actor="bench", notes="bench", health=light.current()
    )
    session_service.end_session(
        store=store, clock=utc_now, actor="bench", notes="bench", health=light.current()
    )


class DiskFloor:
    """Replays recorded file system calls in a directory of its own."""

    def __init__(self, directory: Path, calls: list[Call]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir, self.calls = directory, calls
        self.payload = b"x" * max((c.number for c in calls if c.op == "write"), default=1)

    def path(self, name: str) -> Path:
        return self.dir if name == "." else self.dir / name

    def __call__(self) -> None:
        fds: dict[int, int] = {}
        for c in self.calls:
            if c.op == "open":
                fds[c.fd] = os.open(self.path(c.name), c.number, 0o600)
            elif c.op == "write":
                # One line per write, as the store appends whole lines.
                os.write(fds[c.fd], self.payload[: c.number - 1] + b"\n")
            elif c.op == "fsync":
                os.fsync(fds[c.fd])
            elif c.op == "close":
                os.close(fds.pop(c.fd))
            elif c.op == "replace":
                os.replace(self.path(c.name), self.path(c.other))
            elif c.op == "unlink":
                os.unlink(self.path(c.name))
            elif c.op == "ftruncate":
                os.ftruncate(fds[c.fd], c.number)

    def describe(self) -> str:
        count = {op: sum(1 for c in self.calls if c.op == op) for op in ("write", "replace")}
        dirs = sum(1 for c in self.calls if c.op == "open" and c.name == ".")
        fsyncs = sum(1 for c in self.calls if c.op == "fsync")
        size = sum(c.number for c in self.calls if c.op == "write")
        return (
            f"{count['write']} writes ({size:,} bytes), {fsyncs - dirs} file fsyncs,"
            f" {count['replace']} renames, {dirs} directory fsyncs"
        )


class CommitFloor:
    """``commits`` single-row INSERT transactions on one psycopg connection."""

    def __init__(self, url: str, commits: int, body_bytes: int) -> None:
        import psycopg

        from bench.pg import libpq

        self.commits = commits
        self.conn = psycopg.connect(libpq(url))
        self.conn.execute("DROP TABLE IF EXISTS bench_floor")
        self.conn.execute("CREATE TABLE bench_floor (id bigserial PRIMARY KEY, body text)")
        self.conn.commit()
        self.body = "x" * body_bytes

    def __call__(self) -> None:
        for _ in range(self.commits):
            self.conn.execute("INSERT INTO bench_floor (body) VALUES (%s)", (self.body,))
            self.conn.commit()

    def describe(self) -> str:
        return f"{self.commits} committed single-row INSERT transactions ({len(self.body)} bytes)"

    def close(self) -> None:
        self.conn.execute("DROP TABLE IF EXISTS bench_floor")
        self.conn.commit()
        self.conn.close()


# -- the measured operations -------------------------------------------------------


@dataclass
class Op:
    name: str
    run: Callable[[], None]
    pid: int = 0  # the server whose CPU a block uses (0: this process)
    before_block: Callable[[], None] = lambda: None
    samples: list[float] = field(default_factory=list)  # ms per operation
    cpu: list[float] = field(default_factory=list)  # server CPU ms per operation, per block

    def block(self, iterations: int) -> None:
        self.before_block()
        cpu = common.cpu_seconds(self.pid) if self.pid else 0.0
        for _ in range(iterations):
            began = time.perf_counter_ns()
            self.run()
            self.samples.append((time.perf_counter_ns() - began) / 1e6)
        if self.pid:
            self.cpu.append((common.cpu_seconds(self.pid) - cpu) * 1000 / iterations)

    def median(self) -> float:
        return statistics.median(self.samples)

    def p90(self) -> float:
        return statistics.quantiles(self.samples, n=10)[-1]


def pair_op(name: str, client: Client, pid: int) -> Op:
    def pair() -> None:
        client.call("POST", START, {"notes": "bench start"})
        client.call("POST", END, {"notes": "bench end"})

    return Op(name, pair, pid, client.reconnect)


@dataclass(frozen=True)
class Dataset:
    name: str
    data_dir: Path
    env: dict[str, str]


@contextmanager
def datasets(args: argparse.Namespace, work: Path) -> Iterator[list[Dataset]]:
    """The empty and the filled dataset of the backend, each with its data dir."""
    env = common.bench_env()
    found: list[Dataset] = []
    filled_name = f"{args.entries:,} entries"
    if args.backend == "json":
        empty = work / "empty"
        subprocess.run(
            [common.VALHALLA, "init", str(empty)], env=env, check=True, capture_output=True
        )
        found.append(Dataset("empty", empty, env))
        if not args.skip_filled:
            from bench.fill import ensure_filled

            cached = ensure_filled(args.entries)
            began = time.perf_counter()
            shutil.copytree(cached, work / "filled")  # a copy: the run appends to it
            print(f"# copied the {filled_name} dir in {time.perf_counter() - began:.0f} s")
            found.append(Dataset(filled_name, work / "filled", env))
        yield found
        return
    from bench.pg import empty_database, ensure_filled_pg, restore

    urls = {"empty": empty_database(args.database_url)}
    if not args.skip_filled:
        urls[filled_name] = ensure_filled_pg(args.database_url, args.entries)
    for name, url in urls.items():
        data_dir = work / name.split()[0]
        data_dir.mkdir()
        found.append(Dataset(name, data_dir, {**env, "VALHALLA_DATABASE_URL": url}))
    try:
        yield found
    finally:
        if not args.skip_filled:
            print(f"# removed the {restore(urls[filled_name]):,} rows the run added")


def run(args: argparse.Namespace) -> list[Guardrail]:
    info = common.header(f"writes ({args.backend})")
    cpus = common.cpus()
    print(f"# {cpus.text}")
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="writes-", dir=common.RESULTS_DIR))
    try:
        with ExitStack() as stack:
            stack.enter_context(cpus.load_pinned())
            sets = stack.enter_context(datasets(args, work))
            floor: DiskFloor | CommitFloor
            if args.backend == "json":
                floor = DiskFloor(work / "floor", record_json_pair(work / "trace"))
            else:
                url = sets[0].env["VALHALLA_DATABASE_URL"]
                floor = CommitFloor(url, record_sql_commits(url), body_bytes=1200)
                stack.callback(floor.close)
            print(f"# disk floor of one start+end: {floor.describe()}")
            ops: list[Op] = []
            for ds in sets:
                token = common.create_token(ds.env, ds.data_dir)
                port = common.free_port()
                pid = stack.enter_context(
                    common.serving(
                        cpus.server_prefix() + common.valhalla_serve(port, ds.data_dir),
                        ds.env,
                        port,
                        work / f"serve-{ds.data_dir.name}.log",
                    )
                )
                ops.append(pair_op(f"start+end, {ds.name}", Client(port, token), pid))
            port = common.free_port()
            fw_pid = stack.enter_context(
                common.serving(
                    cpus.server_prefix() + common.framework_serve(port),
                    common.bench_env(),
                    port,
                    work / "framework.log",
                )
            )
            fw = Client(port)

            def fw_pair() -> None:
                fw.call("POST", "/write", {"notes": "bench start"})
                fw.call("POST", "/write", {"notes": "bench end"})

            ops.append(Op("framework-only: 2 POSTs", fw_pair, fw_pid, fw.reconnect))
            ops.append(Op("disk floor", floor))
            for op in ops:  # imports, first-request caches, connection pools
                op.block(args.warmup)
                op.samples.clear()
                op.cpu.clear()
            quiet = common.wait_quiet(args.wait_quiet)
            print(f"# before the timed rounds: {quiet}")
            for rnd in range(args.rounds):
                k = rnd % len(ops)  # rotate, so drift hits every operation alike
                for op in ops[k:] + ops[:k]:
                    op.block(args.iterations)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report(args, info, ops, floor.describe())


def report(
    args: argparse.Namespace, info: dict[str, Any], ops: list[Op], floor_text: str
) -> list[Guardrail]:
    n = args.rounds * args.iterations
    print(f"\n{args.rounds} rounds x {args.iterations} per operation ({n} timed), ms:\n")
    print("| operation | median ms | p90 ms | server CPU ms (median) |")
    print("|---|---:|---:|---:|")
    for op in ops:
        cpu = f"{statistics.median(op.cpu):.2f}" if op.cpu else "-"
        print(f"| {op.name} | {op.median():.2f} | {op.p90():.2f} | {cpu} |")
    by = {op.name: op for op in ops}
    empty, floor = by["start+end, empty"], by["disk floor"]
    backend = "JSON" if args.backend == "json" else "PostgreSQL"
    limit = JSON_LIMIT if args.backend == "json" else PG_LIMIT
    rows = [
        Guardrail(
            f"{backend} start+end / disk floor",
            empty.median() / floor.median(),
            limit,
            at_least=False,
            detail=f"`python -m bench writes --backend {args.backend}`, empty dataset",
        )
    ]
    filled = [op for op in ops if op.name.endswith(" entries")]
    rows.append(
        Guardrail(
            f"{backend} start+end at {args.entries:,} entries / empty",
            filled[0].median() / empty.median() if filled else None,
            GROWTH_LIMIT,
            at_least=False,
            detail=f"`python -m bench writes --backend {args.backend}`",
        )
    )
    common.print_guardrails(rows)
    common.save(
        f"writes-{args.backend}",
        {**info, "args": vars(args)},
        {
            "floor": floor_text,
            "ops": {
                op.name: {"median_ms": op.median(), "p90_ms": op.p90(), "server_cpu_ms": op.cpu}
                for op in ops
            },
            "guardrails": common.guardrails_json(rows),
        },
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
    parser.add_argument(
        "--entries", type=int, default=1_000_000, help="N of the filled dataset (default 1e6)"
    )
    parser.add_argument("--skip-filled", action="store_true", help="the empty dataset only")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=40, help="operations per block")
    parser.add_argument("--warmup", type=int, default=20, help="untimed operations first")
    common.add_common(parser)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench writes", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    if min(args.rounds, args.iterations, args.warmup, args.entries) < 1:
        parser.error("--rounds, --iterations, --warmup and --entries must be >= 1")
    return common.exit_code(run(args), args.strict)
