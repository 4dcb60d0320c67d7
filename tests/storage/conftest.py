"""Fixtures for the storage tests: the JSON backend itself, reopening a store,
and a tiny tmpfs for disk-full and read-only faults."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import make_store
from valhalla_gov.storage.json_backend import JsonStore
from valhalla_gov.storage.protocol import Store


@pytest.fixture
def jstore(tmp_path: Path) -> JsonStore:
    """The JSON-file backend, for tests about its files and bytes."""
    return JsonStore(tmp_path / "data")


@pytest.fixture
def reopen(request: pytest.FixtureRequest, tmp_path: Path, store: Store) -> Callable[[], Store]:
    """A second, independent store on the same data as ``store`` (a restart, or
    another worker)."""
    backend = str(request.node.callspec.params["store"])
    return lambda: make_store(backend, tmp_path)


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs mounted inside tmp_path, unmounted afterwards.

    Mounting needs root and a kernel/container that allows it; where it is not
    possible the test is skipped (this is a fault injection, not a service CI
    must provide).
    """
    if os.geteuid() != 0:
        pytest.skip("disk-full/read-only tests mount a tmpfs, which needs root")
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    try:
        result = _run("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point))
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot run mount here: {exc}")
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        done = _run("umount", str(mount_point))
        if done.returncode != 0:  # still busy: detach so the tmp dir can go
            _run("umount", "-l", str(mount_point))
