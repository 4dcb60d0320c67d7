"""The GO page in real headless Chromium against the real ``valhalla serve``."""

from __future__ import annotations

import os
import re
import shutil
import struct
from pathlib import Path

import httpx2 as httpx
import pytest
from playwright.sync_api import Browser, FloatRect, Locator, Page, expect

from tests.live.server import LiveServer
from tests.ui.conftest import DESKTOP, PHONE
from tests.ui.screenshots import DOCS_DIR, NAMES, populate, take_screenshots
from valhalla_gov.auth.service import create_token
from valhalla_gov.compose import open_json
from valhalla_gov.go.playbook import DEFAULT_PLAYBOOK
from valhalla_gov.timeutil import utc_now

pytestmark = pytest.mark.live

NO_VALUE = "\u2013"  # the en dash the page shows before data arrives
STEP_TITLES: list[str] = [str(step["title"]) for step in DEFAULT_PLAYBOOK["steps"]]


def open_page(page: Page, server: LiveServer, *, link: bool = True) -> None:
    """Open the page with a fresh sign-in link, as its owner does (``link``
    False: with the credential the tab keeps already), and wait until the
    first summary is on it."""
    page.goto(server.new_signin_link() if link else server.url + "/")
    expect(page.locator("#band-letter")).not_to_have_text(NO_VALUE)


def message(page: Page) -> Locator:
    return page.locator("#message")


def history_rows(page: Page) -> Locator:
    return page.locator("#history-list > li")


def fact(row: Locator, name: str) -> Locator:
    """The <dd> that follows the <dt> called ``name`` in a history row."""
    return row.locator(f"xpath=.//dt[normalize-space()='{name}']/following-sibling::dd[1]")


PANELS = ("playbook", "history", "audit", "glance")


def box(page: Page, selector: str) -> FloatRect:
    rect = page.locator(selector).bounding_box()
    assert rect is not None, f"{selector} is not displayed"
    return rect


def test_session_workflow(page: Page, server: LiveServer) -> None:
    open_page(page, server)
    expect(page.locator("#band-letter")).to_have_text("B")
    expect(page.locator("#health-status")).to_have_text("Yellow")
    expect(page.locator("#health-dot")).to_have_attribute("data-status", "yellow")
    expect(page.locator("#health-reasons")).to_contain_text("cone band B (caution)")
    expect(page.locator("#session-state")).to_have_text("No active session.")
    expect(page.get_by_text("No ended sessions yet.")).to_be_visible()

    page.get_by_label("Session notes").fill("weekly review from the page")
    page.get_by_role("button", name="Start session").click()
    expect(message(page)).to_contain_text("Session started")
    expect(page.locator("#session-state")).to_contain_text("Active since")
    expect(page.locator("#session-details")).to_contain_text("weekly review from the page")
    timer = page.locator("#session-elapsed")
    expect(timer).to_have_text(re.compile(r"^0:00:\d\d$"))
    first_reading = timer.inner_text()
    expect(timer).not_to_have_text(first_reading, timeout=3000)  # it ticks

    # The next step is the first one, highlighted; tick it with notes.
    first, second = STEP_TITLES[0], STEP_TITLES[1]
    expect(page.locator("#next-title")).to_have_text(first)
    next_item = page.locator("#checklist > li.is-next")
    expect(next_item).to_have_attribute("aria-current", "step")
    expect(next_item.locator(".step-title")).to_have_text(first)
    page.get_by_label(f"Notes for “{first}”", exact=True).fill("band B, yellow: read it")
    page.get_by_role("checkbox", name=first, exact=True).check()
    expect(message(page)).to_contain_text(f"Marked “{first}” done.")
    expect(page.locator("#next-title")).to_have_text(second)
    expect(page.locator("#checklist > li.is-next .step-title")).to_have_text(second)
    expect(page.locator("#progress-text")).to_have_text("1 of 9 steps done")
    done_item = page.locator("#checklist > li").first
    expect(done_item).to_contain_text("Done")
    expect(done_item.locator(".step-notes-preview")).to_have_text("Notes: band B, yellow: read it")

    page.get_by_label("Session notes").fill("caps confirmed next time")
    page.get_by_role("button", name="End session").click()
    expect(message(page)).to_contain_text("Session ended")
    expect(page.locator("#session-state")).to_contain_text("No active session. The last one ended")
    expect(page.get_by_role("button", name="Start session")).to_be_visible()

    expect(history_rows(page)).to_have_count(1)
    row = history_rows(page).first
    expect(fact(row, "Start notes")).to_have_text("weekly review from the page")
    expect(fact(row, "End notes")).to_have_text("caps confirmed next time")
    expect(fact(row, "Duration")).to_have_text(re.compile(r"^(under 1 s|\d+ s|\d+ min \d+ s)$"))
    expect(fact(row, "Band")).to_have_text("B → B")
    expect(fact(row, "Status")).to_have_text("Yellow → Yellow")
    expect(fact(row, "Steps done")).to_have_text("1")
    expect(page.locator("#audit-list")).to_contain_text("GO_SESSION_END")


def test_second_start_shows_a_readable_409(
    page: Page, server: LiveServer, http: httpx.Client
) -> None:
    # A page that has not heard of the other start yet (its event stream is
    # down, or the start races the click): cut the stream to make it so.
    page.route("**/core/events/stream", lambda route: route.abort())
    open_page(page, server)
    start = page.get_by_role("button", name="Start session")
    expect(start).to_be_visible()
    assert http.post("/core/go/start_session", json={"notes": "from the CLI"}).status_code == 200

    page.get_by_label("Session notes").fill("mine")
    start.click()
    expect(message(page)).to_contain_text("a session is already active")
    expect(message(page)).to_contain_text("started by local")
    # The page shows the session that is active and goes on working.
    expect(page.locator("#session-state")).to_contain_text("Active since")
    expect(page.locator("#session-details")).to_contain_text("from the CLI")
    expect(page.get_by_label("Session notes")).to_have_value("mine")
    page.get_by_role("button", name="End session").click()
    expect(message(page)).to_contain_text("Session ended")
    expect(history_rows(page)).to_have_count(1)


def test_an_end_that_ended_nothing_says_so_and_keeps_the_notes(
    page: Page, server: LiveServer, http: httpx.Client
) -> None:
    # The page still shows the session active when someone else ends it (its
    # event stream cut, as when it is down): the server ends nothing and says
    # so in the Valhalla-Noop header, which the page must read.
    page.route("**/core/events/stream", lambda route: route.abort())
    assert http.post("/core/go/start_session", json={"notes": "mine"}).status_code == 200
    open_page(page, server)
    end = page.get_by_role("button", name="End session")
    expect(end).to_be_visible()
    ended = http.post("/core/go/end_session", json={"notes": "from the CLI"})
    assert ended.status_code == 200
    assert "Valhalla-Noop" not in ended.headers

    page.get_by_label("Session notes").fill("how it went")
    end.click()
    expect(message(page)).to_have_text(
        "No session was active, so nothing was ended; your notes were not saved "
        "(they are still in the box)."
    )
    expect(message(page)).to_have_attribute("data-kind", "error")
    expect(page.get_by_label("Session notes")).to_have_value("how it went")
    # The page then shows what is true: the session the other client ended.
    expect(page.get_by_role("button", name="Start session")).to_be_visible()
    last = http.get("/core/go/session").json()
    assert last["end_notes"] == "from the CLI"
    assert last["active"] is False


def test_a_fresh_page_shows_one_calm_signin_screen(page: Page, server: LiveServer) -> None:
    page.goto(server.url + "/")
    signin = page.locator("#signin")
    expect(signin).to_be_visible()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(signin).to_contain_text("valhalla token link")
    expect(page.get_by_label("Or paste an API token")).to_be_visible()
    # Nothing else: no panels, no red boxes, no server text.
    expect(page.locator("#main")).to_be_hidden()
    expect(page.locator(".panel-status:visible")).to_have_count(0)
    expect(message(page)).to_be_empty()
    expect(page.locator("#identity")).to_have_text("Not signed in.")
    expect(signin).not_to_contain_text("Bearer")


def test_a_signin_link_signs_the_page_in_once(
    page: Page, browser: Browser, server: LiveServer
) -> None:
    link = server.new_signin_link()
    code = link.split("#signin=", 1)[1]
    page.goto(link)
    expect(page.locator("#identity")).to_have_text(
        re.compile(r"^Signed in as page-\d{8}-[0-9a-f]{4} \(owner\)\.$")
    )
    expect(page.locator("#band-letter")).to_have_text("B")
    expect(page.locator("#band-panel")).to_be_visible()  # the owner's controls
    # The code is gone from the address bar (and from this tab's history).
    assert "signin" not in page.url
    assert page.url.rstrip("/") == server.url
    token = page.evaluate("localStorage.getItem('valhalla.go.token')")
    assert token.startswith("vgo_")
    page.reload()
    expect(page.locator("#identity")).to_contain_text("Signed in as page-")
    expect(page.locator("#band-letter")).to_have_text("B")
    # The page's credential is a token like any other: listed, named, revocable.
    with server.client() as http:
        pages = [t for t in http.get("/core/tokens").json() if t["kind"] == "page"]
    assert len(pages) == 1
    # The same link a second time, in another browser, is refused.
    other = browser.new_context(viewport=DESKTOP).new_page()
    try:
        other.goto(link)
        expect(other.locator("#signin-reason")).to_contain_text("used already")
        expect(other.locator("#main")).to_be_hidden()
        assert "signin" not in other.url
        assert other.evaluate("localStorage.getItem('valhalla.go.token')") is None
    finally:
        other.context.close()
    assert code not in page.url


def test_a_revoked_page_credential_returns_to_the_signin_screen(
    page: Page, server: LiveServer
) -> None:
    open_page(page, server)
    name = page.locator("#identity").inner_text().split()[3]
    with server.client() as http:
        assert http.delete(f"/core/tokens/{name}").status_code == 200
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#signin-reason")).to_contain_text("no longer works")
    expect(page.locator("#main")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('valhalla.go.token')") is None


def test_a_pasted_token_is_used_and_kept(page: Page, server: LiveServer) -> None:
    store = open_json(server.data_dir)
    _, viewer = create_token(
        store=store, name="watcher", scopes=["viewer"], actor="test", clock=utc_now
    )
    _, token = create_token(store=store, name="ops", scopes=["owner"], actor="test", clock=utc_now)
    page.goto(server.url + "/")
    token_field = page.get_by_label("Or paste an API token")
    token_field.fill("vgo_not-the-right-one")
    page.get_by_role("button", name="Use this token").click()
    expect(page.locator("#signin-reason")).to_contain_text("did not accept that token")
    expect(page.locator("#main")).to_be_hidden()

    # A viewer token reads, but the page offers it nothing to change.
    token_field.fill(viewer)
    page.get_by_role("button", name="Use this token").click()
    expect(page.locator("#identity")).to_have_text("Signed in as watcher (viewer).")
    expect(page.locator("#band-letter")).to_have_text("B")
    expect(page.get_by_role("button", name="Start session")).to_be_disabled()
    expect(page.get_by_role("checkbox", name=STEP_TITLES[0], exact=True)).to_be_disabled()
    expect(page.locator("#band-panel")).to_be_hidden()

    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#signin-reason")).to_contain_text("Signed out")
    token_field.fill(token)
    page.get_by_role("button", name="Use this token").click()
    expect(page.locator("#identity")).to_have_text("Signed in as ops (owner).")
    expect(page.get_by_role("button", name="Start session")).to_be_enabled()
    expect(page.locator("#band-panel")).to_be_visible()
    expect(token_field).to_be_hidden()
    expect(page.locator("#band-letter")).to_have_text("B")

    page.reload()
    expect(page.locator("#identity")).to_have_text("Signed in as ops (owner).")
    expect(page.locator("#band-letter")).to_have_text("B")
    expect(token_field).to_be_hidden()
    assert page.evaluate("localStorage.getItem('valhalla.go.token')") == token
    page.get_by_role("button", name="Start session").click()
    expect(page.locator("#session-state")).to_contain_text("started by ops")


def test_rate_limit_shows_the_retry_time(page: Page, tmp_path: Path) -> None:
    env = {"VALHALLA_RATE_LIMIT_START_SESSION": "1/hour"}
    with LiveServer(tmp_path / "data", env=env) as server:
        open_page(page, server)
        # Limits are per credential: the hour's start is used up by this page's own.
        token = page.evaluate("localStorage.getItem('valhalla.go.token')")
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, timeout=10, headers=auth) as http:
            assert http.post("/core/go/start_session", json={}).status_code == 200
            assert http.post("/core/go/end_session", json={}).status_code == 200
        expect(history_rows(page)).to_have_count(1)
        page.get_by_role("button", name="Start session").click()
        expect(message(page)).to_contain_text("Rate limit reached")
        expect(message(page)).to_contain_text(
            re.compile(r"Try again in (59 min \d+ s|1 h 0 min) \(at about .+\)")
        )
        expect(page.locator("#session-state")).to_contain_text("No active session.")
        expect(history_rows(page)).to_have_count(1)


def test_owner_sets_the_band(page: Page, server: LiveServer) -> None:
    open_page(page, server)
    expect(page.get_by_role("heading", name="Set the cone band")).to_be_visible()
    page.get_by_label("Band", exact=True).select_option("A")
    page.get_by_label("Reason for the change").fill("governance KPIs green for 4 weeks")
    page.get_by_role("button", name="Set band").click()
    expect(message(page)).to_contain_text("Band set to A (expansion).")
    expect(page.locator("#band-letter")).to_have_text("A")
    expect(page.locator("#band-reason")).to_have_text("governance KPIs green for 4 weeks")
    expect(page.locator("#health-status")).to_have_text("Green")
    # The health publisher may audit its HEALTH_CHANGED just after: the newest
    # CONE_SET is this change, wherever it sits.
    expect(page.locator("#audit-list > li", has_text="CONE_SET").first).to_contain_text(
        "governance KPIs green for 4 weeks"
    )

    # A red band blocks the steps, each with its reason, and there is no next step.
    page.get_by_label("Band", exact=True).select_option("D")
    page.get_by_label("Reason for the change").fill("cash crunch")
    page.get_by_role("button", name="Set band").click()
    expect(page.locator("#health-status")).to_have_text("Red")
    expect(page.locator("#next-title")).to_have_text(STEP_TITLES[0])  # not blocked_if_red
    blocked = page.locator("#checklist > li").nth(1)
    expect(blocked).to_contain_text("Blocked")
    expect(blocked.locator(".step-blocked")).to_contain_text("health is red")
    expect(page.get_by_role("checkbox", name=STEP_TITLES[1], exact=True)).to_be_disabled()
    expect(page.locator("#blocked-reasons")).to_contain_text("cash crunch")


def test_history_pages(page: Page, server: LiveServer, http: httpx.Client) -> None:
    for n in range(1, 13):
        assert http.post("/core/go/start_session", json={"notes": f"session {n}"}).is_success
        assert http.post("/core/go/end_session", json={"notes": f"end {n}"}).is_success
    open_page(page, server)
    expect(history_rows(page)).to_have_count(10)
    expect(fact(history_rows(page).first, "Start notes")).to_have_text("session 12")
    newer = page.get_by_role("button", name="Newer")
    older = page.get_by_role("button", name="Older")
    expect(newer).to_be_disabled()

    older.click()
    expect(history_rows(page)).to_have_count(2)
    expect(page.locator("#history-page")).to_have_text("Page 2")
    expect(fact(history_rows(page).first, "Start notes")).to_have_text("session 2")
    expect(fact(history_rows(page).last, "Start notes")).to_have_text("session 1")
    expect(older).to_be_disabled()

    newer.click()
    expect(history_rows(page)).to_have_count(10)
    expect(page.locator("#history-page")).to_have_text("Page 1")


def test_phone_layout(browser: Browser, server: LiveServer, http: httpx.Client) -> None:
    long_note = "a-very-long-note-without-any-spaces-" * 8
    http.post("/core/go/start_session", json={"notes": long_note}).raise_for_status()
    http.post("/core/go/end_session", json={"notes": long_note}).raise_for_status()
    context = browser.new_context(viewport=PHONE, has_touch=True)
    try:
        page = context.new_page()
        open_page(page, server)
        expect(history_rows(page)).to_have_count(1)
        assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]

        start = page.get_by_role("button", name="Start session")
        for control in (
            page.locator("#band-letter"),
            page.locator("#health-status"),
            page.get_by_label("Session notes"),
            start,
        ):
            expect(control).to_be_in_viewport()
        button = box(page, "#session-start")
        assert button["height"] >= 44  # a thumb-sized target
        assert button["x"] + button["width"] <= PHONE["width"]

        start.tap()
        expect(page.locator("#session-state")).to_contain_text("Active since")
        page.get_by_role("checkbox", name=STEP_TITLES[0], exact=True).tap()
        expect(page.locator("#next-title")).to_have_text(STEP_TITLES[1])
        assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]

        # One column: the history comes below the playbook.
        playbook, history = box(page, "#playbook"), box(page, "#history")
        assert history["y"] >= playbook["y"] + playbook["height"]
    finally:
        context.close()


def test_desktop_layout(page: Page, quiet_server: LiveServer) -> None:
    open_page(page, quiet_server)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= DESKTOP["width"]
    playbook, history, audit, glance = (box(page, f"#{n}") for n in PANELS)
    # Two columns: playbook left, history beside it, the glance cards across the top.
    assert history["x"] >= playbook["x"] + playbook["width"]
    assert abs(history["y"] - playbook["y"]) < 2
    assert audit["y"] > history["y"]
    assert glance["width"] > playbook["width"] + history["width"]
    expect(page.locator("#session-start")).to_be_in_viewport()
    expect(page.locator("#next-title")).to_be_in_viewport()


def test_accessibility_basics_and_nothing_from_outside(
    page: Page, quiet_server: LiveServer
) -> None:
    server = quiet_server
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    open_page(page, server)
    expect(page.locator("#checklist > li")).to_have_count(len(STEP_TITLES))

    # Every form control has a label with text (checked on the DOM, hidden ones too).
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter(el => ![...el.labels].some(l => l.textContent.trim())
                          && !el.getAttribute('aria-label'))
            .map(el => el.id || el.outerHTML)"""
    )
    assert unlabelled == []
    nameless = page.evaluate(
        """() => [...document.querySelectorAll('button, summary, a')]
            .filter(el => !(el.textContent.trim() || el.getAttribute('aria-label')))
            .map(el => el.outerHTML)"""
    )
    assert nameless == []

    # The main controls answer to their labels.
    for label in ("Session notes", "Reason for the change"):
        expect(page.get_by_label(label, exact=True)).to_be_visible()
    expect(page.get_by_label("Band", exact=True)).to_be_visible()
    expect(page.get_by_label("Or paste an API token")).to_be_attached()
    for title in STEP_TITLES:
        expect(page.get_by_role("checkbox", name=title, exact=True)).to_be_attached()
        expect(page.get_by_label(f"Notes for “{title}”", exact=True)).to_be_attached()
    expect(page.get_by_role("status")).to_have_attribute("aria-live", "polite")
    expect(page.locator("#session-elapsed")).to_have_attribute("role", "timer")
    for heading in ("Playbook", "History", "Audit tail", "At a glance"):
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_attached()

    # Color is never alone: the light says its color in words.
    expect(page.locator("#health-status")).to_have_text("Yellow")

    # Offline-proof: every request went to the server itself (or was inline).
    outside = [url for url in requested if not url.startswith((server.url, "data:"))]
    assert outside == []
    assert any(url.endswith("/ui/js/app.js") for url in requested)


def _png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def test_screenshots(browser: Browser, server: LiveServer, tmp_path: Path) -> None:
    populate(server)
    shots = take_screenshots(browser, server, tmp_path / "shots")
    phone, desktop = shots
    assert _png_size(phone) == (PHONE["width"] * 2, PHONE["height"] * 2)
    assert _png_size(desktop)[0] == DESKTOP["width"]
    for shot in shots:
        assert shot.stat().st_size < 600_000
    # The docs keep their committed pictures unless asked to refresh them.
    if os.environ.get("VALHALLA_UPDATE_SCREENSHOTS") == "1" or not all(
        (DOCS_DIR / name).exists() for name in NAMES
    ):
        DOCS_DIR.mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copyfile(shot, DOCS_DIR / shot.name)
