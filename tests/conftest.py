"""Shared fixtures: a store per backend, a controllable clock, an app client."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from valhalla_gov.app import create_app
from valhalla_gov.audit.service import ChainWatcher
from valhalla_gov.auth.owner_file import read_owner_token
from valhalla_gov.auth.service import ensure_owner_credential
from valhalla_gov.compose import open_json, open_sql, upgrade_database
from valhalla_gov.health.models import HealthStatus
from valhalla_gov.health.publisher import HealthPublisher
from valhalla_gov.health.service import compute_health
from valhalla_gov.settings import Settings
from valhalla_gov.storage.protocol import Store
from valhalla_gov.timeutil import Clock, utc_now

REQUIRE_SERVICES = os.environ.get("VALHALLA_TEST_REQUIRE_SERVICES") == "1"
# `make test` runs every test at a size a developer can run often; `make
# test-deep` (VALHALLA_TEST_DEEP=1) runs the long crash storms, the soak and
# the large property runs at their full size.
DEEP = os.environ.get("VALHALLA_TEST_DEEP") == "1"


def sized(quick: int, deep: int) -> int:
    """A test's size: ``deep`` under `make test-deep`, ``quick`` otherwise."""
    return deep if DEEP else quick


# Starlette's TestClient sends "Host: testserver" (schemathesis: "localhost").
# Apps built in tests answer to that name too; the Host allow-list itself is
# tested with explicit settings and over real HTTP (tests/security).
os.environ.setdefault("VALHALLA_ALLOWED_HOSTS", "testserver")


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (created), unmounted afterwards.

    Mounting needs root and a kernel/container that allows it. Locally the
    test is skipped with the reason; where ``VALHALLA_TEST_REQUIRE_SERVICES=1``
    (CI, run as root) a mount that does not work fails the test.
    """
    need(os.geteuid() == 0, "the disk-full tests mount a small tmpfs, which needs root")
    where.mkdir()
    try:
        result = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
    except (OSError, subprocess.SubprocessError) as exc:
        need(False, f"cannot run mount here: {exc}")
        raise  # need() skips or fails; this line is never reached
    need(result.returncode == 0, f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield where
    finally:
        _unmount(where)


def _unmount(where: Path) -> None:
    if _run("umount", str(where)).returncode != 0:  # still busy: detach it
        _run("umount", "-l", str(where))


@contextlib.contextmanager
def unwritable(directory: Path) -> Iterator[Path]:
    """``directory`` made unwritable for this process, then restored.

    As a normal user a ``chmod 0500`` does it. Root ignores permission bits,
    so as root the directory is bind-mounted read-only over itself instead:
    the same refusal (EROFS rather than EACCES) through the real kernel path.
    """
    if os.geteuid() != 0:
        directory.chmod(0o500)
        try:
            yield directory
        finally:
            directory.chmod(0o700)
        return
    bound = _run("mount", "--bind", str(directory), str(directory))
    need(bound.returncode == 0, f"cannot bind-mount {directory}: {bound.stderr.strip()}")
    try:
        deadline = time.monotonic() + 5
        while True:
            ro = _run("mount", "-o", "remount,bind,ro", str(directory))
            # Busy while a file there is open for writing (a server's
            # background write in flight): it closes within moments.
            if ro.returncode == 0 or "busy" not in ro.stderr or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        need(ro.returncode == 0, f"cannot remount {directory} read-only: {ro.stderr.strip()}")
        yield directory
    finally:
        _unmount(directory)


def join_all(workers: Iterable[threading.Thread], timeout: float = 60.0) -> None:
    """Join threads within one overall deadline; a hang fails with a message
    instead of blocking the run forever."""
    deadline = time.monotonic() + timeout
    stuck = []
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            stuck.append(worker.name)
    if stuck:
        pytest.fail(f"threads still running after {timeout:.0f}s (a hang): {', '.join(stuck)}")


def wait_child(pid: int, timeout: float = 60.0) -> int:
    """``os.waitpid`` with a deadline: a forked child that hangs is killed and
    the test fails saying so. Returns the child's exit code."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"forked child {pid} still running after {timeout:.0f}s (a hang); killed")
        time.sleep(0.005)


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


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


# Every backend the contract tests run against.
BACKENDS = ["json", "sqlite", "postgres"]
PG_ADMIN_URL = os.environ.get(
    "VALHALLA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def pg_available() -> bool:
    import sqlalchemy

    engine = sqlalchemy.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        return True
    except sqlalchemy.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def pg_schema_url(schema: str) -> str:
    """The test database with its own schema first on the search path."""
    return f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh, migrated PostgreSQL schema; dropped afterwards."""
    import sqlalchemy

    name = f"vt_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(PG_ADMIN_URL)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA {name}"))
    try:
        upgrade_database(pg_schema_url(name))
        yield pg_schema_url(name)
    finally:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"DROP SCHEMA {name} CASCADE"))
        engine.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    need(pg_available(), f"PostgreSQL at {PG_ADMIN_URL} is needed: apt-get install postgresql")
    with pg_schema() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrated once; each test copies it (a migration per test is slow)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite"
    upgrade_database(f"sqlite:///{path}")
    return path


def _truncate(url: str) -> None:
    store = open_sql(url)
    try:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE documents, log_records, go_sessions RESTART IDENTITY")
            # As any change made outside Valhalla must: running stores' caches see it.
            conn.exec_driver_sql("UPDATE store_generation SET n = n + 1")
    finally:
        store.close()


STORE_URL_FILE = "store.url"


def make_store(backend: str, tmp_path: Path) -> Store:
    """Open (again) the store the ``store`` fixture made in ``tmp_path``: a
    restart, another worker, or another process on the same data."""
    if backend == "json":
        return open_json(tmp_path / "data")
    url = (tmp_path / STORE_URL_FILE).read_text()
    return open_sql(url)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    backend = str(request.param)
    if backend == "json":
        yield open_json(tmp_path / "data")
        return
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "store.sqlite"
        shutil.copyfile(template, path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_url")
        _truncate(url)
    (tmp_path / STORE_URL_FILE).write_text(url)
    sql_store = open_sql(url)
    yield sql_store
    sql_store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def watcher() -> ChainWatcher:
    return ChainWatcher()


@pytest.fixture
def publisher(store: Store, clock: FakeClock) -> HealthPublisher:
    """The health light of ``store``, as a serving process publishes it."""
    return HealthPublisher(store=store, clock=clock)


def health_now(store: Store, clock: Clock = utc_now) -> HealthStatus:
    """Health judged now, from scratch (no process's light)."""
    return compute_health(store=store, clock=clock, watcher=ChainWatcher())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def owner_token(data_dir: Path, store: Store | None = None) -> str:
    """The data dir's owner credential (created as `valhalla init` creates it,
    when missing): what the operator's own clients send."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ensure_owner_credential(store=store or open_json(data_dir), data_dir=data_dir, clock=utc_now)
    token = read_owner_token(data_dir)
    assert token is not None
    return token


def owner_headers(data_dir: Path, store: Store | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {owner_token(data_dir, store)}"}


@pytest.fixture
def client(data_dir: Path, clock: FakeClock) -> Iterator[TestClient]:
    """The app as its owner uses it: every request carries the data dir's
    owner credential (an address grants nothing)."""
    headers = owner_headers(data_dir)
    app = create_app(Settings(data_dir=data_dir), clock=clock)
    # raise_server_exceptions=False: a 500 is answered as users would see it.
    with TestClient(
        app, raise_server_exceptions=False, client=("127.0.0.1", 50000), headers=headers
    ) as test_client:
        # The credential's first use is stamped (tokens.json, once a minute at
        # most); done here, a test's own requests change only what they change.
        assert test_client.get("/core/whoami").status_code == 200
        yield test_client


# The longest files, started first: with `--dist loadfile` a file runs whole
# on one worker, and a long one drawn last keeps the other worker idle at the
# end of the run. (Order only; every test still runs. Sums from --durations=0.)
LONGEST_FIRST = (
    "tests/docs/test_examples.py",
    "tests/security/test_live_connections.py",
    "tests/ui/test_go_page.py",
    "tests/ui/test_page_trust.py",
    "tests/webhooks/test_live.py",
    "tests/reliability/test_crash.py",
    "tests/webhooks/test_delivery.py",
    "tests/events/test_stream_live.py",
    "tests/sql/test_sql_backend.py",
    "tests/cli/test_serve_settings.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: n for n, path in enumerate(LONGEST_FIRST)}

    def first(item: pytest.Item) -> int:
        return rank.get(item.nodeid.split("::", 1)[0], len(rank))

    items.sort(key=first)  # stable: the order inside a file is kept
