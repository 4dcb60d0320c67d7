"""Per-identity rate limits on writes, with the `limits` library.

Counters live in memory for a single process, in Redis when
``VALHALLA_REDIS_URL`` is set (every worker and replica counts together), or,
with ``--workers N`` and no Redis, in one SQLite file in a run directory
shared by the workers (``VALHALLA_RATE_LIMIT_DIR``, set by ``valhalla serve``),
so the enforced limit is the configured one and never N times it.

Every call is synchronous and thread-safe, and may block on the network or a
file lock (see :attr:`RateLimiter.blocking`): the HTTP guard calls it from a
worker thread, never on the event loop. A store that fails is not asked
again for :data:`OUTAGE_RETRY_SECONDS`; meanwhile every call answers at once,
as ``VALHALLA_RATE_LIMIT_FAIL_OPEN`` says.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from limits import RateLimitItem, parse
from limits.errors import StorageError as LimitsStorageError
from limits.storage import MovingWindowSupport, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from ..errors import RateLimitedError, ServiceUnavailableError
from ..observability.metrics import RATE_LIMITED
from ..storage.errors import StorageUnavailableError

log = logging.getLogger(__name__)

RULE_START_SESSION = "start_session"
RULE_WRITES = "writes"


RATE_LIMIT_DB = "ratelimit.sqlite"
# Redis is on the request path: a few milliseconds when it is well, so a
# short wait tells an outage apart quickly.
REDIS_TIMEOUT_SECONDS = 0.5
# How long a store that failed is left alone before it is tried again.
OUTAGE_RETRY_SECONDS = 5.0
# How long a worker waits for another's transaction on the shared file (each
# takes microseconds: a longer wait means something is stuck).
SHARED_FILE_BUSY_SECONDS = 2.0


def private_counter_file(directory: Path) -> Path:
    """The shared counters' file in ``directory``, both made private (0700,
    0600) and checked as the data dir is: a directory that is a symlink, is
    owned by another user or is writable by others is refused, and so is a
    file (or SQLite journal) planted there as a symlink or by another user.

    Raises :class:`StorageUnavailableError` naming the path and the fix."""
    me = os.geteuid()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = directory.lstat()
    except OSError as exc:
        raise StorageUnavailableError(
            directory, f"cannot create the rate-limit dir: {exc.strerror or exc}"
        ) from exc
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise StorageUnavailableError(
            directory, "the rate-limit dir must be a directory, not a symlink or a file"
        )
    if info.st_uid != me:
        raise StorageUnavailableError(
            directory,
            f"the rate-limit dir belongs to user {info.st_uid}, not to this one ({me}); "
            "use a directory of this user's (or leave VALHALLA_RATE_LIMIT_DIR unset)",
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        raise StorageUnavailableError(
            directory,
            f"the rate-limit dir is writable by other users (mode {mode:o}), who could "
            f"replace its file; fix it with: chmod 700 {directory}",
        )
    if mode & 0o077:
        os.chmod(directory, 0o700)  # ours, and none of the others' business
    path = directory / RATE_LIMIT_DB
    for planted in (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal")):
        _refuse_foreign(planted, me, missing_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StorageUnavailableError(
            path, f"cannot open the rate-limit counters (a symlink?): {exc.strerror or exc}"
        ) from exc
    try:
        _refuse_foreign(path, me, missing_ok=False, info=os.fstat(fd))
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def _refuse_foreign(
    path: Path, me: int, *, missing_ok: bool, info: os.stat_result | None = None
) -> None:
    try:
        info = info or path.lstat()
    except FileNotFoundError:
        if missing_ok:
            return
        raise
    if not stat.S_ISREG(info.st_mode) or info.st_uid != me:
        raise StorageUnavailableError(
            path,
            "is not a regular file of this user's (planted?); remove it, it holds only "
            "rate-limit counters",
        )


class SharedFileStorage(Storage, MovingWindowSupport):
    """A `limits` storage in one SQLite file, for worker processes on one host.

    Each hit is a row (key, time); a moving-window check deletes the expired
    rows of its key, counts the rest and inserts, all in one ``BEGIN
    IMMEDIATE`` transaction, so processes never both take the last slot.
    Counters are not data: no fsync (``synchronous=OFF``); a power cut forgets
    them, as a restart of the memory storage does. The file and its directory
    are checked by :func:`private_counter_file` first.
    """

    STORAGE_SCHEME = ["valhalla+sqlite"]  # noqa: RUF012 - the base class declares it so

    def __init__(self, directory: Path, wrap_exceptions: bool = True) -> None:
        self.path = private_counter_file(directory)
        self._local = threading.local()
        super().__init__(f"valhalla+sqlite://{self.path}", wrap_exceptions=wrap_exceptions)
        conn = self._conn()
        conn.execute("CREATE TABLE IF NOT EXISTS hits (key TEXT NOT NULL, at REAL NOT NULL)")
        conn.execute("CREATE INDEX IF NOT EXISTS hits_key_at ON hits (key, at)")

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return sqlite3.Error

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # Autocommit mode: transactions are the explicit BEGIN IMMEDIATE below.
            conn = sqlite3.connect(
                self.path, timeout=SHARED_FILE_BUSY_SECONDS, isolation_level=None
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- the moving window (what the rate limiter uses) -----------------------
    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = time.time()
        with self._exclusive() as conn:
            conn.execute("DELETE FROM hits WHERE key = ? AND at <= ?", (key, now - expiry))
            (count,) = conn.execute("SELECT count(*) FROM hits WHERE key = ?", (key,)).fetchone()
            if count + amount > limit:
                return False
            conn.executemany("INSERT INTO hits (key, at) VALUES (?, ?)", [(key, now)] * amount)
            return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = time.time()
        oldest, count = (
            self._conn()
            .execute(
                "SELECT min(at), count(*) FROM hits WHERE key = ? AND at > ?", (key, now - expiry)
            )
            .fetchone()
        )
        return (now if oldest is None else float(oldest)), int(count)

    # -- the rest of the `limits` storage interface --------------------------
    # Only the moving window is used (RateLimiter's strategy): fixed-window
    # counters are refused rather than kept untested.
    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise NotImplementedError(_MOVING_WINDOW_ONLY)

    def get(self, key: str) -> int:
        raise NotImplementedError(_MOVING_WINDOW_ONLY)

    def get_expiry(self, key: str) -> float:
        raise NotImplementedError(_MOVING_WINDOW_ONLY)

    def check(self) -> bool:
        try:
            self._conn().execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def reset(self) -> int | None:
        with self._exclusive() as conn:
            removed: int = conn.execute("DELETE FROM hits").rowcount
        return removed

    def clear(self, key: str) -> None:
        with self._exclusive() as conn:
            conn.execute("DELETE FROM hits WHERE key = ?", (key,))


class LocalStorage(Storage, MovingWindowSupport):
    """A `limits` moving-window storage in this process's memory.

    `limits`' own MemoryStorage expires entries on a ``threading.Timer`` it
    starts again after each 10 ms of quiet: on the request path that was a
    thread start every few writes. Here a key's old entries go when the key
    is next used, and a sweep every ``SWEEP_EVERY`` hits drops keys nobody
    has used for a whole window, so memory stays bounded by active keys.
    """

    STORAGE_SCHEME = ["valhalla+memory"]  # noqa: RUF012 - the base class declares it so
    SWEEP_EVERY = 1024

    def __init__(self) -> None:
        super().__init__("valhalla+memory://", wrap_exceptions=False)
        self._lock = threading.Lock()
        # key -> (hit times, oldest first; the key's window in seconds)
        self._hits: dict[str, tuple[collections.deque[float], int]] = {}
        self._since_sweep = 0

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ()

    def _window(self, key: str, expiry: int, now: float) -> collections.deque[float]:
        entry = self._hits.get(key)
        if entry is None:
            entry = self._hits[key] = (collections.deque(), expiry)
        hits = entry[0]
        edge = now - expiry
        while hits and hits[0] <= edge:
            hits.popleft()
        return hits

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = time.time()
        with self._lock:
            self._since_sweep += 1
            if self._since_sweep >= self.SWEEP_EVERY:
                self._sweep(now)
            hits = self._window(key, expiry, now)
            if len(hits) + amount > limit:
                return False
            hits.extend([now] * amount)
            return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = time.time()
        with self._lock:
            if key not in self._hits:
                return now, 0
            hits = self._window(key, expiry, now)
            return (hits[0] if hits else now), len(hits)

    def _sweep(self, now: float) -> None:
        self._since_sweep = 0
        idle = [
            k for k, (hits, expiry) in self._hits.items() if not hits or hits[-1] <= now - expiry
        ]
        for key in idle:
            del self._hits[key]

    # -- the rest of the `limits` storage interface --------------------------
    # Only the moving window is used (RateLimiter's strategy): fixed-window
    # counters are refused rather than kept untested.
    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise NotImplementedError(_MOVING_WINDOW_ONLY)

    def get(self, key: str) -> int:
        raise NotImplementedError(_MOVING_WINDOW_ONLY)

    def get_expiry(self, key: str) -> float:
        raise NotImplementedError(_MOVING_WINDOW_ONLY)

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._lock:
            removed = len(self._hits)
            self._hits.clear()
        return removed

    def clear(self, key: str) -> None:
        with self._lock:
            self._hits.pop(key, None)


_MOVING_WINDOW_ONLY = "this storage keeps moving windows only (MovingWindowRateLimiter)"


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}"


class RateLimiter:
    """Per-identity limits on writes. Thread-safe; every method is synchronous
    and may block for up to about :data:`REDIS_TIMEOUT_SECONDS` (Redis) or
    :data:`SHARED_FILE_BUSY_SECONDS` (the shared file) when :attr:`blocking`:
    call it from a worker thread then."""

    # Whether a call may wait on the network or a lock (Redis, the shared
    # file); the memory store (and a subclass without a store) never does.
    blocking = False

    def __init__(
        self,
        *,
        start_session: str,
        writes: str,
        redis_url: str | None = None,
        shared_dir: Path | None = None,
        fail_open: bool = False,
        outage_retry_seconds: float = OUTAGE_RETRY_SECONDS,
    ) -> None:
        self.rules: dict[str, RateLimitItem] = {
            RULE_START_SESSION: parse(start_session),
            RULE_WRITES: parse(writes),
        }
        self.fail_open = fail_open
        storage: Storage
        if redis_url is None and shared_dir is not None:
            self.backend = f"sqlite:{shared_dir / RATE_LIMIT_DB}"
            try:
                storage = SharedFileStorage(shared_dir)
            except sqlite3.Error as exc:
                raise StorageUnavailableError(
                    shared_dir / RATE_LIMIT_DB, f"cannot open the rate-limit counters: {exc}"
                ) from exc
            self.blocking = True
        elif redis_url is None:
            self.backend = "memory"
            storage = LocalStorage()
        else:
            self.backend = _redacted(redis_url)
            # Short timeouts: an unreachable Redis costs one call this long,
            # then OUTAGE_RETRY_SECONDS of immediate answers (see _count).
            storage = RedisStorage(
                redis_url,
                wrap_exceptions=True,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
            self.blocking = True
        self._limiter = MovingWindowRateLimiter(storage)
        self._state_lock = threading.Lock()
        self._outage_retry = outage_retry_seconds
        self._down_until = 0.0  # monotonic; the store is not asked before then
        self._last_outage_log = 0.0

    def hit(self, rule: str, key: str) -> dict[str, str]:
        """Count one request; return RateLimit headers, or raise 429 / 503."""
        return self._count(rule, key, consume=True)

    def check(self, rule: str, key: str) -> dict[str, str]:
        """Like :meth:`hit`, without counting: is there room for one more?"""
        return self._count(rule, key, consume=False)

    def record(self, rule: str, key: str) -> dict[str, str]:
        """Count a request that has already been served: never refuses it."""
        try:
            return self.hit(rule, key)
        except (RateLimitedError, ServiceUnavailableError):
            return {}

    def _count(self, rule: str, key: str, *, consume: bool) -> dict[str, str]:
        item = self.rules[rule]
        if not self._may_ask_store():
            return self._outage(None)
        try:
            if consume:
                allowed = self._limiter.hit(item, rule, key)
            else:
                allowed = self._limiter.test(item, rule, key)
            stats = self._limiter.get_window_stats(item, rule, key)
        except LimitsStorageError as exc:
            with self._state_lock:
                self._down_until = time.monotonic() + self._outage_retry
            return self._outage(exc)
        if self._down_until:
            with self._state_lock:
                self._down_until = 0.0
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

    def _may_ask_store(self) -> bool:
        """False while a failed store is left alone; after that, one caller at
        a time asks it again (the others answer at once until it has)."""
        if not self._down_until:
            return True
        with self._state_lock:
            now = time.monotonic()
            if now < self._down_until:
                return False
            self._down_until = now + self._outage_retry  # this caller's try
            return True

    def _outage(self, exc: Exception | None) -> dict[str, str]:
        now = time.monotonic()
        with self._state_lock:
            if exc is not None and now - self._last_outage_log > 10:
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
