"""The GO page follows the event stream: two pages open at once agree
without a reload, a lost connection shows and heals, phone first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect

from tests.conftest import FakeClock
from tests.live.server import LiveServer
from tests.ui.conftest import DESKTOP
from tests.ui.test_go_page import STEP_TITLES, box, open_page
from valhalla_gov.auth.service import create_token
from valhalla_gov.compose import open_json
from valhalla_gov.cone.service import set_cone_state

pytestmark = pytest.mark.live

PHONE_SHORT = ViewportSize(width=375, height=740)
# Well under the page's 15 s poll: what arrives in time came through the stream.
PUSHED_MS = 5000
TOKEN_KEY = "valhalla.go.token"


def _tab(browser: Browser, token: str | None = None, viewport: ViewportSize = DESKTOP) -> Page:
    context: BrowserContext = browser.new_context(viewport=viewport)
    if token is not None:
        # The page keeps its token here: it then sends it on every call, the
        # event stream included (fetch, not EventSource, for this header).
        context.add_init_script(f"localStorage.setItem({TOKEN_KEY!r}, {token!r})")
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.errors = errors  # type: ignore[attr-defined]
    return tab


@pytest.fixture
def tabs(browser: Browser) -> Iterator[list[Page]]:
    opened: list[Page] = []
    yield opened
    for tab in opened:
        errors = tab.errors  # type: ignore[attr-defined]
        tab.context.close()
        assert errors == [], f"JavaScript errors on the page: {errors}"


def _live(page: Page) -> None:
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")


def test_two_pages_agree_without_reload(
    browser: Browser, server: LiveServer, tabs: list[Page]
) -> None:
    store = open_json(server.data_dir)
    clock = FakeClock()
    _, owner = create_token(store=store, name="desk", scopes=["owner"], actor="t", clock=clock)
    _, viewer = create_token(store=store, name="phone", scopes=["viewer"], actor="t", clock=clock)
    desk, phone = _tab(browser, owner), _tab(browser, viewer, PHONE_SHORT)
    tabs += [desk, phone]
    for tab in (desk, phone):
        open_page(tab, server, link=False)  # each with the token its browser keeps
        _live(tab)
    expect(phone.locator("#live-status")).to_contain_text("Live")

    desk.get_by_label("Session notes").fill("from the desk")
    desk.get_by_role("button", name="Start session").click()
    expect(phone.locator("#session-state")).to_contain_text("Active since", timeout=PUSHED_MS)
    expect(phone.locator("#session-details")).to_contain_text("from the desk")

    desk.get_by_role("checkbox", name=STEP_TITLES[0], exact=True).check()
    expect(phone.locator("#next-title")).to_have_text(STEP_TITLES[1], timeout=PUSHED_MS)
    expect(phone.locator("#checklist > li.is-done")).to_have_count(1)

    desk.get_by_label("Band", exact=True).select_option("C")
    desk.get_by_label("Reason for the change", exact=True).fill("stabilize after the launch")
    desk.get_by_role("button", name="Set band").click()
    expect(phone.locator("#band-letter")).to_have_text("C", timeout=PUSHED_MS)
    expect(phone.locator("#band-reason")).to_have_text("stabilize after the launch")

    desk.get_by_role("button", name="End session").click()
    expect(phone.locator("#session-state")).to_contain_text("No active session", timeout=PUSHED_MS)
    expect(phone.locator("#history-list > li")).to_have_count(1, timeout=PUSHED_MS)
    # The stream carries the desk's token name as the actor of each change.
    expect(phone.locator("#audit-list")).to_contain_text("desk")


def test_a_lost_connection_shows_reconnects_and_catches_up(
    browser: Browser, server: LiveServer, tabs: list[Page]
) -> None:
    page = _tab(browser)
    tabs.append(page)
    open_page(page, server)
    _live(page)
    expect(page.locator("#band-letter")).to_have_text("B")

    server.stop()
    status = page.locator("#live-status")
    expect(status).to_have_attribute("data-state", "lost")
    expect(status).to_contain_text("reconnecting")

    # Changed while the page could not hear: straight in the data dir.
    set_cone_state(
        store=open_json(server.data_dir),
        band="D",
        reason="changed while the page was away",
        metrics=None,
        actor="cli",
        clock=FakeClock(),
    )
    again = LiveServer(server.data_dir)
    again.port, again.url = server.port, server.url  # the same address the page knows
    with again:
        expect(status).to_have_attribute("data-state", "live", timeout=40000)
        expect(page.locator("#band-letter")).to_have_text("D")
        expect(page.locator("#band-reason")).to_have_text("changed while the page was away")


def test_phone_first_session_and_its_button_above_the_fold(
    browser: Browser, server: LiveServer, tabs: list[Page]
) -> None:
    page = _tab(browser, viewport=PHONE_SHORT)
    tabs.append(page)
    open_page(page, server)
    session, band = box(page, ".session-card"), box(page, "#band-heading")
    assert session["y"] < band["y"]  # the session card comes first
    start = page.get_by_role("button", name="Start session")
    expect(start).to_be_in_viewport()
    assert box(page, "#session-start")["y"] + box(page, "#session-start")["height"] <= 740
    page.get_by_label("Session notes").fill("a note from the phone")
    start.click()
    end = page.get_by_role("button", name="End session")
    expect(end).to_be_visible()
    expect(end).to_be_in_viewport()
    assert box(page, "#session-end")["y"] + box(page, "#session-end")["height"] <= 740
    # Cone and health follow the session.
    assert box(page, "#health-heading")["y"] > box(page, ".session-card")["y"]
