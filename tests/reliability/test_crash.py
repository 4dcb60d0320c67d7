"""kill -9 of a multi-worker server at random moments of a write storm, many
rounds: nothing acknowledged is lost, every file parses, the chain verifies.

Each round starts the real ``valhalla serve --workers 2`` on the same data,
checks the restarted server is ready, runs six client threads sending a mix
of start / end / complete / cone set / decide, and kills the whole process
group (SIGKILL) at a random moment. Then the data is checked from outside
(see ``storm.check_store``). The seed is printed; ``VALHALLA_TEST_SEED``
replays the same choices (the kill lands where the timing puts it).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.conftest import _truncate, sized
from tests.live.server import LiveServer
from tests.reliability.conftest import Record, seed_for
from tests.reliability.storm import Ledger, check_files_parse, check_store, storm_worker
from valhalla_gov.compose import open_json, open_sql
from valhalla_gov.storage.protocol import Store
from valhalla_gov.storage.sql_backend import SqlStore

pytestmark = [pytest.mark.reliability, pytest.mark.live, pytest.mark.slow]

THREADS = 6


def _assert_ready(server: LiveServer) -> None:
    ready = httpx.get(f"{server.url}/core/readyz", timeout=10)
    assert ready.status_code == 200, f"restarted server not ready: {ready.text}"
    verify = httpx.get(f"{server.url}/core/audit/verify", headers=server.headers, timeout=30).json()
    assert verify["ok"] is True, verify


def _storm_round(server: LiveServer, ledger: Ledger, rng: random.Random, round_no: int) -> float:
    """Storm the server and kill -9 it after a random delay; return the delay."""
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=storm_worker,
            args=(
                server.url,
                ledger,
                stop,
                random.Random(rng.random()),
                f"r{round_no}t{i}",
                server.headers,
            ),
        )
        for i in range(THREADS)
    ]
    acked_before = len(ledger.acks)
    for thread in threads:
        thread.start()
    # The random delay counts from the first answer of this round, so that on
    # a loaded machine the kill still lands mid-storm, not before it began.
    deadline = time.monotonic() + 60
    while len(ledger.acks) == acked_before and time.monotonic() < deadline:
        time.sleep(0.01)
    delay = rng.uniform(0.3, 1.8)
    time.sleep(delay)
    server.kill()  # SIGKILL to the whole process group, mid-request
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a storm client hangs after the kill"
    return delay


def _storm(
    *,
    name: str,
    data_dir: Path,
    rounds: int,
    open_store: Any,
    atomic: bool,
    env: dict[str, str] | None,
    record_figures: Record,
) -> None:
    seed = seed_for(name)
    rng = random.Random(seed)
    ledger = Ledger()
    delays: list[float] = []
    files: dict[str, int] = {}
    started = time.monotonic()
    for round_no in range(rounds):
        server = LiveServer(data_dir, workers=2, env=env).start()
        try:
            _assert_ready(server)
            delays.append(_storm_round(server, ledger, rng, round_no))
        finally:
            server.kill()
        assert not ledger.unexpected, f"seed {seed}: unexpected answers: {ledger.unexpected[:5]}"
        files = check_files_parse(data_dir) if not atomic else {}
        store: Store = open_store()
        try:
            counts = check_store(store, ledger, atomic=atomic)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}, round {round_no}: {exc}") from None
        finally:
            if isinstance(store, SqlStore):
                store.close()
    with LiveServer(data_dir, workers=2, env=env) as server:
        _assert_ready(server)
    acked = ledger.acked_by_kind()
    assert all(acked.values()), f"seed {seed}: the storm did not get every kind going: {acked}"
    assert acked["start"] >= rounds, f"seed {seed}: too few sessions started: {acked}"
    record_figures(
        name,
        {
            "seed": seed,
            "rounds": rounds,
            "kill_after_s": [round(d, 2) for d in delays],
            "acknowledged": acked,
            "acknowledged_total": sum(acked.values()),
            "refused_409": sum(ledger.refused.values()),
            "in_flight_at_kill": sum(len(v) for v in ledger.in_flight.values()),
            "audit_events": counts["audit_events"],
            "sessions": counts["sessions"],
            "unacknowledged_partial": counts["unacknowledged_partial"],
            "files_at_the_end": files,
            "seconds": round(time.monotonic() - started, 1),
        },
    )


def test_kill_minus_nine_during_a_write_storm(tmp_path: Path, record_figures: Record) -> None:
    data_dir = tmp_path / "data"
    _storm(
        name="crash_json",
        data_dir=data_dir,
        rounds=sized(2, 10),
        open_store=lambda: open_json(data_dir),
        atomic=False,
        env=None,
        record_figures=record_figures,
    )


def test_kill_minus_nine_during_a_write_storm_on_postgres(
    tmp_path: Path, pg_url: str, record_figures: Record
) -> None:
    _truncate(pg_url)
    _storm(
        name="crash_postgres",
        data_dir=tmp_path / "data",
        rounds=sized(2, 4),
        open_store=lambda: open_sql(pg_url),
        atomic=True,
        env={"VALHALLA_DATABASE_URL": pg_url},
        record_figures=record_figures,
    )
