"""The shipped deployment files, run for real: Debian's nginx with
deploy/nginx.conf (a test certificate, free ports) in front of a live
`valhalla serve`, and `systemd-analyze verify` on deploy/valhalla.service."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import need
from tests.events.sse import Stream
from tests.live.server import VALHALLA, LiveServer, free_port

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NAME = "valhalla.example.com"
CLIENT = "127.0.0.2"  # the "real" client: another loopback address than the proxy's
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"deploy/nginx.conf no longer has {old!r}: update this test"
    return text.replace(old, new)


def render_site(tls_port: int, http_port: int, upstream: int, cert: Path, key: Path) -> str:
    """deploy/nginx.conf with this machine's ports and a test certificate:
    nothing else changed."""
    site = (DEPLOY / "nginx.conf").read_text()
    site = "\n".join(line for line in site.splitlines() if "listen [::]" not in line)
    site = _replace(site, "listen 80;", f"listen 127.0.0.1:{http_port};")
    site = _replace(site, "listen 443 ", f"listen 127.0.0.1:{tls_port} ")
    site = _replace(site, f"/etc/letsencrypt/live/{NAME}/fullchain.pem", str(cert))
    site = _replace(site, f"/etc/letsencrypt/live/{NAME}/privkey.pem", str(key))
    return _replace(site, "server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")


def make_certificate(where: Path) -> tuple[Path, Path]:
    cert, key = where / "cert.pem", where / "key.pem"
    done = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", f"/CN={NAME}", "-addext",
         f"subjectAltName=DNS:{NAME}", "-keyout", str(key), "-out", str(cert)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return cert, key


@dataclass
class Proxy:
    tls_port: int
    http_port: int
    cert: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"

    def client(self, *, local: str = CLIENT) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.cert))
        transport = httpx.HTTPTransport(verify=context, local_address=local)
        return httpx.Client(base_url=self.url, transport=transport, timeout=10)

    def request(
        self,
        client: httpx.Client,
        method: str,
        path: str,
        *,
        json: object = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """As a browser at https://valhalla.example.com would ask (SNI and Host)."""
        return client.request(
            method,
            path,
            json=json,
            headers={"Host": NAME, **(headers or {})},
            extensions={"sni_hostname": NAME},
        )


@contextlib.contextmanager
def nginx(tmp: Path, upstream: int) -> Iterator[Proxy]:
    need(Path(NGINX).exists(), "nginx is needed: `make nginx` installs Debian's (root + apt-get)")
    need(shutil.which("openssl") is not None, "openssl is needed for a test certificate")
    tmp.mkdir()
    cert, key = make_certificate(tmp)
    proxy = Proxy(free_port(), free_port(), cert)
    (tmp / "site.conf").write_text(
        render_site(proxy.tls_port, proxy.http_port, upstream, cert, key)
    )
    temp = "".join(
        f"    {kind}_temp_path {tmp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\nworker_processes 1;\npid {tmp / 'nginx.pid'};\n"
        f"error_log {tmp / 'error.log'} info;\nevents {{}}\n"
        f"http {{\n    access_log {tmp / 'access.log'};\n{temp}"
        f"    include {tmp / 'site.conf'};\n}}\n"
    )
    args = [NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")]
    checked = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30, check=False)
    assert checked.returncode == 0, checked.stderr
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), ssl_socket(proxy):
                break
            assert proc.poll() is None, (tmp / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not listen"
            time.sleep(0.05)
        yield proxy
    finally:
        proc.send_signal(signal.SIGTERM)  # fast shutdown: open streams are cut
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def ssl_socket(proxy: Proxy) -> Iterator[object]:
    import socket

    with socket.create_connection(("127.0.0.1", proxy.tls_port), timeout=1) as sock:
        yield sock


class ProxiedStream(Stream):
    """The tests' SSE reader, through the proxy by name from CLIENT."""

    proxy: Proxy

    def _run(self) -> None:
        try:
            with self.proxy.client() as client:
                headers = {"Host": NAME, **self.headers}
                request = client.build_request(
                    "GET", self.url, headers=headers, extensions={"sni_hostname": NAME}
                )
                request.extensions["timeout"] = httpx.Timeout(10, read=60).as_dict()
                response = client.send(request, stream=True)
                with contextlib.closing(response):
                    self.status = response.status_code
                    if response.status_code != 200:
                        self.body = response.read().decode()
                        return
                    self._parse(response)
        except httpx.HTTPError:
            pass
        finally:
            self.opened.set()
            self.closed.set()


def token_create(data: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VALHALLA_")}
    done = subprocess.run(
        [VALHALLA, "token", "create", "--name", "proxy", "--scopes", "operator",
         "--data-dir", str(data)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def clients_logged(server: LiveServer, request_id: str) -> list[str | None]:
    deadline = time.monotonic() + 10
    while True:
        found = [
            record.get("client")
            for line in server.log_path.read_text().splitlines()
            if line.startswith("{")
            for record in [json.loads(line)]
            if record.get("request_id") == request_id
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_the_shipped_nginx_site_serves_the_app_over_tls(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {
        "VALHALLA_ALLOWED_HOSTS": NAME,
        "VALHALLA_TRUSTED_PROXIES": "127.0.0.1",
        "VALHALLA_EVENTS_KEEPALIVE_SECONDS": "15",  # a buffering proxy would hold events
    }
    with (
        LiveServer(data, env=env, log_level="info") as server,
        nginx(tmp_path / "nginx", server.port) as proxy,
        proxy.client() as http,
    ):
        token = token_create(data)
        auth = {"Authorization": f"Bearer {token}"}
        page = proxy.request(http, "GET", "/")
        assert page.status_code == 200, page.text
        assert "text/html" in page.headers["content-type"]
        assert page.headers["strict-transport-security"].startswith("max-age=")

        stream = ProxiedStream(f"{proxy.url}/core/events/stream", headers=auth)
        stream.proxy = proxy
        stream.start()
        assert stream.status == 200, stream.body
        try:
            # A write through the proxy, from CLIENT, claiming to be someone else.
            spoofed = {**auth, "X-Forwarded-For": "203.0.113.7", "X-Request-ID": "via-proxy-1"}
            start = proxy.request(
                http, "POST", "/core/go/start_session", json={"notes": "p"}, headers=spoofed
            )
            written = time.monotonic()
            assert start.status_code == 200, start.text
            (event,) = stream.take(1, timeout=5)
            arrived = time.monotonic() - written
            assert event.event == "GO_SESSION_START"
            assert event.record["payload"]["session_id"] == start.json()["id"]
            assert arrived < 1.0, f"the event came {arrived:.2f}s after the write"
            end = proxy.request(http, "POST", "/core/go/end_session", json={}, headers=auth)
            assert end.status_code == 200, end.text
            assert [e.event for e in stream.take(1)] == ["GO_SESSION_END"]
        finally:
            stream.stop()
        # The app saw the real client, not the proxy nor what the client claimed.
        assert clients_logged(server, "via-proxy-1") == [CLIENT]
        # Straight to the app, X-Forwarded-For is not believed from CLIENT.
        with httpx.Client(
            transport=httpx.HTTPTransport(local_address=CLIENT), timeout=10
        ) as direct:
            headers = {**auth, "X-Forwarded-For": "203.0.113.7", "X-Request-ID": "direct-1"}
            assert direct.get(f"{server.url}/core/whoami", headers=headers).status_code == 200
        assert clients_logged(server, "direct-1") == [CLIENT]

        # A foreign name is not passed on: nginx closes (444); the app would say 421.
        with pytest.raises(httpx.RemoteProtocolError):
            http.get("/", headers={"Host": "evil.example"}, extensions={"sni_hostname": NAME})
        # Plain HTTP is only a redirect to HTTPS.
        plain = httpx.get(
            f"http://127.0.0.1:{proxy.http_port}/core/go/session", headers={"Host": NAME}
        )
        assert plain.status_code == 301
        assert plain.headers["location"] == f"https://{NAME}/core/go/session"


def test_the_shipped_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    unit = (DEPLOY / "valhalla.service").read_text()
    # The one path that must exist where it is checked: the installed command.
    unit = _replace(unit, "/opt/valhalla/venv/bin/valhalla", VALHALLA)
    for needed in (
        "User=valhalla",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/valhalla",
        "NoNewPrivileges=true",
        "PrivateTmp=true",
        "Restart=on-failure",
        "EnvironmentFile=/etc/valhalla/valhalla.env",
        "--data-dir /var/lib/valhalla/data",
    ):
        assert needed in unit, needed
    (tmp_path / "valhalla.service").write_text(unit)
    done = subprocess.run(
        [analyze, "verify", str(tmp_path / "valhalla.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Unknown or misplaced keys are only warnings: none is accepted.
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr
