"""The owner credential from the command line: `valhalla token link` and
`rotate-owner`, and commands with --url on the server's machine that need no
token; never through a proxy from the environment."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.cli.conftest import Cli
from tests.conftest import FakeClock, owner_token
from tests.live.server import VALHALLA, LiveServer
from valhalla_gov.auth.service import create_token, exchange_signin_code, list_tokens
from valhalla_gov.cli.credential import listener_uids
from valhalla_gov.compose import open_json
from valhalla_gov.cone.service import set_cone_state
from valhalla_gov.timeutil import utc_now

pytestmark = pytest.mark.live


def valhalla(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed executable as a user types it in ``cwd``, no VALHALLA_* set."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VALHALLA_")}
    return subprocess.run(
        [VALHALLA, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env={**clean, "COLUMNS": "250", **env},
        timeout=60,
    )


def _code(link: str) -> str:
    return link.rsplit("#signin=", 1)[1]


def test_token_link_on_the_data_dir_makes_a_one_time_code(cli: Cli, data_dir: Path) -> None:
    made = cli.local("token", "link")
    assert made.exit_code == 0, made.output
    link = made.stdout.strip().splitlines()[-1]
    assert link.startswith("http://127.0.0.1:8000/#signin=")
    store = open_json(data_dir)
    info, _ = exchange_signin_code(store=store, code=_code(link), clock=utc_now)
    assert info.kind == "page"
    as_json = json.loads(cli.local("token", "link", "--json").stdout)
    assert as_json["link"].endswith(as_json["code"])
    assert "token link" in cli.run("token", "--help").stdout
    assert "rotate-owner" in cli.run("token", "--help").stdout


def test_rotate_owner_replaces_the_credential_and_is_audited(cli: Cli, data_dir: Path) -> None:
    old = owner_token(data_dir)
    rotated = cli.local("token", "rotate-owner")
    assert rotated.exit_code == 0, rotated.output
    assert "rotated the owner credential" in rotated.stdout
    new = (data_dir / "owner.token").read_text().strip()
    assert new != old
    assert old not in rotated.stdout + rotated.stderr
    assert new not in rotated.stdout + rotated.stderr
    assert (data_dir / "owner.token").stat().st_mode & 0o777 == 0o600
    events = json.loads(cli.local("audit", "tail", "--json").stdout)
    assert [(e["event"], e["actor"]) for e in events] == [("OWNER_CREDENTIAL_ROTATE", "local")]
    assert cli.run("token", "rotate-owner", "--url", "http://127.0.0.1:1").exit_code == 2


@pytest.fixture
def upgraded(tmp_path: Path) -> Iterator[LiveServer]:
    """A data dir of the version before: history, no token, no credential
    (it ran in protected mode), served by the new version."""
    data_dir = tmp_path / "data"
    set_cone_state(
        store=open_json(data_dir),
        band="C",
        reason="before",
        metrics=None,
        actor="local",
        clock=FakeClock(),
    )
    with LiveServer(data_dir) as server:
        yield server


def test_commands_with_url_on_the_servers_machine_need_no_setup(
    upgraded: LiveServer, tmp_path: Path
) -> None:
    """`valhalla go start --url http://127.0.0.1:PORT`, typed where the
    server's ./data is, as its account: works as before the upgrade."""
    server = upgraded
    assert "what changed" in server.log_path.read_text()
    started = valhalla(
        tmp_path, "go", "start", "--notes", "as before", "--json", "--url", server.url
    )
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["started_by"] == "local"
    link = valhalla(tmp_path, "token", "link", "--url", server.url)
    assert link.returncode == 0, link.stderr
    url = link.stdout.strip().splitlines()[-1]
    assert url.startswith(f"{server.url}/#signin=")
    signed = httpx.post(f"{server.url}/core/auth/signin", json={"code": _code(url)}, timeout=10)
    assert signed.status_code == 201
    # Elsewhere (no ./data of this server): nobody, and told what to do.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    refused = valhalla(elsewhere, "go", "status", "--url", server.url)
    assert refused.returncode == 1
    assert "unauthorized" in refused.stderr
    assert "VALHALLA_DATA_DIR" in refused.stderr


def test_the_credential_never_goes_through_a_proxy_from_the_environment(
    tmp_path: Path,
) -> None:
    """Reproduced: the CLI sent its bearer token through `http_proxy` even to
    127.0.0.1."""
    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen()
    proxy.settimeout(0.2)
    seen: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = proxy.accept()
            except TimeoutError:
                continue
            except OSError:  # closed at the end of the test
                return
            with conn:
                conn.settimeout(2)
                seen.append(conn.recv(65536))
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    via = f"http://127.0.0.1:{proxy.getsockname()[1]}"
    store = open_json(tmp_path / "data")
    _, token = create_token(store=store, name="ops", scopes=["owner"], actor="t", clock=utc_now)
    try:
        with LiveServer(tmp_path / "data") as server:
            proxies = dict.fromkeys(("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"), via)
            port = server.url.rsplit(":", 1)[1]
            # Every spelling of this machine (the probe found 127.1, 0 and the
            # IPv4-mapped form going through the proxy).
            for host in ("127.0.0.1", "127.1", "0", "[::ffff:127.0.0.1]", "0x7f000001"):
                status = valhalla(
                    tmp_path,
                    "go",
                    "status",
                    "--json",
                    "--url",
                    f"http://{host}:{port}",
                    **proxies,
                    VALHALLA_TOKEN=token,
                )
                if host == "127.0.0.1":
                    assert status.returncode == 0, status.stderr
                    assert json.loads(status.stdout)["active"] is False
                else:
                    # Straight to the server, which refuses a Host it was not
                    # told of (a proxy would have answered 502).
                    assert "does not answer to the Host" in status.stderr, (host, status.stderr)
    finally:
        stop.set()
        acceptor.join(5)
        proxy.close()
    assert seen == []
    assert "ops" in [t.name for t in list_tokens(store=store)]


def test_the_listener_of_a_port_is_found_by_its_account(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert listener_uids("127.0.0.1", port) == {os.geteuid()}
        assert listener_uids("localhost", port) == {os.geteuid()}
    assert listener_uids("127.0.0.1", port) == set()
