"""What a long audit log costs the service: disk, `audit verify`, start-up,
memory, a backup, at N chained events (the audit log is never pruned).

For each N given (default 1,000,000 and 10,000,000) a data dir holding N
chained audit events (the GO session start/end lines ``bench_verify``
writes, built once and cached in ``bench/results/growth-<N>/``) is copied to
a scratch dir, then measured there:

- **disk**: ``audit.log`` and its kind index (built by a first
  ``valhalla audit tail --event``, whose time is shown too), per 10^6 events;
- **verify**: ``valhalla audit verify`` as a fresh process (wall seconds and
  peak memory, via ``/usr/bin/time``), and ``GET /core/audit/verify`` on the
  server (one process walks it);
- **start-up**: ``valhalla serve`` until ``/core/readyz`` answers 200 and the
  first ``GET /core/go/session``; the server's resident memory then, and its
  peak after the verify;
- **backup**: ``valhalla data backup`` of the dir, and the longest a writer
  beside it waited for the data dir's lock (the snapshot's file copy).

With ``--database-url`` the PostgreSQL table size per 10^6 audit rows is
measured too (loaded by ``bench_verify``'s COPY into a scratch database).

    .venv/bin/python -m bench.bench_growth
    .venv/bin/python -m bench.bench_growth --entries 1000000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/valhalla_bench
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx2 as httpx

from bench.common import load_text
from bench.fill import ensure_filled
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.compose import open_json
from valhalla_gov.storage.json_index import sidecar_path

BIN = Path(sys.executable).parent
VALHALLA = str(BIN / "valhalla")
MB = 1_000_000


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VALHALLA_")}
    return {**clean, "VALHALLA_RATE_LIMIT_WRITES": "1000000/minute"}


def timed_command(argv: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak resident MB and stdout of one fresh process."""
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *argv], env=env(), capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stdout}{done.stderr}")
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return wall, peak_kb * 1024 / MB, done.stdout


def memory(pid: int) -> tuple[float, float]:
    """Resident and peak resident MB of a process (VmRSS, VmHWM)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (
        int(fields["VmRSS"].split()[0]) * 1024 / MB,
        int(fields["VmHWM"].split()[0]) * 1024 / MB,
    )


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def measure(entries: int, scratch: Path) -> list[tuple[str, str]]:
    cached = ensure_filled(entries)
    data = scratch / f"data-{entries}"
    data.mkdir(mode=0o700)
    shutil.copyfile(cached / AUDIT_LOG.file, data / AUDIT_LOG.file)
    log_bytes = (data / AUDIT_LOG.file).stat().st_size
    rows = [("audit.log", f"{log_bytes / MB:,.0f} MB ({log_bytes / entries:.0f} B per event)")]

    wall, _, _ = timed_command(
        [VALHALLA, "audit", "tail", "-n", "1", "--event", "NOTE", "--data-dir", str(data)]
    )
    index_bytes = sidecar_path(data / AUDIT_LOG.file).stat().st_size
    rows.append(("kind index", f"{index_bytes / MB:,.0f} MB, built in {wall:.1f} s (first query)"))
    per_million = (log_bytes + index_bytes) * 1_000_000 / entries / MB
    rows.append(("disk per 10^6 events", f"{per_million:,.0f} MB"))

    wall, peak, out = timed_command([VALHALLA, "audit", "verify", "--data-dir", str(data)])
    assert "OK" in out, out
    rows.append(("`valhalla audit verify` (CLI)", f"{wall:.1f} s, peak {peak:,.0f} MB"))

    rows += measure_server(data, entries, scratch)
    # Meanwhile a writer takes the data dir's lock again and again: its
    # longest wait is how long the backup held writers up.
    store, stop, waits = open_json(data), threading.Event(), [0.0]

    def writer() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            with store.transaction():
                waits.append(time.perf_counter() - started)
            time.sleep(0.01)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        wall, peak, _ = timed_command(
            [VALHALLA, "data", "backup", "--data-dir", str(data), "--to", str(scratch / "backup")]
        )
    finally:
        stop.set()
        thread.join()
    rows.append(("`valhalla data backup`", f"{wall:.1f} s, peak {peak:,.0f} MB"))
    rows.append(("  of which writers waited at most", f"{max(waits):.2f} s"))
    shutil.rmtree(scratch / "backup")
    shutil.rmtree(data)
    return rows


def measure_server(data: Path, entries: int, scratch: Path) -> list[tuple[str, str]]:
    rows = []
    port = free_port()
    log = open(scratch / f"serve-{entries}.log", "wb")  # noqa: SIM115 - closed below
    started = time.perf_counter()
    server = subprocess.Popen(
        [VALHALLA, "serve", "--port", str(port), "--data-dir", str(data), "--log-level", "warning"],
        env=env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(f"{url}/core/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None:
                raise SystemExit((scratch / f"serve-{entries}.log").read_text())
            time.sleep(0.05)
        session = httpx.get(f"{url}/core/go/session", timeout=60)
        ready = time.perf_counter() - started
        assert session.status_code == 200, session.text
        rss, _ = memory(server.pid)
        rows.append(("start-up to ready and the first session read", f"{ready:.1f} s"))
        rows.append(("server memory after start-up", f"{rss:,.0f} MB resident"))
        started = time.perf_counter()
        verify = httpx.get(f"{url}/core/audit/verify", timeout=3600)
        wall = time.perf_counter() - started
        assert verify.json()["ok"], verify.text
        rss, peak = memory(server.pid)
        rows.append(("GET /core/audit/verify (server)", f"{wall:.1f} s"))
        rows.append(("server memory after it", f"{rss:,.0f} MB resident, peak {peak:,.0f} MB"))
    finally:
        server.terminate()
        server.wait(60)
        log.close()
    return rows


def pg_size(base_url: str, entries: int) -> str:
    import psycopg

    from bench.pg import ensure_filled_pg, libpq

    url = ensure_filled_pg(base_url, entries)
    with psycopg.connect(libpq(url)) as conn:
        row = conn.execute("SELECT pg_total_relation_size('log_records')").fetchone()
    assert row is not None
    return f"{row[0] / MB:,.0f} MB per {entries:,} rows with indexes"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--database-url", default=None, help="PostgreSQL server and name prefix")
    args = parser.parse_args(argv)
    print(load_text())
    with tempfile.TemporaryDirectory(prefix="valhalla-growth-", dir=Path.cwd()) as tmp:
        for entries in args.entries:
            print(f"\n{entries:,} chained audit events, JSON data dir")
            for name, value in measure(entries, Path(tmp)):
                print(f"  {name:<48} {value}")
    if args.database_url:
        print(f"\nPostgreSQL log_records: {pg_size(args.database_url, min(args.entries))}")
    print(load_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
