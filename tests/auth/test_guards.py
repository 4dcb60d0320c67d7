"""The guards and the gate never block the event loop: authentication, the
scope check and the rate-limit count run in a worker thread, one hop per
guard."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.auth.conftest import REMOTE
from tests.conftest import FakeClock, owner_headers
from valhalla_gov.app import create_app
from valhalla_gov.auth.models import Identity
from valhalla_gov.auth.ratelimit import RateLimiter
from valhalla_gov.auth.service import Authenticator
from valhalla_gov.settings import Settings


def _where() -> tuple[bool, int]:
    """(on an event loop?, this thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False, threading.get_ident()
    return True, threading.get_ident()


class RecordingAuthenticator(Authenticator):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[bool, int]] = []

    def authenticate(self, **kwargs: Any) -> Identity:
        self.calls.append(_where())
        return super().authenticate(**kwargs)


class RecordingLimiter(RateLimiter):
    def __init__(self) -> None:
        super().__init__(start_session="100/hour", writes="100/minute")
        self.calls: list[tuple[str, bool, int]] = []

    def hit(self, rule: str, key: str) -> dict[str, str]:
        self.calls.append(("hit", *_where()))
        return super().hit(rule, key)

    def check(self, rule: str, key: str) -> dict[str, str]:
        self.calls.append(("check", *_where()))
        return super().check(rule, key)

    def record(self, rule: str, key: str) -> dict[str, str]:
        self.calls.append(("record", *_where()))
        return super().record(rule, key)


def test_authentication_and_the_rate_limit_run_off_the_event_loop(
    data_dir: Path, clock: FakeClock
) -> None:
    owner = owner_headers(data_dir)
    auth, limiter = RecordingAuthenticator(), RecordingLimiter()
    app = create_app(
        Settings(data_dir=data_dir), clock=clock, authenticator=auth, rate_limiter=limiter
    )
    with TestClient(app, client=REMOTE, headers=owner) as client:
        assert client.get("/core/go/session").status_code == 200
        assert [on_loop for on_loop, _ in auth.calls] == [False]  # the guard's, in a thread
        auth.calls.clear()
        assert client.post("/core/cone/state", json={"band": "C", "reason": "r"}).status_code == 200
        # The gate's (before the body) and the guard's (when the route runs).
        assert [on_loop for on_loop, _ in auth.calls] == [False, False]
        assert [(kind, on_loop) for kind, on_loop, _ in limiter.calls] == [("hit", False)]
        # The guard authenticated and counted in one hop: the same thread.
        assert limiter.calls[0][2] == auth.calls[1][1]
        limiter.calls.clear()
        auth.calls.clear()
        assert client.post("/core/go/start_session", json={}).status_code == 200
        kinds = [(kind, on_loop) for kind, on_loop, _ in limiter.calls]
        # Checked by the guard; recorded (record counts with hit) by the route.
        assert kinds == [("check", False), ("record", False), ("hit", False)]
        assert limiter.calls[0][2] == auth.calls[1][1]
