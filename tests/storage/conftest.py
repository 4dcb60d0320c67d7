"""Fixtures for the storage tests: the JSON backend itself, reopening a store,
and a tiny tmpfs for disk-full and read-only faults."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import make_store, mounted_tmpfs
from valhalla_gov.compose import open_json
from valhalla_gov.storage.json_backend import JsonStore
from valhalla_gov.storage.protocol import Store


@pytest.fixture
def jstore(tmp_path: Path) -> JsonStore:
    """The JSON-file backend, for tests about its files and bytes."""
    return open_json(tmp_path / "data")


@pytest.fixture
def reopen(request: pytest.FixtureRequest, tmp_path: Path, store: Store) -> Callable[[], Store]:
    """A second, independent store on the same data as ``store`` (a restart, or
    another worker)."""
    backend = str(request.node.callspec.params["store"])
    return lambda: make_store(backend, tmp_path)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs inside tmp_path (skips where it cannot mount)."""
    with mounted_tmpfs(tmp_path / "tiny", "256k") as mount_point:
        yield mount_point
