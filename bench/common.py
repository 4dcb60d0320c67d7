"""What the benchmarks share: pinning, servers, the bench token, guardrail tables.

The machine is shared, so absolute times move from run to run; every
guardrail is a ratio of two figures measured in the same run. Servers run on
one CPU and the load (wrk, or this process) on another, so the load generator
does not steal the server's CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
VALHALLA = str(Path(sys.executable).with_name("valhalla"))
UVICORN = str(Path(sys.executable).with_name("uvicorn"))


# -- where the figures come from -------------------------------------------


def pressure(resource: str) -> float | None:
    """Linux PSI: share of the last 10 s in which some task waited for
    ``resource`` ("cpu" or "io"), in percent; None where PSI is missing."""
    try:
        text = Path(f"/proc/pressure/{resource}").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("some "):
            return float(line.split("avg10=")[1].split()[0])
    return None


def load_text() -> str:
    """The load average and pressure: other engineers' work skews absolute figures."""
    one, five, fifteen = os.getloadavg()
    cpu, io = pressure("cpu"), pressure("io")
    psi = "" if cpu is None or io is None else f", CPU pressure {cpu:.0f}%, I/O pressure {io:.0f}%"
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}{psi}"


def wait_quiet(max_wait: float, threshold: float = 10.0) -> str:
    """Wait (at most ``max_wait`` s) until CPU and I/O pressure are low; say how it was."""
    deadline = time.monotonic() + max_wait
    while True:
        cpu, io = pressure("cpu"), pressure("io")
        quiet = cpu is not None and io is not None and cpu <= threshold and io <= threshold
        if quiet or time.monotonic() >= deadline:
            return load_text() + (" (quiet)" if quiet else "")
        time.sleep(5)


def source_state() -> str:
    """The commit measured, and whether src/ had edits on top."""
    try:
        head = _git("rev-parse", "--short", "HEAD").strip()
        dirty = _git("status", "--porcelain", "--", "src").splitlines()
    except (OSError, subprocess.SubprocessError):
        return "commit unknown (no git)"
    return f"commit {head}" + (f" + {len(dirty)} uncommitted paths under src/" if dirty else "")


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True, timeout=10
    )
    return done.stdout


def header(what: str) -> dict[str, Any]:
    """Print and return where and on what a run measures."""
    info = {
        "bench": what,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "source": source_state(),
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_at_start": load_text(),
    }
    print(f"# {what}: {info['date']}, {info['source']}, {info['machine']}")
    print(f"# at the start: {info['load_at_start']}")
    return info


def save(name: str, info: dict[str, Any], body: dict[str, Any]) -> Path:
    """Write the run's raw figures to ``bench/results/<name>-<stamp>.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"{name}-{stamp}.json"
    record = {**info, "load_at_end": load_text(), **body}
    out.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"# at the end: {record['load_at_end']}; raw figures in {out}")
    return out


# -- guardrails ---------------------------------------------------------------


@dataclass(frozen=True)
class Guardrail:
    """One guardrail: a ratio from this run against its limit."""

    name: str
    figure: float | None  # None: not measured in this run
    limit: float
    at_least: bool  # True: figure >= limit passes; False: figure <= limit passes
    detail: str = ""

    @property
    def verdict(self) -> str:
        if self.figure is None:
            return "not measured"
        ok = self.figure >= self.limit if self.at_least else self.figure <= self.limit
        return "PASS" if ok else "MISS"

    def row(self) -> str:
        figure = "-" if self.figure is None else f"{self.figure:.2f}"
        sign = ">=" if self.at_least else "<="
        return (
            f"| {self.name} | {figure} | {sign} {self.limit:g} | {self.verdict} | {self.detail} |"
        )


def print_guardrails(rows: list[Guardrail]) -> None:
    print("\n| guardrail | figure | limit | verdict | from |")
    print("|---|---:|---|---|---|")
    for row in rows:
        print(row.row())


def exit_code(rows: list[Guardrail], strict: bool) -> int:
    """Non-zero only with ``--strict`` and a miss (a bench that failed raises instead)."""
    return 1 if strict and any(r.verdict == "MISS" for r in rows) else 0


def guardrails_json(rows: list[Guardrail]) -> list[dict[str, Any]]:
    return [{**asdict(r), "verdict": r.verdict} for r in rows]


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strict", action="store_true", help="exit 1 when a guardrail is missed")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for low CPU and I/O pressure before measuring",
    )


# -- CPUs and processes --------------------------------------------------------


@dataclass(frozen=True)
class Cpus:
    """The server's CPU and the load's CPU (None when the machine has one)."""

    server: int | None
    load: int | None

    @property
    def text(self) -> str:
        if self.server is None:
            return "not pinned (one CPU): load and server share it"
        return f"servers pinned to CPU {self.server}, load to CPU {self.load}"

    def server_prefix(self) -> list[str]:
        return [] if self.server is None else ["taskset", "-c", str(self.server)]

    def load_prefix(self) -> list[str]:
        return [] if self.load is None else ["taskset", "-c", str(self.load)]

    @contextlib.contextmanager
    def load_pinned(self) -> Iterator[None]:
        """This process on the load CPU while the block runs (the CPUs it
        had are given back after, for the next benchmark and its children)."""
        before = os.sched_getaffinity(0)
        if self.load is not None:
            os.sched_setaffinity(0, {self.load})
        try:
            yield
        finally:
            os.sched_setaffinity(0, before)


def cpus() -> Cpus:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2 or shutil.which("taskset") is None:
        return Cpus(None, None)
    return Cpus(allowed[0], allowed[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def deployment_env(**extra: str) -> dict[str, str]:
    """This environment without the caller's VALHALLA_* settings, plus what a
    deployment keeps there (warnings only) and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VALHALLA_")}
    # An installed deployment runs from compiled bytecode; without the cache
    # every start-up compiles each module again (seconds, not milliseconds).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(VALHALLA_LOG_LEVEL="warning", **extra)
    return env


def bench_env(**extra: str) -> dict[str, str]:
    """:func:`deployment_env` with rate limits a benchmark cannot hit."""
    env = deployment_env()
    env.update(
        VALHALLA_RATE_LIMIT_START_SESSION="1000000/minute",
        VALHALLA_RATE_LIMIT_WRITES="1000000/minute",
        PYTHONPATH=str(ROOT),  # bench.framework_app for uvicorn
    )
    env.update(extra)
    return env


def create_token(env: dict[str, str], data_dir: Path | None) -> str:
    """An owner token made the way an operator makes one (``valhalla token
    create``); every benchmark request sends it."""
    argv = [VALHALLA, "token", "create", "--name", "bench", "--scopes", "owner"]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise SystemExit(f"valhalla token create failed: {done.stdout}{done.stderr}")
    return lines[-1].strip()


@contextlib.contextmanager
def serving(argv: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[int]:
    """A server process answering on ``port``; yields its pid (taskset execs,
    so it is the server's own)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{argv} exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"nothing answers on port {port}; log: {log}") from None
                time.sleep(0.1)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def valhalla_serve(port: int, data_dir: Path | None) -> list[str]:
    """``valhalla serve`` as an operator runs it: one worker, warnings only."""
    argv = [VALHALLA, "serve", "--host", HOST, "--port", str(port), "--log-level", "warning"]
    return argv + (["--data-dir", str(data_dir)] if data_dir is not None else [])


def framework_serve(port: int) -> list[str]:
    """The framework-only app under the same uvicorn (httptools, one worker, no access log)."""
    return [
        UVICORN,
        "bench.framework_app:app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--http",
        "httptools",
        "--log-level",
        "warning",
        "--no-access-log",
    ]


class Client:
    """One keep-alive HTTP connection, sending the bench token when given."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.port = port
        self.headers = {"Content-Type": "application/json"}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        self.conn = http.client.HTTPConnection(HOST, port, timeout=60)

    def reconnect(self) -> None:
        """A fresh connection: the server closes idle ones after a few seconds,
        so each timed block starts on its own."""
        self.conn.close()
        self.conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
        self.conn.connect()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> bytes:
        payload = None if body is None else json.dumps(body).encode()
        self.conn.request(method, path, body=payload, headers=self.headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise SystemExit(f"{method} {path}: HTTP {response.status} {data[:300]!r}")
        return data
