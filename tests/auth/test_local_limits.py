"""The in-process rate-limit storage: a moving window per key, no timer
thread, and memory held only by keys in use."""

from __future__ import annotations

import threading
import time

import pytest

from valhalla_gov.auth.ratelimit import RULE_WRITES, LocalStorage, RateLimiter
from valhalla_gov.errors import RateLimitedError


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(time, "time", clock)
    return clock


def test_the_window_moves_with_each_hit(now: Clock) -> None:
    storage = LocalStorage()
    assert storage.acquire_entry("k", 3, 60)
    now.now += 20
    assert storage.acquire_entry("k", 3, 60)
    assert storage.acquire_entry("k", 3, 60)
    assert not storage.acquire_entry("k", 3, 60)  # 3 in the last minute
    assert storage.get_moving_window("k", 3, 60) == (now.now - 20, 3)
    now.now += 40  # the first hit is exactly a minute old: out of the window
    assert storage.get_moving_window("k", 3, 60) == (now.now - 40, 2)
    assert storage.acquire_entry("k", 3, 60)
    assert not storage.acquire_entry("k", 3, 60)
    assert not storage.acquire_entry("k", 1, 60, amount=2)  # more than the limit at once
    assert storage.get_moving_window("other", 3, 60) == (now.now, 0)


def test_idle_keys_are_swept_so_memory_follows_the_keys_in_use(now: Clock) -> None:
    storage = LocalStorage()
    for n in range(LocalStorage.SWEEP_EVERY - 1):
        assert storage.acquire_entry(f"client-{n}", 5, 60)
    now.now += 61  # every one of them idle for a whole window
    assert storage.acquire_entry("active", 5, 60)  # the hit that sweeps
    assert set(storage._hits) == {"active"}


def test_the_limiter_refuses_past_the_limit_and_starts_no_thread(now: Clock) -> None:
    limiter = RateLimiter(start_session="10/hour", writes="2/minute")
    threads = threading.active_count()
    limiter.hit(RULE_WRITES, "alice")
    headers = limiter.hit(RULE_WRITES, "alice")
    assert headers["RateLimit-Remaining"] == "0"
    assert headers["RateLimit-Reset"] == "60"
    with pytest.raises(RateLimitedError):
        limiter.hit(RULE_WRITES, "alice")
    limiter.hit(RULE_WRITES, "bob")  # per identity
    assert threading.active_count() == threads
    now.now += 60
    assert limiter.hit(RULE_WRITES, "alice")["RateLimit-Remaining"] == "1"


def test_only_moving_windows_are_kept_and_keys_can_be_cleared(now: Clock) -> None:
    storage = LocalStorage()
    for name in ("a", "b"):
        assert storage.acquire_entry(name, 1, 60)
    storage.clear("a")
    assert storage.acquire_entry("a", 1, 60)  # its window starts over
    assert not storage.acquire_entry("b", 1, 60)
    assert storage.reset() == 2
    assert storage.acquire_entry("b", 1, 60)
    with pytest.raises(NotImplementedError, match="moving windows only"):
        storage.incr("a", 60)
