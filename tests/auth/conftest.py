"""Fixtures for auth tests: an app with tokens of every scope."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import FakeClock
from valhalla_gov.app import create_app
from valhalla_gov.auth.service import create_token
from valhalla_gov.compose import open_json
from valhalla_gov.settings import Settings

LOOPBACK = ("127.0.0.1", 50000)
REMOTE = ("203.0.113.7", 50000)


@dataclass
class Tokens:
    viewer: str
    operator: str
    owner: str

    def header(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, scope)}"}


def make_tokens(data_dir: Path, clock: FakeClock) -> Tokens:
    store = open_json(data_dir)
    made = {}
    for scope in ("viewer", "operator", "owner"):
        _, made[scope] = create_token(
            store=store, name=f"{scope}-bot", scopes=[scope], actor="test", clock=clock
        )
    return Tokens(**made)


def make_app(data_dir: Path, clock: FakeClock, **settings: object) -> FastAPI:
    return create_app(Settings(data_dir=data_dir, **settings), clock=clock)  # type: ignore[arg-type]


@pytest.fixture
def tokens(data_dir: Path, clock: FakeClock) -> Tokens:
    return make_tokens(data_dir, clock)


@pytest.fixture
def generous_app(data_dir: Path, clock: FakeClock) -> FastAPI:
    return make_app(
        data_dir,
        clock,
        rate_limit_start_session="100000/hour",
        rate_limit_writes="100000/minute",
    )


@pytest.fixture
def remote_client(generous_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(generous_app, raise_server_exceptions=False, client=REMOTE) as client:
        yield client


@pytest.fixture
def local_client(generous_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(generous_app, raise_server_exceptions=False, client=LOOPBACK) as client:
        yield client
