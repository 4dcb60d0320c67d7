"""CORS origins from settings, and `valhalla serve` warning about an open bind."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import FakeClock
from tests.live.server import VALHALLA, free_port
from valhalla_gov.app import create_app
from valhalla_gov.auth.service import create_token
from valhalla_gov.compose import open_json
from valhalla_gov.settings import Settings

ORIGIN = "https://ops.example.com"


def test_cors_allows_only_the_configured_origins(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, cors_origins=f"{ORIGIN}, https://other.example")
    assert settings.cors_origins == [ORIGIN, "https://other.example"]
    with TestClient(create_app(settings), client=("127.0.0.1", 1)) as client:
        preflight = client.options(
            "/core/go/start_session",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        simple = client.get("/core/go/session", headers={"Origin": ORIGIN})
        assert simple.headers["access-control-allow-origin"] == ORIGIN
        assert "X-Request-ID" in simple.headers["access-control-expose-headers"]
        foreign = client.get("/core/go/session", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in foreign.headers


def test_no_cors_headers_without_configured_origins(client: TestClient) -> None:
    response = client.get("/core/go/session", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in response.headers


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _serve_stderr(data_dir: Path, host: str) -> str:
    """What `valhalla serve` printed by the time it accepted connections."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VALHALLA_")}
    port = free_port()
    proc = subprocess.Popen(
        [
            VALHALLA,
            "serve",
            "--host",
            host,
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        # The warning comes before uvicorn binds: once it listens, it was said.
        deadline = time.monotonic() + 60
        while not _listening(port) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _listening(port), "valhalla serve did not start listening"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    return err


def _link(stderr: str) -> str:
    links = [word for word in stderr.split() if "/#signin=" in word]
    assert len(links) == 1, stderr
    return links[0]


def test_serve_creates_the_owner_credential_and_prints_a_signin_link(data_dir: Path) -> None:
    first = _serve_stderr(data_dir, "0.0.0.0")
    credential = data_dir / "owner.token"
    assert credential.stat().st_mode & 0o777 == 0o600
    assert f"created the owner credential {credential}" in first
    # Listening on every address, the link is for the page on this machine.
    assert _link(first).startswith("http://127.0.0.1:")
    assert "what changed" not in first  # a new data dir has nothing to upgrade
    token = credential.read_text()
    again = _serve_stderr(data_dir, "127.0.0.1")
    assert "created the owner credential" not in again
    assert _link(again) != _link(first)  # a fresh one-time code at every start
    assert credential.read_text() == token  # the credential stays


def test_an_upgraded_data_dir_says_once_what_changed(data_dir: Path, clock: FakeClock) -> None:
    # A data dir of an earlier version: a token, no owner credential.
    create_token(store=open_json(data_dir), name="ops", scopes=["owner"], actor="t", clock=clock)
    first = _serve_stderr(data_dir, "127.0.0.1")
    assert "what changed: an address no longer makes anyone the owner" in first
    assert "Tokens you made keep working" in first
    assert (data_dir / "owner.token").is_file()
    assert "/#signin=" in _link(first)
    second = _serve_stderr(data_dir, "127.0.0.1")
    assert "what changed" not in second
