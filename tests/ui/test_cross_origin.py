"""A hostile page in real Chromium, served from a second origin, tries to act
on the local service (image, no-cors fetch, form post, frame). The service
refuses every one before it touches state; the page's requests do reach it."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tests.live.server import LiveServer

pytestmark = pytest.mark.live

ATTACK = """<!doctype html>
<html><body>
<form id="f" method="POST" action="{target}/core/go/start_session" target="sink"
      enctype="text/plain"><input name='{{"notes": "' value='x"}}'></form>
<iframe name="sink"></iframe>
<iframe src="{target}/core/cone/decide?engine=fx_arbitrage&action=scale&via=frame"></iframe>
<script>
const target = "{target}";
const decide = target + "/core/cone/decide?engine=fx_arbitrage&action=scale";
async function attack() {{
  const tries = [];
  for (let i = 0; i < 5; i++) {{
    tries.push(new Promise((done) => {{
      const img = new Image();
      img.onload = img.onerror = done;
      img.src = decide + "&n=" + i;
    }}));
  }}
  tries.push(fetch(decide + "&via=fetch", {{ mode: "no-cors" }}).catch(() => null));
  tries.push(fetch(target + "/core/cone/state", {{
    method: "POST", mode: "no-cors", headers: {{ "Content-Type": "text/plain" }},
    body: JSON.stringify({{ band: "D", reason: "hostile page" }}),
  }}).catch(() => null));
  tries.push(fetch(target + "/core/cone/decide", {{
    method: "POST", headers: {{ "Content-Type": "application/json" }},
    body: JSON.stringify({{ engine: "fx_arbitrage", action: "scale" }}),
  }}).catch(() => null));
  await Promise.all(tries);
  document.getElementById("f").submit();
  setTimeout(() => {{ window.attackDone = true; }}, 1000);
}}
attack();
</script>
</body></html>
"""


@pytest.fixture
def target(tmp_path: Path) -> Iterator[LiveServer]:
    # Access log on, to see that the browser's requests did arrive.
    with LiveServer(tmp_path / "data", log_level="info") as server:
        yield server


def _serve_attack(root: Path, host: str, target_url: str) -> tuple[ThreadingHTTPServer, str]:
    (root / "attack.html").write_text(ATTACK.format(target=target_url))
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    httpd = ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    return httpd, f"http://{'localhost' if host == '127.0.0.1' else host}:{httpd.server_port}"


@pytest.mark.parametrize(
    "attacker_host",
    ["localhost", "127.0.0.1"],
    ids=["cross-site", "same-site-other-port"],
)
def test_a_page_from_another_origin_cannot_act(
    browser: Browser, target: LiveServer, tmp_path: Path, attacker_host: str
) -> None:
    root = tmp_path / "attacker"
    root.mkdir()
    httpd, _ = _serve_attack(root, "127.0.0.1", target.url)
    origin = f"http://{attacker_host}:{httpd.server_port}"
    # Only what arrives from here on is the attacker's (the fixture's start-up
    # probes, sent with the owner's credential, come before).
    before = len(_access_log(target))
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.goto(f"{origin}/attack.html")
        tab.wait_for_function("window.attackDone === true", timeout=20_000)
    finally:
        context.close()
        httpd.shutdown()
        httpd.server_close()

    # The requests did reach the service, and were refused there (read before
    # the checks below add lines of their own).
    seen = _access_log(target)[before:]
    assert ("GET", "/core/cone/decide", 403) in seen, seen
    assert ("POST", "/core/go/start_session", 403) in seen, seen
    assert ("POST", "/core/cone/state", 403) in seen, seen
    assert all(status >= 400 for _, _, status in seen), seen
    with target.client() as http:
        assert http.get("/core/cone/state").json()["band"] == "B"
        assert http.get("/core/audit/events").json()["items"] == []
        assert http.get("/core/go/session").json()["active"] is False
    assert not (target.data_dir / "cone_decisions.jsonl").exists()


def _access_log(server: LiveServer) -> list[tuple[str, str, int]]:
    seen = []
    for line in server.log_path.read_text().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("logger") == "valhalla_gov.access":
                seen.append((record["method"], record["path"], record["status"]))
    return seen


def test_the_api_docs_render_from_shipped_files_under_the_page_policy(
    browser: Browser, target: LiveServer
) -> None:
    context = browser.new_context()
    outside: list[str] = []
    console: list[str] = []
    try:
        tab = context.new_page()
        tab.on(
            "request", lambda r: outside.append(r.url) if not r.url.startswith(target.url) else None
        )
        tab.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        # Signed in on the GO page first: the docs use the credential it keeps.
        tab.goto(target.new_signin_link())
        tab.wait_for_selector("#main:not([hidden])", timeout=20_000)
        tab.goto(f"{target.url}/docs")
        tab.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
        assert "Valhalla GO" in tab.inner_text(".swagger-ui .info .title")
        # Operations are listed (the schema came through the viewer-scoped route).
        assert tab.locator(".opblock").count() > 10
    finally:
        context.close()
    # Nothing from a CDN: every request went to the service itself.
    assert [u for u in outside if not u.startswith((target.url, "data:"))] == []
    assert not [m for m in console if "Content Security Policy" in m], console
