"""Trust by credential, not by address, on the real ``valhalla serve``.

Each test is one finding of the security review of protected mode, where a
loopback address made any client the owner; as root (CI), another OS account
(``nobody``) plays the neighbour.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import FakeClock, join_all, need, wait_child
from tests.live.server import LiveServer
from valhalla_gov.auth.service import create_signin_code, create_token, list_tokens, revoke_token
from valhalla_gov.compose import open_json
from valhalla_gov.timeutil import utc_now

pytestmark = pytest.mark.live

NOBODY = 65534


@pytest.fixture
def open_parent() -> Iterator[Path]:
    """A parent dir every account may traverse (tmp_path's parents are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="valhalla-trust-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def server(open_parent: Path) -> Iterator[LiveServer]:
    with LiveServer(open_parent / "data") as live:
        yield live


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    need(os.geteuid() == 0, "acting as another OS account needs root")
    need(shutil.which("runuser") is not None, "runuser (util-linux) is needed")
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _curl(*args: str) -> list[str]:
    return ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *args]


def test_another_account_on_this_machine_is_nobody(server: LiveServer) -> None:
    """Reproduced: before any token, `runuser -u nobody -- curl .../whoami`
    answered the owner, minted the first owner token and locked the owner out."""
    need(shutil.which("curl") is not None, "curl is needed")
    # An older version left the data dir traversable: the file's own mode guards it.
    server.data_dir.chmod(0o755)
    whoami = _as_nobody(*_curl(f"{server.url}/core/whoami"))
    assert whoami.stdout == "401", whoami
    mint = _as_nobody(
        *_curl(
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            '{"name": "mine", "scopes": ["owner"]}',
            f"{server.url}/core/tokens",
        )
    )
    assert mint.stdout == "401", mint
    stolen = _as_nobody("cat", str(server.data_dir / "owner.token"))
    assert stolen.returncode != 0
    assert "Permission denied" in stolen.stderr
    # The owner is not locked out: the data dir's credential is theirs.
    with server.client() as owner:
        assert owner.get("/core/whoami").json()["name"] == "local"
        assert [t["name"] for t in owner.get("/core/tokens").json()] == ["local"]


def test_a_reverse_proxy_on_this_machine_makes_nobody_local(server: LiveServer) -> None:
    """Every client of a proxy on the same machine arrives from 127.0.0.1."""
    target = server.url

    class Proxy(http.server.BaseHTTPRequestHandler):
        def _forward(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            skip = {"host", "connection", "content-length"}
            headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
            resp = httpx.request(
                self.command, target + self.path, headers=headers, content=body, timeout=10
            )
            self.send_response(resp.status_code)
            self.send_header("content-length", str(len(resp.content)))
            self.end_headers()
            self.wfile.write(resp.content)

        do_GET = do_POST = _forward

        def log_message(self, *args: object) -> None:
            pass

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, args=(0.02,), daemon=True).start()
    via = f"http://127.0.0.1:{proxy.server_address[1]}"
    try:
        assert httpx.get(f"{via}/core/whoami", timeout=10).status_code == 401
        made = httpx.post(f"{via}/core/tokens", json={"name": "x", "scopes": ["owner"]}, timeout=10)
        assert made.status_code == 401
        # With a credential, the proxy's clients are served as who they are.
        assert (
            httpx.get(f"{via}/core/whoami", headers=server.headers, timeout=10).status_code == 200
        )
    finally:
        proxy.shutdown()


def test_a_token_revoked_while_its_body_arrives_is_refused(server: LiveServer) -> None:
    """Reproduced: a POST whose headers arrived before the first token ran as
    owner when its body came 3 s later. Rights are decided when the route runs."""
    store = open_json(server.data_dir)
    _, token = create_token(
        store=store, name="late", scopes=["owner"], actor="t", clock=FakeClock()
    )
    body = b'{"band": "D", "reason": "late body"}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /core/cone/state HTTP/1.1\r\nHost: localhost\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        time.sleep(0.5)  # the gate has let the headers through; the body is on its way
        revoke_token(store=store, name="late", actor="t", clock=FakeClock())
        sock.sendall(body)
        answer = sock.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 401"), answer
    with server.client() as owner:
        assert owner.get("/core/cone/state").json()["band"] == "B"


def test_ten_concurrent_exchanges_of_one_signin_code_one_wins(server: LiveServer) -> None:
    """Reproduced: ten concurrent first-token requests all got 201, each told
    it had ended protected mode. A sign-in code works exactly once."""
    code = create_signin_code(store=open_json(server.data_dir), actor="local", clock=utc_now).code
    barrier = threading.Barrier(10)
    statuses: list[int] = []
    lock = threading.Lock()

    def exchange() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            barrier.wait(30)
            status = http.post("/core/auth/signin", json={"code": code}).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=exchange) for _ in range(10)]
    for t in threads:
        t.start()
    join_all(threads)
    assert sorted(statuses) == [201] + [401] * 9, statuses
    pages = [t for t in list_tokens(store=open_json(server.data_dir)) if t.kind == "page"]
    assert len(pages) == 1


def _raw(server: LiveServer, head: bytes) -> str:
    """The whole answer to ``head`` (sent asking to close, read to the end:
    one recv may hold only the status line)."""
    request = head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")


def test_repeated_headers_and_websockets_are_refused(server: LiveServer) -> None:
    token = server.owner_token.encode()
    twice = _raw(
        server,
        b"GET /core/whoami HTTP/1.1\r\nHost: localhost\r\n"
        b"Authorization: Bearer " + token + b"\r\nAuthorization: Bearer vgo_other\r\n\r\n",
    )
    assert twice.startswith("HTTP/1.1 400"), twice
    assert "repeats the authorization header" in twice
    two_hosts = _raw(
        server,
        b"GET /core/whoami HTTP/1.1\r\nHost: localhost\r\nHost: attacker.example\r\n"
        b"Authorization: Bearer " + token + b"\r\n\r\n",
    )
    assert two_hosts.startswith("HTTP/1.1 400"), two_hosts
    # No WebSocket is ever opened (the server runs without a WebSocket
    # protocol): an Upgrade is an ordinary request, under every HTTP rule.
    upgrade = (
        b"GET /core/go/session HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
    )
    anonymous = _raw(server, upgrade + b"\r\n")
    assert anonymous.startswith("HTTP/1.1 401"), anonymous
    owner = _raw(server, upgrade + b"Authorization: Bearer " + token + b"\r\n\r\n")
    assert owner.startswith("HTTP/1.1 200"), owner  # answered, never switched (101)
    assert "upgrade" not in owner.split("\r\n\r\n", 1)[0].lower()


def test_the_data_dir_of_another_account_is_refused(open_parent: Path) -> None:
    """Another account made the data dir first and planted tokens.json as a
    link to a file it wants a root-run server to overwrite."""
    need(os.geteuid() == 0, "acting as another OS account needs root")
    data_dir = open_parent / "data"
    data_dir.mkdir(mode=0o700)
    target = open_parent / "victim.conf"
    target.write_text("precious\n")
    (data_dir / "tokens.json").symlink_to(target)
    os.chown(data_dir / "tokens.json", NOBODY, NOBODY, follow_symlinks=False)
    os.chown(data_dir, NOBODY, NOBODY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VALHALLA_")}
    from tests.live.server import VALHALLA

    result = subprocess.run(
        [VALHALLA, "serve", "--port", "0", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "belongs to nobody, not to root" in result.stderr
    assert f"chown -R root {data_dir}" in result.stderr
    assert target.read_text() == "precious\n"
    assert not (data_dir / "owner.token").exists()


def test_the_cli_gives_the_owner_credential_to_its_owners_server_only(
    server: LiveServer, open_parent: Path
) -> None:
    """`valhalla go start --url http://127.0.0.1:PORT` on the server's
    machine works with no set-up for the account that owns the data dir;
    the credential goes nowhere else (another account's server on a port,
    an account that cannot read the file)."""
    from valhalla_gov.cli.client import remote_service
    from valhalla_gov.cli.credential import owner_credential_for

    os.environ["VALHALLA_DATA_DIR"] = str(server.data_dir)
    try:
        service = remote_service(server.url, owner_credential=True)
        assert service.client.get("/core/whoami").json()["name"] == "local"
        service.close()
    finally:
        del os.environ["VALHALLA_DATA_DIR"]
    # A listener of another account on a loopback port gets nothing.
    need(os.geteuid() == 0, "acting as another OS account needs root")
    squatter = subprocess.Popen(
        ["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-I", "-c", _SQUATTER],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert squatter.stdout is not None
        port = int(squatter.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        assert owner_credential_for(url, server.data_dir) is None
        os.environ["VALHALLA_DATA_DIR"] = str(server.data_dir)
        try:
            service = remote_service(url, owner_credential=True)
            service.client.get("/core/whoami", timeout=10)
            service.close()
        finally:
            del os.environ["VALHALLA_DATA_DIR"]
        seen = json.loads(squatter.stdout.readline())
    finally:
        squatter.terminate()
        squatter.wait(timeout=20)
    assert seen == {"authorization": None}
    # An account that cannot read the file has no credential to send.
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = 0 if owner_credential_for(server.url, server.data_dir) is None else 3
        finally:
            os._exit(code)
    assert wait_child(pid) == 0


# Listens on a free loopback port as the account it runs as, prints the
# Authorization header of the first request, answers 401.
_SQUATTER = """
import http.server, json
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        print(json.dumps({"authorization": self.headers.get("authorization")}), flush=True)
        self.send_response(401); self.send_header("content-length", "2"); self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.handle_request()
"""
