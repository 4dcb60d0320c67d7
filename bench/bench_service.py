"""Where a start+end's time goes, layer by layer, in process, in one run.

Not a target figure (those are over HTTP, ``bench.bench_writes``): this tells
which layer a pair's time is spent in, so a change aims at the right one.
Interleaved rounds of:

- ``raw``: the floor's writes (``bench_writes.Floor``: replace, append,
  append, replace, append, with fsync), JSON only;
- ``service``: ``session_service.start_session`` + ``end_session`` on the
  store (a JSON data dir with real fsyncs, or a PostgreSQL scratch database),
  one long-lived ChainWatcher as a server holds;
- ``service, no fsync`` (JSON): the same with fsync replaced by a no-op (the
  services' CPU without the disk's waits);
- ``app``: POST /core/go/start_session + POST /core/go/end_session through
  the real app (``create_app``, its lifespan running), called as ASGI in this
  process: everything but the HTTP server and the socket.

Each with wall time and this process's user and system CPU per pair (the
database's own CPU is not in it). ``app`` minus ``service`` is what the
request path (middleware, routing, dependencies, validation, the thread hop,
serialisation) adds; ``bench_writes``' pair minus ``app`` is the HTTP server.

    .venv/bin/python -m bench.bench_service
    .venv/bin/python -m bench.bench_service --backend postgres
    .venv/bin/python -m bench.bench_service --pairs 500 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from bench.bench_writes import Floor
from bench.common import load_text, source_state
from valhalla_gov.app import create_app
from valhalla_gov.audit.service import ChainWatcher
from valhalla_gov.compose import open_json, open_sql
from valhalla_gov.go import session_service
from valhalla_gov.health.service import compute_health
from valhalla_gov.settings import Settings
from valhalla_gov.storage import json_store
from valhalla_gov.storage.protocol import Store
from valhalla_gov.timeutil import utc_now

_HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"content-type", b"application/json"),
    (b"content-length", b"2"),
]


def _measure(run: Callable[[int], None], pairs: int) -> dict[str, float]:
    before, began = os.times(), time.perf_counter()
    run(pairs)
    wall, after = time.perf_counter() - began, os.times()
    return {
        "wall_ms": wall / pairs * 1000,
        "user_ms": (after.user - before.user) / pairs * 1000,
        "sys_ms": (after.system - before.system) / pairs * 1000,
    }


def _repeat(op: Callable[[], None]) -> Callable[[int], None]:
    def run(pairs: int) -> None:
        for _ in range(pairs):
            op()

    return run


class AppPairs:
    """The app on a loop of its own, its lifespan running; ``pairs(n)`` sends
    n starts and ends through it as ASGI calls from a loopback client.

    All n run in one task, as a server's requests all run under its one
    long-lived task: anyio ties its worker threads to the task that started
    the loop, so a task per pair would start a new worker thread per pair
    (about 0.5 ms a pair, which no server pays)."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self.loop = asyncio.new_event_loop()
        self._lifespan = self.app.router.lifespan_context(self.app)
        self.loop.run_until_complete(self._lifespan.__aenter__())

    async def _post(self, path: str) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": _HEADERS,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": b"{}", "more_body": False}
            await asyncio.Event().wait()  # the client never goes away
            raise AssertionError("unreachable")

        status: list[int] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await self.app(scope, receive, send)
        if not status or status[0] >= 300:
            raise RuntimeError(f"POST {path}: {status}")

    def pairs(self, n: int) -> None:
        self.loop.run_until_complete(self._pairs(n))

    async def _pairs(self, n: int) -> None:
        for _ in range(n):
            await self._post("/core/go/start_session")
            await self._post("/core/go/end_session")

    def close(self) -> None:
        self.loop.run_until_complete(self._lifespan.__aexit__(None, None, None))
        self.loop.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="valhalla-bench-service-", dir=args.tmp))
    os.environ["VALHALLA_RATE_LIMIT_START_SESSION"] = "100000000/minute"
    os.environ["VALHALLA_RATE_LIMIT_WRITES"] = "100000000/minute"
    store: Store
    if args.backend == "postgres":
        from bench.pg import DEFAULT_URL, empty_database

        # One database per layer: the app's cache never sees the service
        # layer's writes (nor the other way round).
        base = args.database_url or DEFAULT_URL
        store = open_sql(empty_database(base))
        app_settings = Settings(database_url=empty_database(base, "empty_app"))
    else:
        store = open_json(work / "data")
        app_settings = Settings(data_dir=work / "app-data")
    health = compute_health(store=store, clock=utc_now, watcher=ChainWatcher())
    app = AppPairs(app_settings)

    def pair() -> None:
        session_service.start_session(
            store=store, clock=utc_now, actor="bench", notes=None, health=health
        )
        session_service.end_session(
            store=store, clock=utc_now, actor="bench", notes=None, health=health
        )

    ops: dict[str, Callable[[int], None]] = {"service": _repeat(pair), "app": app.pairs}
    if args.backend == "json":
        (work / "floor").mkdir()
        floor = Floor(work / "floor")
        real_fsync = json_store.FileOps.fsync

        def pair_without_fsync() -> None:
            json_store.FileOps.fsync = lambda self, fd: None  # type: ignore[method-assign]
            try:
                pair()
            finally:
                json_store.FileOps.fsync = real_fsync  # type: ignore[method-assign]

        def raw() -> None:
            floor.replace()
            floor.append()
            floor.append()
            floor.replace()
            floor.append()

        ops = {"raw": _repeat(raw), "service, no fsync": _repeat(pair_without_fsync), **ops}
    try:
        for op in ops.values():  # imports, caches
            op(50)
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in ops}
        for _ in range(args.rounds):
            for name, op in ops.items():
                samples[name].append(_measure(op, args.pairs))
    finally:
        app.close()
    medians = {
        name: {k: round(statistics.median(s[k] for s in runs), 3) for k in runs[0]}
        for name, runs in samples.items()
    }
    shares: dict[str, float] = {
        "app / service (wall)": medians["app"]["wall_ms"] / medians["service"]["wall_ms"],
    }
    if "raw" in medians:
        shares["service / raw (wall)"] = medians["service"]["wall_ms"] / medians["raw"]["wall_ms"]
    return {
        "backend": args.backend,
        "code": source_state(),
        "load": load_text(),
        "pairs_per_round": args.pairs,
        "rounds": args.rounds,
        "per_pair_median": medians,
        "ratios": {k: round(v, 3) for k, v in shares.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("json", "postgres"), default="json")
    parser.add_argument("--database-url", default=None, help="PostgreSQL server and name prefix")
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tmp", default=None, help="scratch dir (the data dir's file system)")
    args = parser.parse_args()
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
