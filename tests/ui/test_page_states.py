"""The GO page never shows a state it has not read (issue #11): every panel
has a loading, an error and an unauthorised state, in real Chromium against
the real ``valhalla serve``."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, Route, expect

from tests.live.server import LiveServer
from valhalla_gov.auth.service import create_token
from valhalla_gov.compose import open_json
from valhalla_gov.timeutil import utc_now

pytestmark = pytest.mark.live

# Panel id -> what its status line names.
PANELS = {
    "band-card": "cone band",
    "health-card": "health",
    "session-card": "session",
    "playbook": "playbook",
    "history": "history",
    "audit": "audit tail",
}


def status(page: Page, panel: str) -> str:
    return f"#{panel} .panel-status"


def test_without_a_credential_no_panel_guesses(page: Page, server: LiveServer) -> None:
    # A session is active: a browser without a credential may read nothing,
    # and shows nothing that would pass for the truth.
    _, token = create_token(
        store=open_json(server.data_dir), name="ops", scopes=["owner"], actor="t", clock=utc_now
    )
    with server.client() as http:
        assert http.post("/core/go/start_session", json={"notes": "live"}).status_code == 200

    page.goto(server.url + "/")
    expect(page.locator("#signin")).to_be_visible()
    for panel in PANELS:
        expect(page.locator(f"#{panel}")).to_be_hidden()
    # No "No active session.", no Start button, no "Loading…" left behind.
    expect(page.locator("#session-state")).to_be_hidden()
    expect(page.get_by_role("button", name="Start session")).to_be_hidden()
    expect(page.get_by_role("button", name="End session")).to_be_hidden()
    expect(page.locator("#next-title")).to_be_hidden()
    expect(page.get_by_text("Loading…").filter(visible=True)).to_have_count(0)

    page.get_by_label("Or paste an API token").fill(token)
    page.get_by_role("button", name="Use this token").click()
    expect(page.locator("#session-state")).to_contain_text("Active since")
    expect(page.get_by_role("button", name="End session")).to_be_visible()
    for panel in PANELS:
        expect(page.locator(f"#{panel}")).to_have_attribute("data-state", "ready")
        expect(page.locator(status(page, panel))).to_be_hidden()


def test_loading_shows_loading_and_offers_nothing(page: Page, server: LiveServer) -> None:
    held: list[Route] = []
    # The summary is held back: the session and playbook stay "loading".
    # A lambda: Playwright cannot wrap a builtin method as a handler.
    page.route("**/core/go/summary", lambda route: held.append(route))  # noqa: PLW0108
    page.goto(server.new_signin_link())
    # History is read on its own; the summary's panels wait for it.
    expect(page.locator("#history")).to_have_attribute("data-state", "ready")
    for panel in ("session-card", "playbook", "health-card", "band-card"):
        expect(page.locator(f"#{panel}")).to_have_attribute("data-state", "loading")
        expect(page.locator(status(page, panel))).to_have_text("Loading…")
    expect(page.get_by_role("button", name="Start session")).to_be_hidden()
    expect(page.locator("#session-state")).to_be_hidden()
    assert held, "the page asked for the summary"
    for route in held:
        route.continue_()
    page.unroute("**/core/go/summary")
    expect(page.locator("#session-card")).to_have_attribute("data-state", "ready")
    expect(page.locator("#session-state")).to_have_text("No active session.")
    expect(page.get_by_role("button", name="Start session")).to_be_enabled()


def test_a_corrupt_file_is_an_error_on_the_panels_that_read_it(
    page: Page, server: LiveServer
) -> None:
    (server.data_dir / "go_session.json").write_text('{"session": {"active": "very"')
    page.goto(server.new_signin_link())
    session = page.locator(status(page, "session-card"))
    expect(session).to_contain_text("Could not read the session.")
    expect(session).to_contain_text("go_session.json")
    expect(page.locator("#session-card")).to_have_attribute("data-state", "error")
    expect(page.get_by_role("button", name="Start session")).to_be_hidden()
    expect(page.locator("#session-state")).to_be_hidden()
    # Panels that read other files still show what they read.
    expect(page.locator("#band-card")).to_have_attribute("data-state", "ready")
    expect(page.locator("#band-letter")).to_have_text("B")
    expect(page.locator("#audit")).to_have_attribute("data-state", "ready")


def test_an_error_after_a_read_keeps_what_was_read_and_says_so(
    page: Page, server: LiveServer
) -> None:
    page.goto(server.new_signin_link())
    expect(page.locator("#audit")).to_have_attribute("data-state", "ready")
    read = page.locator("#audit-list > li")
    expect(read).to_have_count(1)
    expect(read).to_contain_text("SIGNIN_LINK_USED")  # this page's own sign-in
    page.route(
        "**/core/audit/events*",
        lambda route: route.fulfill(status=500, json={"detail": "internal server error"}),
    )
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    line = page.locator(status(page, "audit"))
    expect(line).to_contain_text("Could not read the audit tail.")
    expect(line).to_contain_text("Showing what was read at")
    expect(read).to_have_count(1)
    expect(read).to_contain_text("SIGNIN_LINK_USED")
