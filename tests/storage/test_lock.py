"""DataDirLock and store transactions: exclusive across threads and processes,
re-entrant within a thread."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.storage import workers
from valhalla_gov.go.store import PROGRESS
from valhalla_gov.storage.json_backend import JsonStore
from valhalla_gov.storage.json_store import DataDirLock
from valhalla_gov.storage.protocol import Store

SPAWN = multiprocessing.get_context("spawn")
BLOCKED_FOR = 0.3  # how long a waiter must stay blocked to count as excluded


def flock_is_free(lock_path: Path) -> bool:
    """Whether another open file (as another process would) could take the flock now."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def run_in_thread(target: Callable[[], None], timeout: float = 10) -> None:
    """Run ``target`` in a thread and fail (instead of hanging) if it blocks."""
    errors: list[BaseException] = []

    def body() -> None:
        try:
            target()
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "deadlocked"
    if errors:
        raise errors[0]


def test_lock_is_reentrant_in_one_thread(tmp_path: Path) -> None:
    lock_path = tmp_path / ".valhalla.lock"
    lock = DataDirLock(lock_path)
    states: list[bool] = []

    def nested() -> None:
        with lock.hold():
            states.append(flock_is_free(lock_path))
            with lock.hold(), lock.hold():
                states.append(flock_is_free(lock_path))
            # Leaving the inner levels must not release the outer hold.
            states.append(flock_is_free(lock_path))
        states.append(flock_is_free(lock_path))

    run_in_thread(nested)
    assert states == [False, False, False, True]


def test_store_transactions_nest_in_one_thread(jstore: JsonStore) -> None:
    def nested() -> None:
        with jstore.transaction() as outer, jstore.transaction() as inner:
            inner.write_document(PROGRESS, {"count": 1})
            assert outer.read_document(PROGRESS) == {"count": 1}

    run_in_thread(nested)
    assert flock_is_free(jstore.data_dir / ".valhalla.lock")


def test_lock_excludes_another_thread(tmp_path: Path) -> None:
    lock = DataDirLock(tmp_path / ".valhalla.lock")
    waiting = threading.Event()
    acquired = threading.Event()

    def other() -> None:
        waiting.set()
        with lock.hold():
            acquired.set()

    with lock.hold():
        thread = threading.Thread(target=other, daemon=True)
        thread.start()
        assert waiting.wait(10)
        assert not acquired.wait(BLOCKED_FOR), "another thread got in while the lock was held"
    assert acquired.wait(10), "the waiting thread never got the lock"
    thread.join(10)


def test_lock_is_released_when_the_body_raises(tmp_path: Path) -> None:
    lock_path = tmp_path / ".valhalla.lock"
    lock = DataDirLock(lock_path)
    with pytest.raises(KeyError), lock.hold():
        raise KeyError("x")
    assert flock_is_free(lock_path)

    def take_it() -> None:
        with lock.hold():
            pass

    run_in_thread(take_it)  # the thread lock was released too


def test_threads_never_lose_an_update(tmp_path: Path) -> None:
    lock = DataDirLock(tmp_path / ".valhalla.lock")
    box = {"n": 0}

    def work() -> None:
        for _ in range(200):
            with lock.hold():
                value = box["n"]
                time.sleep(0)  # invite a switch between read and write
                box["n"] = value + 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert box["n"] == 1200


def test_lock_excludes_another_process(tmp_path: Path) -> None:
    lock_path = tmp_path / ".valhalla.lock"
    lock = DataDirLock(lock_path)
    ready, acquired = SPAWN.Event(), SPAWN.Event()
    child = SPAWN.Process(target=workers.take_lock, args=(str(lock_path), ready, acquired))
    try:
        with lock.hold():
            child.start()
            assert ready.wait(60), "the child process never started"
            assert not acquired.wait(BLOCKED_FOR), "another process got in while the lock was held"
        assert acquired.wait(30), "the child never got the lock after it was released"
        child.join(30)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join(10)


def test_processes_never_lose_an_update(
    request: pytest.FixtureRequest, store: Store, tmp_path: Path
) -> None:
    """4 processes x 25 read-modify-write cycles on one document: exact count."""
    backend = str(request.node.callspec.params["store"])
    start = SPAWN.Event()
    procs = [
        SPAWN.Process(target=workers.increment_counter, args=(backend, str(tmp_path), 25, start))
        for _ in range(4)
    ]
    try:
        for proc in procs:
            proc.start()
        start.set()
        for proc in procs:
            proc.join(60)
        assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(10)
    assert store.read_document(PROGRESS) == {"count": 100}
