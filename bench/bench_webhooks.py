"""Does a write wait for webhooks? Write latency with and without them.

Starts the real ``valhalla serve`` (JSON data dir) once per scenario and
sends sequential ``POST /core/cone/state`` writes (each one audited, so each
one is an event for every webhook):

- ``baseline``: no webhook;
- ``up``: K webhooks (``--events all``) to a local receiver answering at once;
- ``slow``: K webhooks to a receiver that answers after ``--slow`` seconds;
- ``down``: K webhooks to a closed port (every attempt fails, retries pile up).

Scenarios are interleaved round by round, and each is reported as a ratio
against the baseline of the same round, so machine noise cancels out as far
as it can. Run: ``python -m bench webhooks``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

from bench import common
from bench.common import wait_quiet
from valhalla_gov.compose import open_json
from valhalla_gov.settings import Settings
from valhalla_gov.timeutil import utc_now
from valhalla_gov.webhooks import service
from valhalla_gov.webhooks.keys import load_key
from valhalla_gov.webhooks.models import WebhookCreate

RESULTS_DIR = Path(__file__).parent / "results"
VALHALLA = str(Path(sys.executable).with_name("valhalla"))
SCENARIOS = ("baseline", "up", "slow", "down")
QUIET = ("--log-level", "error")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# The receiver runs in a process of its own: in this one its threads would
# take the GIL from the client whose latencies are measured.
RECEIVER = """
import http.server, sys, time
delay = float(sys.argv[2])
count = 0
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        self.rfile.read(int(self.headers.get("content-length", "0")))
        count += 1
        if delay:
            time.sleep(delay)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def do_GET(self):
        body = str(count).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
server.daemon_threads = True
server.serve_forever()
"""


class Receiver:
    def __init__(self, delay: float) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RECEIVER, str(self.port), str(delay)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.count()
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def count(self) -> int:
        return int(httpx.get(f"http://127.0.0.1:{self.port}/", timeout=10).text)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def run_scenario(name: str, writes: int, hooks: int, slow: float) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"bench-webhooks-{name}-"))
    data_dir = root / "data"
    receiver = Receiver(slow if name == "slow" else 0.0) if name in ("up", "slow") else None
    try:
        store = open_json(data_dir)
        if name != "baseline":
            url = f"http://127.0.0.1:{receiver.port if receiver else free_port()}/hook"
            key = load_key(Settings(data_dir=data_dir), create=True)
            assert key is not None
            for n in range(hooks):
                spec = WebhookCreate(url=url, name=f"hook{n}", events=["all"])
                service.add_webhook(store=store, key=key, spec=spec, actor="bench", clock=utc_now)
        port = free_port()
        env = common.bench_env(
            VALHALLA_WEBHOOK_POLL_SECONDS="0.2",
            VALHALLA_WEBHOOK_RETRY_BASE_SECONDS="0.2",
            VALHALLA_WEBHOOK_RETRY_MAX_SECONDS="1",
        )
        token = common.create_token(env, data_dir)
        proc = subprocess.Popen(
            [VALHALLA, "serve", "--port", str(port), "--data-dir", str(data_dir), *QUIET],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            auth = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base, timeout=30, headers=auth) as client:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if client.get("/core/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("server did not start")
                    time.sleep(0.1)
                for n in range(20):  # warm up
                    client.post("/core/cone/state", json={"band": "B", "reason": f"warm {n}"})
                latencies = []
                for n in range(writes):
                    band = "ABCD"[n % 4]
                    started = time.perf_counter()
                    resp = client.post("/core/cone/state", json={"band": band, "reason": f"w{n}"})
                    latencies.append((time.perf_counter() - started) * 1000)
                    assert resp.status_code == 200, resp.text
            deliveries = receiver.count() if receiver else 0
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        ordered = sorted(latencies)
        return {
            "median_ms": statistics.median(latencies),
            "p95_ms": ordered[int(len(ordered) * 0.95) - 1],
            "p99_ms": ordered[int(len(ordered) * 0.99) - 1],
            "deliveries_during_writes": deliveries,
        }
    finally:
        if receiver is not None:
            receiver.close()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench webhooks", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hooks", type=int, default=5)
    parser.add_argument("--slow", type=float, default=0.5, help="seconds the slow receiver takes")
    parser.add_argument("--quiet-wait", type=float, default=0)
    args = parser.parse_args(argv)
    info = common.header("webhooks")
    if args.quiet_wait:
        print(wait_quiet(args.quiet_wait))
    rounds: list[dict[str, dict[str, Any]]] = []
    for r in range(args.rounds):
        result = {
            name: run_scenario(name, args.writes, args.hooks, args.slow) for name in SCENARIOS
        }
        rounds.append(result)
        base = result["baseline"]
        print(f"\nround {r + 1}: {args.writes} writes, {args.hooks} webhooks each")
        for name, fig in result.items():
            ratio = fig["median_ms"] / base["median_ms"]
            print(
                f"  {name:8} median {fig['median_ms']:6.2f} ms (x{ratio:.2f})"
                f"  p95 {fig['p95_ms']:6.2f} ms (x{fig['p95_ms'] / base['p95_ms']:.2f})"
                f"  p99 {fig['p99_ms']:6.2f} ms  deliveries {fig['deliveries_during_writes']}"
            )
    print("\nmedian over rounds of the per-round ratio to the baseline:")
    for name in SCENARIOS[1:]:
        med = statistics.median(r[name]["median_ms"] / r["baseline"]["median_ms"] for r in rounds)
        p95 = statistics.median(r[name]["p95_ms"] / r["baseline"]["p95_ms"] for r in rounds)
        print(f"  {name:8} median x{med:.2f}  p95 x{p95:.2f}")
    common.save("webhooks", {**info, "args": vars(args)}, {"rounds": rounds})
    return 0
