"""A small closed-loop load generator, run in its own process by test_soak.

``python -m tests.reliability.loadgen --url URL --seconds 60 --connections 16
--out report.json`` keeps CONNECTIONS requests in flight (one per keep-alive
connection) for SECONDS: mostly reads (session, summary, checklist,
sessions, audit events) and some writes (start/end cycles, complete,
decide). Every answer is classified: 2xx is fine, and so is a 409 for a
start while another connection's session is active; anything else, and
every transport error, is an error (each one is in the report). The report
is JSON: counts, statuses, throughput and latency percentiles (milliseconds),
overall and per operation. Requests carry ``$VALHALLA_TOKEN`` (the server's
owner credential, say) as their bearer token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx

READS: dict[str, tuple[str, dict[str, Any]]] = {
    "session": ("/core/go/session", {}),
    "summary": ("/core/go/summary", {}),
    "checklist": ("/core/go/checklist", {}),
    "sessions": ("/core/go/sessions", {"limit": 20}),
    "audit_events": ("/core/audit/events", {"limit": 50}),
}
ENGINES = ["storage_units", "wholesaling", "fx_arbitrage", "equipment_rental"]
# name -> weight: about 70 % reads, 30 % writes (a cycle is two writes).
MIX = {
    "session": 20,
    "summary": 15,
    "checklist": 10,
    "sessions": 10,
    "audit_events": 15,
    "cycle": 10,
    "complete": 10,
    "decide": 10,
}
ACCEPTED = {("start", 409)}  # another connection's session is active


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[str] = field(default_factory=Counter)
    errors: list[dict[str, Any]] = field(default_factory=list)
    transport_errors: list[str] = field(default_factory=list)


async def call(
    client: httpx.AsyncClient, stats: Stats, name: str, method: str, url: str, **kw: Any
) -> None:
    started = time.perf_counter()
    try:
        resp = await client.request(method, url, **kw)
    except httpx.TransportError as exc:
        stats.transport_errors.append(f"{name} {method} {url}: {exc!r}")
        return
    stats.latencies[name].append(time.perf_counter() - started)
    stats.statuses[str(resp.status_code)] += 1
    error = {"op": name, "method": method, "url": url, "status": resp.status_code}
    if 200 <= resp.status_code < 300:
        try:
            resp.json()
        except ValueError:
            stats.errors.append({**error, "body": "a 2xx body that is not JSON"})
    elif (name, resp.status_code) not in ACCEPTED:
        stats.errors.append({**error, "body": resp.text[:500]})


async def connection(
    url: str, deadline: float, rng: random.Random, stats: Stats, number: int
) -> None:
    names, weights = list(MIX), list(MIX.values())
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    token = os.environ.get("VALHALLA_TOKEN")  # the credential, as the CLI takes it
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(
        base_url=url, timeout=30, limits=limits, headers=headers
    ) as client:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            op = rng.choices(names, weights)[0]
            notes = f"soak c{number} #{n}"
            if op in READS:
                path, params = READS[op]
                await call(client, stats, op, "GET", path, params=params)
            elif op == "cycle":
                start = {"notes": notes}
                await call(client, stats, "start", "POST", "/core/go/start_session", json=start)
                end = {"notes": notes}
                await call(client, stats, "end", "POST", "/core/go/end_session", json=end)
            elif op == "complete":
                body = {
                    "step_id": "preflight_view_dashboard",
                    "done": rng.random() < 0.7,
                    "notes": notes,
                }
                await call(client, stats, "complete", "POST", "/core/go/complete", json=body)
            else:
                params = {"engine": rng.choice(ENGINES), "action": "run"}
                await call(client, stats, "decide", "GET", "/core/cone/decide", params=params)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = max(0, math.ceil(q * len(sorted_values)) - 1)
    return sorted_values[index]


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    ms = 1000.0
    return {
        "count": len(ordered),
        "p50_ms": round(percentile(ordered, 0.50) * ms, 2),
        "p90_ms": round(percentile(ordered, 0.90) * ms, 2),
        "p99_ms": round(percentile(ordered, 0.99) * ms, 2),
        "max_ms": round((ordered[-1] if ordered else 0.0) * ms, 2),
        "mean_ms": round((sum(ordered) / len(ordered) if ordered else 0.0) * ms, 2),
    }


async def run(url: str, seconds: float, connections: int, seed: int) -> dict[str, Any]:
    stats = Stats()
    rng = random.Random(seed)
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(
        *(
            connection(url, deadline, random.Random(rng.random()), stats, i)
            for i in range(connections)
        )
    )
    elapsed = time.monotonic() - started
    every = [v for values in stats.latencies.values() for v in values]
    return {
        "url": url,
        "seconds": round(elapsed, 2),
        "connections": connections,
        "seed": seed,
        "requests": len(every),
        "throughput_rps": round(len(every) / elapsed, 1),
        "latency": summary(every),
        "by_operation": {name: summary(v) for name, v in sorted(stats.latencies.items())},
        "statuses": dict(sorted(stats.statuses.items())),
        "errors": len(stats.errors),
        "error_samples": stats.errors[:1000],
        "transport_errors": len(stats.transport_errors),
        "transport_error_samples": stats.transport_errors[:20],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    report = asyncio.run(run(args.url, args.seconds, args.connections, args.seed))
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
