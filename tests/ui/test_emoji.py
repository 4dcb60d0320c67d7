"""Notes beyond the basic plane (emoji) on the GO page, typed and shown."""

from __future__ import annotations

import httpx2 as httpx
import pytest
from playwright.sync_api import Page, expect

from tests.edge.test_edge_cases import EMOJI_END, EMOJI_START
from tests.live.server import LiveServer
from tests.ui.test_go_page import fact, history_rows, message, open_page

pytestmark = pytest.mark.live


def test_emoji_notes_typed_on_the_page_and_shown_in_history(
    page: Page, server: LiveServer, http: httpx.Client
) -> None:
    open_page(page, server)
    page.get_by_label("Session notes").fill(EMOJI_START)
    page.get_by_role("button", name="Start session").click()
    expect(message(page)).to_contain_text("Session started")
    expect(page.locator("#session-details")).to_contain_text(EMOJI_START)
    # What the page sent is what the server stored, character for character.
    assert http.get("/core/go/session").json()["start_notes"] == EMOJI_START

    page.get_by_label("Session notes").fill(EMOJI_END)
    page.get_by_role("button", name="End session").click()
    expect(message(page)).to_contain_text("Session ended")
    row = history_rows(page).first
    expect(fact(row, "Start notes")).to_have_text(EMOJI_START)
    expect(fact(row, "End notes")).to_have_text(EMOJI_END)
    ended = http.get("/core/go/sessions").json()["items"][0]
    assert (ended["start_notes"], ended["end_notes"]) == (EMOJI_START, EMOJI_END)
