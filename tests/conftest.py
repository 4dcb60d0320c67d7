"""Shared fixtures: a store per backend, a controllable clock, an app client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from valhalla_gov.app import create_app
from valhalla_gov.audit.service import ChainWatcher
from valhalla_gov.settings import Settings
from valhalla_gov.storage.json_backend import JsonStore
from valhalla_gov.storage.protocol import Store

REQUIRE_SERVICES = os.environ.get("VALHALLA_TEST_REQUIRE_SERVICES") == "1"


def need(condition: bool, message: str) -> None:
    """Skip when a real part is missing on this machine; fail where CI needs it."""
    if condition:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"required by VALHALLA_TEST_REQUIRE_SERVICES=1: {message}")
    pytest.skip(message)


class FakeClock:
    """A clock tests move by hand: ``clock.advance(seconds=5)``."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, 9, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


# Every backend the contract tests run against. The SQL backends join here.
BACKENDS = ["json"]


def make_store(backend: str, tmp_path: Path) -> Store:
    if backend == "json":
        return JsonStore(tmp_path / "data")
    raise AssertionError(f"unknown backend {backend}")


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return make_store(str(request.param), tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def watcher() -> ChainWatcher:
    return ChainWatcher()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def client(data_dir: Path, clock: FakeClock) -> Iterator[TestClient]:
    app = create_app(Settings(data_dir=data_dir), clock=clock)
    # raise_server_exceptions=False: a 500 is answered as users would see it.
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
