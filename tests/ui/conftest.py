"""GO page fixtures: one headless Chromium per test session, one live server per test.

Chromium is Debian's (``apt-get install chromium`` or ``make browser``), driven by
Playwright through ``executable_path``, so no browser download is needed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, ViewportSize, sync_playwright

from tests.conftest import need
from tests.live.server import LiveServer

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=375, height=812)


def chromium_path() -> str | None:
    """``VALHALLA_CHROMIUM`` if set, else Debian's chromium."""
    for candidate in (
        os.environ.get("VALHALLA_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="package")  # closed before later packages start their own event loops
def browser() -> Iterator[Browser]:
    path = chromium_path()
    need(
        path is not None,
        "Chromium is missing for the GO page tests: run `make browser` "
        "(or `apt-get install chromium`)",
    )
    assert path is not None
    playwright: Playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
    finally:
        playwright.stop()


class ServerPool:
    """Fresh servers, each started in the background while the test before runs.

    A server takes a second or two to start; starting the next one early keeps
    the suite's time close to what the browser itself needs.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made = 0
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ui-server")
        self.spare: Future[LiveServer] | None = None

    def _submit(self) -> Future[LiveServer]:
        self.made += 1
        home = self.root / f"server-{self.made}"
        home.mkdir()
        return self.executor.submit(LiveServer(home / "data").start)

    def take(self) -> LiveServer:
        ready = self.spare or self._submit()
        self.spare = self._submit()
        return ready.result()

    def close(self) -> None:
        if self.spare is not None:
            with contextlib.suppress(Exception):
                self.spare.result().stop()
        self.executor.shutdown(wait=True)


@pytest.fixture(scope="session")
def server_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    pool = ServerPool(tmp_path_factory.mktemp("ui-servers"))
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def server(server_pool: ServerPool) -> Iterator[LiveServer]:
    """A fresh ``valhalla serve`` with an empty data dir."""
    live = server_pool.take()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def quiet_server(server_pool: ServerPool) -> Iterator[LiveServer]:
    """One server shared by the tests of a module that only look (saves a start-up)."""
    live = server_pool.take()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    """The API, called from the test as another client of the owner would
    (the CLI on the server's machine: the data dir's owner credential)."""
    with server.client() as client:
        yield client


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh desktop tab (its own context: empty localStorage)."""
    context = browser.new_context(viewport=DESKTOP)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield tab
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
