"""Process entry points for the multi-process audit test (importable under 'spawn')."""

from __future__ import annotations

from multiprocessing.synchronize import Event
from pathlib import Path

from tests.audit.helpers import record_event
from tests.storage.workers import open_store
from valhalla_gov.timeutil import utc_now


def append_events(backend: str, tmp_path: str, worker: int, times: int, start: Event) -> None:
    """Append ``times`` audit events as ``worker-<n>``, once every process is up."""
    store = open_store(backend, Path(tmp_path))
    start.wait(30)
    for n in range(times):
        record_event(
            store=store,
            event="tick",
            payload={"worker": worker, "n": n},
            actor=f"worker-{worker}",
            clock=utc_now,
        )
