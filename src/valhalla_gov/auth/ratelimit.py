"""Per-identity rate limits on writes, with the `limits` library.

Counters live in memory (per process) by default, or in Redis when
``VALHALLA_REDIS_URL`` is set so every worker and replica counts together.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from urllib.parse import urlsplit

from limits import RateLimitItem, parse
from limits.errors import StorageError as LimitsStorageError
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from ..errors import RateLimitedError, ServiceUnavailableError
from ..observability.metrics import RATE_LIMITED

log = logging.getLogger(__name__)

RULE_START_SESSION = "start_session"
RULE_WRITES = "writes"


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}"


class RateLimiter:
    def __init__(
        self,
        *,
        start_session: str,
        writes: str,
        redis_url: str | None = None,
        fail_open: bool = False,
    ) -> None:
        self.rules: dict[str, RateLimitItem] = {
            RULE_START_SESSION: parse(start_session),
            RULE_WRITES: parse(writes),
        }
        self.fail_open = fail_open
        self.backend = "memory" if redis_url is None else _redacted(redis_url)
        storage: Storage
        if redis_url is None:
            storage = MemoryStorage()
        else:
            storage = RedisStorage(
                redis_url, wrap_exceptions=True, socket_timeout=2, socket_connect_timeout=2
            )
        self._limiter = MovingWindowRateLimiter(storage)
        self._log_lock = threading.Lock()
        self._last_outage_log = 0.0

    def hit(self, rule: str, key: str) -> dict[str, str]:
        """Count one request; return RateLimit headers, or raise 429 / 503."""
        item = self.rules[rule]
        try:
            allowed = self._limiter.hit(item, rule, key)
            stats = self._limiter.get_window_stats(item, rule, key)
        except LimitsStorageError as exc:
            return self._outage(exc)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        headers = {
            "RateLimit-Limit": str(item.amount),
            "RateLimit-Remaining": str(max(0, stats.remaining)),
            "RateLimit-Reset": str(reset),
            "RateLimit-Policy": f"{item.amount};w={item.get_expiry()}",
        }
        if not allowed:
            RATE_LIMITED.labels(rule=rule).inc()
            raise RateLimitedError(
                f"rate limit reached: {item.amount} per {item.get_expiry()}s for this "
                f"{'action' if rule == RULE_START_SESSION else 'kind of write'}; "
                f"retry in {max(reset, 1)}s",
                body={"retry_after_seconds": max(reset, 1)},
                headers={**headers, "Retry-After": str(max(reset, 1))},
            )
        return headers

    def _outage(self, exc: Exception) -> dict[str, str]:
        now = time.monotonic()
        with self._log_lock:
            if now - self._last_outage_log > 10:
                self._last_outage_log = now
                log.error(
                    "rate-limit store %s unreachable (%s); writes are %s "
                    "(VALHALLA_RATE_LIMIT_FAIL_OPEN=%s)",
                    self.backend,
                    exc,
                    "allowed" if self.fail_open else "refused",
                    str(self.fail_open).lower(),
                )
        if self.fail_open:
            return {}
        raise ServiceUnavailableError(
            f"the rate-limit store ({self.backend}) is unreachable, so writes are refused; "
            "try again shortly"
        )
