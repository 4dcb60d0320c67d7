"""The Insights panel: SVG charts drawn by the page, each with a text
alternative, usable at 375 px, following new sessions live."""

from __future__ import annotations

import os
import random
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import FakeClock
from tests.live.server import LiveServer
from tests.ui.conftest import DESKTOP
from tests.ui.screenshots import DOCS_DIR
from tests.ui.test_go_page import open_page
from tests.ui.test_live_page import PHONE_SHORT
from valhalla_gov.compose import open_json
from valhalla_gov.cone.canon import Band
from valhalla_gov.cone.service import set_cone_state
from valhalla_gov.go.session_service import end_session, start_session
from valhalla_gov.health.publisher import HealthPublisher
from valhalla_gov.insights.service import bucket_start
from valhalla_gov.timeutil import utc_now

pytestmark = pytest.mark.live

SHOTS = ("go-insights-phone.png", "go-insights-desktop.png")
CHART_NAMES = ("Sessions per week", "Median session length per week", "Band at each start")


def seed_history(data_dir: Path, weeks: int = 12) -> int:
    """A plausible quarter: 0-3 sessions every few days, the band moving."""
    store = open_json(data_dir)
    rng = random.Random(15)
    now = utc_now()
    # From the first day the default report shows (the Monday 11 weeks back).
    first = bucket_start(now, "week") - timedelta(weeks=weeks - 1)
    clock = FakeClock(first + timedelta(hours=9))
    publisher = HealthPublisher(store=store, clock=clock)
    bands: list[Band] = ["B", "B", "B", "C", "C", "B", "B", "A", "B", "D", "B", "B"]
    count = 0
    while clock.now < now - timedelta(hours=6):
        week = (clock.now - first).days // 7
        band = bands[week % len(bands)]
        set_cone_state(
            store=store, band=band, reason=f"week {week}", metrics=None, actor="ops", clock=clock
        )
        for _ in range(rng.randrange(0, 4)):
            start_session(
                store=store, clock=clock, actor="ops", notes=None, health=publisher.current()
            )
            clock.advance(minutes=rng.randrange(15, 95))
            end_session(
                store=store, clock=clock, actor="ops", notes=None, health=publisher.current()
            )
            clock.advance(hours=rng.randrange(5, 30))
            count += 1
        clock.advance(days=rng.randrange(1, 4))
    set_cone_state(
        store=store, band="B", reason="steady", metrics=None, actor="ops", clock=FakeClock(now)
    )
    return count


def _insights(page: Page) -> None:
    expect(page.locator("#insights svg[role='img']")).to_have_count(3)


def test_charts_with_text_alternatives_that_follow_new_sessions(
    browser: Browser, server: LiveServer
) -> None:
    total = seed_history(server.data_dir)
    context = browser.new_context(viewport=PHONE_SHORT)
    try:
        page = context.new_page()
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        open_page(page, server)
        _insights(page)
        for name in CHART_NAMES:
            chart = page.get_by_role("img", name=name, exact=True)
            expect(chart).to_be_visible()
            # The description says it in words, and the page shows it too.
            description = chart.locator("desc").text_content()
            assert description
            description = description.strip()
            expect(page.locator("#insights .chart-desc", has_text=description)).to_be_visible()
        expect(page.locator("#insights .chart-desc").first).to_contain_text(f"{total} sessions")

        # Every number behind the charts, as a table: one row a week.
        page.get_by_text("The numbers behind the charts").click()
        rows = page.locator("#insights tbody > tr")
        expect(rows).to_have_count(12)
        sessions = [int(t) for t in rows.locator("td:nth-child(2)").all_inner_texts()]
        assert sum(sessions) == total

        # Usable at 375 px: nothing wider than the screen.
        assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE_SHORT["width"]
        assert all(url.startswith(server.url) for url in requested)

        # A session ended elsewhere shows in the charts without a reload.
        with server.client() as http:
            http.post("/core/go/start_session", json={}).raise_for_status()
            http.post("/core/go/end_session", json={}).raise_for_status()
        expect(page.locator("#insights .chart-desc").first).to_contain_text(
            f"{total + 1} sessions", timeout=5000
        )
        page.get_by_label("Sessions per", exact=True).select_option("month")
        expect(page.get_by_role("img", name="Sessions per month", exact=True)).to_be_visible()
    finally:
        context.close()


def test_insights_screenshots(browser: Browser, server: LiveServer, tmp_path: Path) -> None:
    seed_history(server.data_dir)
    shots = []
    for name, viewport, scale in ((SHOTS[0], PHONE_SHORT, 2), (SHOTS[1], DESKTOP, 1)):
        context = browser.new_context(
            viewport=viewport, device_scale_factor=scale, color_scheme="light", locale="en-GB"
        )
        page = context.new_page()
        open_page(page, server)
        _insights(page)
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        path = tmp_path / name
        page.locator("#insights").screenshot(path=str(path))
        context.close()
        assert path.stat().st_size > 10_000
        shots.append(path)
    if os.environ.get("VALHALLA_UPDATE_SCREENSHOTS") == "1" or not all(
        (DOCS_DIR / name).exists() for name in SHOTS
    ):
        for shot in shots:
            shutil.copyfile(shot, DOCS_DIR / shot.name)
