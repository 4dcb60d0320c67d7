"""Several processes appending at once leave one valid audit chain."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from tests.audit import workers
from valhalla_gov.audit.service import ChainWatcher, verify_chain
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.storage.protocol import Store

SPAWN = multiprocessing.get_context("spawn")
PROCESSES = 4
EACH = 50


def test_concurrent_processes_keep_the_chain_valid(
    request: pytest.FixtureRequest, store: Store, tmp_path: Path
) -> None:
    backend = str(request.node.callspec.params["store"])
    start = SPAWN.Event()
    procs = [
        SPAWN.Process(
            target=workers.append_events, args=(backend, str(tmp_path), worker, EACH, start)
        )
        for worker in range(PROCESSES)
    ]
    try:
        for proc in procs:
            proc.start()
        start.set()
        for proc in procs:
            proc.join(120)
        assert [proc.exitcode for proc in procs] == [0] * PROCESSES
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(10)

    records = [entry.record for entry in store.scan_log_forward(AUDIT_LOG)]
    assert [r["seq"] for r in records] == list(range(1, PROCESSES * EACH + 1))
    # Every process's events are all there, each in its own order.
    for worker in range(PROCESSES):
        mine = [r["payload"]["n"] for r in records if r["actor"] == f"worker-{worker}"]
        assert mine == list(range(EACH))
    result = verify_chain(store=store)
    assert result.model_dump() == {
        "ok": True,
        "events": PROCESSES * EACH,
        "legacy_events": 0,
        "first_bad_seq": None,
        "detail": None,
        "head_seq": PROCESSES * EACH,
        "head_hash": records[-1]["hash"],
        "anchored": False,
    }
    assert ChainWatcher().check(store) is None
