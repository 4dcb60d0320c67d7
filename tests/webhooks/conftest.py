"""Fixtures for webhook tests: fast settings, a registered webhook, a receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FakeClock
from tests.webhooks.receiver import Receiver
from valhalla_gov.settings import Settings
from valhalla_gov.storage.protocol import Store
from valhalla_gov.webhooks import service
from valhalla_gov.webhooks.keys import load_key
from valhalla_gov.webhooks.models import WebhookCreate, WebhookInfo

KEY = "0123456789abcdef" * 4


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def fast_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Short timeouts and retry times, an explicit key (every backend)."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "webhook_key": KEY,
        "webhook_connect_timeout": 0.5,
        "webhook_read_timeout": 1.0,
        "webhook_lease_seconds": 10.0,
        "webhook_retry_base_seconds": 2.0,
        "webhook_retry_max_seconds": 60.0,
        "webhook_give_up_seconds": 3600.0,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return fast_settings(tmp_path)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as rx:
        yield rx


def add_hook(
    store: Store,
    settings: Settings,
    clock: FakeClock,
    url: str,
    *,
    events: list[str] | None = None,
    fmt: str = "json",
    name: str = "ops",
) -> tuple[WebhookInfo, str]:
    key = load_key(settings, create=True)
    assert key is not None
    spec = WebhookCreate(url=url, name=name, events=events, format=fmt)
    return service.add_webhook(store=store, key=key, spec=spec, actor="owner", clock=clock)
