"""Screenshots of the GO page in a realistic state, for docs/page.md.

The UI test suite renders them into a temporary directory on every run (so
this script keeps working); they are written into ``docs/screenshots/`` when
``VALHALLA_UPDATE_SCREENSHOTS=1`` is set or the files are missing. By hand:

    .venv/bin/python -m tests.ui.screenshots            # writes docs/screenshots/
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from tests.live.server import LiveServer
from tests.ui.conftest import CHROMIUM_ARGS, DESKTOP, PHONE, chromium_path

DOCS_DIR = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
NAMES = ("go-phone.png", "go-desktop.png")


def populate(server: LiveServer) -> None:
    """One ended session in the history, an active one with three steps done."""
    with server.client() as http:

        def post(path: str, body: dict[str, object]) -> None:
            http.post(path, json=body).raise_for_status()

        post("/core/go/start_session", {"notes": "Monday check-in"})
        post(
            "/core/go/complete",
            {"step_id": "preflight_view_dashboard", "notes": "Band B, yellow: boot default"},
        )
        post("/core/go/end_session", {"notes": "Read the dashboard; caps next time."})
        post("/core/go/start_session", {"notes": "Weekly review: caps and SOPs"})
        post(
            "/core/go/complete",
            {"step_id": "set_opportunistic_caps", "notes": "$500 per engine per week"},
        )
        post("/core/go/complete", {"step_id": "confirm_boring_sop", "notes": "SOP v2 signed off"})


def _open(browser: Browser, server: LiveServer, viewport: ViewportSize, scale: float) -> Page:
    context = browser.new_context(
        viewport=viewport, device_scale_factor=scale, color_scheme="light", locale="en-GB"
    )
    page = context.new_page()
    page.goto(server.new_signin_link())
    expect(page.locator("#session-state")).to_contain_text("Active since")
    expect(page.locator("#history-list > li")).to_have_count(1)
    expect(page.locator("#audit-list > li").first).to_be_visible()
    expect(page.locator("#session-elapsed")).not_to_have_text("0:00:00")
    return page


def take_screenshots(browser: Browser, server: LiveServer, out_dir: Path) -> list[Path]:
    """Phone (first screen, 2x) and desktop (whole page) PNGs of the page,
    each signed in with a link of its own."""
    out_dir.mkdir(parents=True, exist_ok=True)
    phone_path, desktop_path = (out_dir / name for name in NAMES)

    phone = _open(browser, server, PHONE, 2)
    phone.screenshot(path=str(phone_path))
    phone.context.close()

    desktop = _open(browser, server, DESKTOP, 1)
    desktop.screenshot(path=str(desktop_path), full_page=True)
    desktop.context.close()
    return [phone_path, desktop_path]


def main() -> int:
    path = chromium_path()
    if path is None:
        print("Chromium is missing: run `make browser` (or `apt-get install chromium`)")
        return 1
    with tempfile.TemporaryDirectory() as tmp, LiveServer(Path(tmp) / "data") as server:
        populate(server)
        playwright = sync_playwright().start()
        try:
            browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
            for written in take_screenshots(browser, server, DOCS_DIR):
                print(f"wrote {written} ({written.stat().st_size // 1024} KiB)")
            browser.close()
        finally:
            playwright.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
