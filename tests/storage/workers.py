"""Process entry points for the multi-process tests (importable under 'spawn')."""

from __future__ import annotations

from multiprocessing.synchronize import Event
from pathlib import Path

from valhalla_gov.compose import open_json
from valhalla_gov.go.store import PROGRESS
from valhalla_gov.storage.json_store import DataDirLock
from valhalla_gov.storage.protocol import Store


def open_store(backend: str, tmp_path: Path) -> Store:
    """The same store the ``store`` fixture made in the parent process."""
    if backend == "json":
        # Opened directly: importing tests.conftest pulls in the whole app,
        # which costs every spawned process most of a second.
        return open_json(tmp_path / "data")
    from tests.conftest import make_store

    return make_store(backend, tmp_path)


def take_lock(lock_path: str, ready: Event, acquired: Event) -> None:
    """Say we are about to take the lock, take it, and say we have it."""
    lock = DataDirLock(Path(lock_path))
    ready.set()
    with lock.hold():
        acquired.set()


def increment_counter(backend: str, tmp_path: str, times: int, start: Event) -> None:
    """Read-modify-write one document ``times`` times, each in a transaction."""
    store = open_store(backend, Path(tmp_path))
    start.wait(30)
    for _ in range(times):
        with store.transaction() as txn:
            doc = txn.read_document(PROGRESS) or {"count": 0}
            txn.write_document(PROGRESS, {"count": doc["count"] + 1})
