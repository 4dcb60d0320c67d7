"""Writes and reads as a user sees them, against their floors, in one run.

Three things are measured, interleaved in rounds so that machine drift hits
them alike, by a sequential HTTP client in this (separate) process:

- ``valhalla serve`` (one uvicorn worker, JSON data dir or PostgreSQL):
  POST /core/go/start_session + POST /core/go/end_session (the pair),
  POST /core/go/complete, GET /core/go/session, GET /core/status/ryg;
- a framework-only FastAPI app (``bench.framework_app``, one uvicorn worker):
  a POST and a GET returning a constant of the same size;
- the raw durable writes a JSON start+end must make, with ``os.fsync``, in a
  scratch dir on the same file system as the data dir: start = one document
  replace (temp file, fsync, rename, fsync of the dir) + one line append
  (write, fsync); end = append + replace + append; complete = replace + append.

Both servers are pinned to CPU 0 and this client to CPU 1 (``taskset``) when
the machine has two CPUs or more. Reported: medians (ms) and the ratios the
targets are written in, from the same run:

- pair / (two framework POSTs + the raw start+end writes)   target JSON <= 1.3, PG <= 1.8
- complete / (one framework POST + raw replace+append)      target JSON <= 1.5
- framework GET / GET session (throughput ratio, sequential) target JSON >= 0.9, PG >= 0.8
- GET ryg / GET session                                      target <= 1.5

    .venv/bin/python -m bench.bench_writes                       # JSON, 5 rounds x 40
    .venv/bin/python -m bench.bench_writes --backend postgres
    .venv/bin/python -m bench.bench_writes --src /work/main/src  # another checkout's code

Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import load_text, source_state

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
STEP = "preflight_view_dashboard"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _pin(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if (os.cpu_count() or 1) >= 2 else []


def _cpu_ms(pid: int) -> float:
    """A process's user + system CPU time in ms (-1 for pid 0: not a server)."""
    if pid == 0:
        return -1.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _served(cmd: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[int]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                socket.create_connection((HOST, port), timeout=1).close()
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"no answer on port {port}: {log.read_text()[-2000:]}")
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Client:
    """One keep-alive connection; each call returns its wall time in ms."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection(HOST, port, timeout=60)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> float:
        try:
            return self._call(method, path, body)
        except (ConnectionError, http.client.RemoteDisconnected):
            # The server closed the idle keep-alive connection while the other
            # blocks ran: reconnect, and time the request again.
            self.conn.close()
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
            self.conn.connect()
            return self._call(method, path, body)

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> float:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        start = time.perf_counter_ns()
        self.conn.request(method, path, body=payload, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        elapsed = (time.perf_counter_ns() - start) / 1e6
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return elapsed


class Floor:
    """The raw durable writes, with nothing else around them."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.doc = directory / "doc.json"
        self.log = directory / "log.jsonl"
        self.payload = b"x" * 1200  # about a session document with its snapshot
        self.line = b"y" * 400 + b"\n"  # about an audit line

    def replace(self) -> None:
        tmp = self.dir / ".doc.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, self.payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.doc)
        dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def append(self) -> None:
        fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, self.line)
            os.fsync(fd)
        finally:
            os.close(fd)


def _measure(
    args: argparse.Namespace,
    v: Client,
    v_pid: int,
    f: Client,
    f_pid: int,
    floor: Floor,
    samples: dict[str, list[float]],
    cpu: dict[str, list[float]],
) -> None:
    def pair() -> None:
        # Each half is reported too (a start alone would meet its own 409).
        samples.setdefault("start", []).append(v.call("POST", "/core/go/start_session", {}))
        samples.setdefault("end", []).append(v.call("POST", "/core/go/end_session", {}))

    def complete() -> None:
        v.call("POST", "/core/go/complete", {"step_id": STEP})

    def get_session() -> None:
        v.call("GET", "/core/go/session")

    def get_ryg() -> None:
        v.call("GET", "/core/status/ryg")

    def fw_post() -> None:
        f.call("POST", "/write", {"notes": "b"})

    def fw_pair() -> None:
        fw_post()
        fw_post()

    def fw_get() -> None:
        f.call("GET", "/read")

    def raw_pair() -> None:
        floor.replace()
        floor.append()
        floor.append()
        floor.replace()
        floor.append()

    def raw_complete() -> None:
        floor.replace()
        floor.append()

    def block(pid: int, name: str, op: Callable[[], None]) -> None:
        """``iterations`` x ``op``: its wall times, and the server's CPU per op
        (CPU time counts what the server itself spent, however busy the
        machine is)."""
        before = _cpu_ms(pid)
        for _ in range(args.iterations):
            began = time.perf_counter_ns()
            op()
            samples.setdefault(name, []).append((time.perf_counter_ns() - began) / 1e6)
        if pid:
            cpu.setdefault(name, []).append((_cpu_ms(pid) - before) / args.iterations)

    for _ in range(args.warmup):  # imports, caches, connection pools
        for op in (pair, complete, get_session, get_ryg, fw_pair, fw_get):
            op()
    for _ in range(args.rounds):
        for name, op in (
            ("pair", pair),
            ("complete", complete),
            ("get_session", get_session),
            ("get_ryg", get_ryg),
        ):
            block(v_pid, name, op)
        for name, op in (("fw_pair", fw_pair), ("fw_post", fw_post), ("fw_get", fw_get)):
            block(f_pid, name, op)
        block(0, "raw_pair", raw_pair)
        block(0, "raw_complete", raw_complete)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="valhalla-bench-writes-", dir=args.tmp))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VALHALLA_")}
    env["VALHALLA_RATE_LIMIT_START_SESSION"] = "100000/minute"
    env["VALHALLA_RATE_LIMIT_WRITES"] = "100000/minute"
    if args.src:
        env["PYTHONPATH"] = args.src
    if args.backend == "postgres":
        from bench.pg import DEFAULT_URL, empty_database

        env["VALHALLA_DATABASE_URL"] = empty_database(args.database_url or DEFAULT_URL)
    v_port, f_port = _free_port(), _free_port()
    valhalla = [str(VENV_BIN / "valhalla"), "serve", "--port", str(v_port)]
    valhalla += ["--data-dir", str(work / "data"), "--workers", "1", "--log-level", "warning"]
    framework = [str(VENV_BIN / "uvicorn"), "bench.framework_app:app", "--host", HOST]
    framework += ["--port", str(f_port), "--workers", "1", "--log-level", "warning"]
    floor_dir = work / "floor"
    floor_dir.mkdir()
    floor = Floor(floor_dir)
    if len(_pin(1)):
        os.sched_setaffinity(0, {1})
    samples: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}  # server CPU ms per operation, per block
    with (
        _served(_pin(0) + valhalla, env, v_port, work / "valhalla.log") as v_pid,
        _served(
            _pin(0) + framework, {**env, "PYTHONPATH": str(ROOT)}, f_port, work / "fw.log"
        ) as f_pid,
    ):
        _measure(args, Client(v_port), v_pid, Client(f_port), f_pid, floor, samples, cpu)
    shutil.rmtree(work, ignore_errors=True)
    p50 = {name: statistics.median(values) for name, values in samples.items()}
    cpu_ms = {name: statistics.median(values) for name, values in cpu.items()}
    ratios = {
        "pair / floor (2 framework POSTs + raw start+end writes)": p50["pair"]
        / (p50["fw_pair"] + p50["raw_pair"]),
        "complete / floor (framework POST + raw replace+append)": p50["complete"]
        / (p50["fw_post"] + p50["raw_complete"]),
        "GET session throughput / framework GET": p50["fw_get"] / p50["get_session"],
        "GET ryg / GET session": p50["get_ryg"] / p50["get_session"],
    }
    return {
        "backend": args.backend,
        "code": args.src or source_state(),
        "load": load_text(),
        "rounds": args.rounds,
        "iterations": args.iterations,
        "p50_ms": {k: round(val, 3) for k, val in sorted(p50.items())},
        "ratios": {k: round(val, 3) for k, val in ratios.items()},
        "server_cpu_ms_per_op": {k: round(val, 3) for k, val in sorted(cpu_ms.items())},
        "cpu_ratios": {
            "pair CPU / 2 framework POSTs' CPU": round(cpu_ms["pair"] / cpu_ms["fw_pair"], 3),
            "GET session CPU / framework GET CPU": round(
                cpu_ms["get_session"] / cpu_ms["fw_get"], 3
            ),
            "GET ryg CPU / GET session CPU": round(cpu_ms["get_ryg"] / cpu_ms["get_session"], 3),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("json", "postgres"), default="json")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--src", default=None, help="serve this checkout's src/ instead")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--tmp", default=None, help="scratch dir (the data dir's file system)")
    args = parser.parse_args()
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
