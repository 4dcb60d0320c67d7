"""The real ``valhalla serve`` with a real receiver: kill -9 between the write
and the delivery, two workers sending each event once, the CLI over HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.cli.conftest import Cli
from tests.conftest import FakeClock, _truncate
from tests.live.server import LiveServer
from tests.webhooks.conftest import KEY, add_hook
from tests.webhooks.receiver import Receiver
from tests.webhooks.test_delivery import doc_example
from valhalla_gov.compose import open_json, open_sql
from valhalla_gov.settings import Settings
from valhalla_gov.webhooks import service

pytestmark = pytest.mark.live

# Quick retries and a short lease, so a takeover after kill -9 takes seconds.
FAST = {
    "VALHALLA_WEBHOOK_POLL_SECONDS": "0.1",
    "VALHALLA_WEBHOOK_LEASE_SECONDS": "3",
    "VALHALLA_WEBHOOK_CONNECT_TIMEOUT": "0.3",
    "VALHALLA_WEBHOOK_READ_TIMEOUT": "1",
    "VALHALLA_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    "VALHALLA_WEBHOOK_RETRY_MAX_SECONDS": "0.5",
}


def outbox(data_dir: Path) -> dict[str, object]:
    raw = (data_dir / "webhook_outbox.json").read_text()
    value: dict[str, object] = json.loads(raw)
    return value


def wait_until(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if callable(check) and check():
                return
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def set_band(server: LiveServer, band: str, reason: str) -> None:
    with server.client() as http:
        resp = http.post("/core/cone/state", json={"band": band, "reason": reason})
    assert resp.status_code == 200, resp.text


def test_kill_9_between_the_write_and_the_delivery(data_dir: Path, clock: FakeClock) -> None:
    rx = Receiver()  # down for now
    info, secret = add_hook(
        open_json(data_dir), Settings(data_dir=data_dir), clock, rx.url, events=["CONE_SET"]
    )
    server = LiveServer(data_dir, env=FAST).start()
    try:
        started = time.monotonic()
        set_band(server, "C", "written before the crash")
        assert time.monotonic() - started < 2  # the write did not wait for the receiver

        def attempted() -> bool:
            cursors = outbox(data_dir)["cursors"]
            assert isinstance(cursors, dict)
            return bool(cursors.get(info.id, {}).get("attempts"))

        wait_until(attempted)
    finally:
        server.kill()  # SIGKILL to the whole group: the lease is not handed back
    rx.start()
    try:
        with LiveServer(data_dir, env=FAST):
            (got,) = rx.wait_for(1, timeout=30)
            time.sleep(0.5)
            assert len(rx.received) == 1
    finally:
        rx.stop()
    assert got.signed_with(secret)
    assert got.json["payload"]["reason"] == "written before the crash"
    assert got.delivery == f"{info.id}-{got.json['id']}"
    (listed,) = service.list_webhooks(store=open_json(data_dir))
    assert listed.delivery.delivered == 1
    assert listed.delivery.failing is False


def test_two_workers_send_each_event_once(data_dir: Path, clock: FakeClock) -> None:
    with Receiver() as rx:
        store = open_json(data_dir)
        add_hook(store, Settings(data_dir=data_dir), clock, rx.url, events=["CONE_SET"])
        with LiveServer(data_dir, workers=2, env=FAST) as server:
            bands = "CDABCDABCD"
            for n, band in enumerate(bands):
                set_band(server, band, f"write {n}")
            got = rx.wait_for(len(bands))
            time.sleep(1.0)  # time for any duplicate to arrive
            metrics = httpx.get(f"{server.url}/metrics", headers=server.headers, timeout=10).text
        assert len(rx.received) == len(bands)
    reasons = [r.json["payload"]["reason"] for r in got]
    assert reasons == [f"write {n}" for n in range(len(bands))]  # in log order
    assert len({r.delivery for r in got}) == len(bands)
    assert 'valhalla_webhook_deliveries_total{result="delivered"}' in metrics
    assert 'valhalla_webhook_failing{webhook="ops"} 0.0' in metrics
    # A clean stop hands the lease back, so a restart sends at once.
    assert outbox(data_dir)["lease"] is None


def test_the_cli_over_http(tmp_path: Path, data_dir: Path) -> None:
    cli = Cli(data_dir)
    # At info level, where httpx would log every request's full URL.
    with Receiver() as rx, LiveServer(data_dir, env=FAST, log_level="info") as server:
        remote = ("--url", server.url)
        # On the server's machine: the data dir's owner credential, no token.
        here: dict[str, str | None] = {"VALHALLA_DATA_DIR": str(data_dir)}
        added = cli.run(
            "webhook", "add", rx.url, "--name", "chat", "--format", "slack", *remote, env=here
        )
        assert added.exit_code == 0, added.output
        secret = added.output.rstrip("\n").splitlines()[-1]
        assert secret.startswith("whsec_")
        assert secret.strip() == secret
        listed = cli.run("webhook", "list", *remote, env=here)
        assert listed.exit_code == 0, listed.output
        assert "chat" in listed.output
        assert rx.url in listed.output
        assert "slack" in listed.output
        assert secret not in listed.output
        tested = cli.run("webhook", "test", "chat", *remote, env=here)
        assert tested.exit_code == 0, tested.output
        assert "HTTP 200" in tested.output
        test_delivery = next(r for r in rx.received if r.event == "WEBHOOK_TEST")
        assert test_delivery.signed_with(secret)
        assert set(test_delivery.json) == {"text"}
        # The session start reaches the chat as text.
        resp = httpx.post(
            f"{server.url}/core/go/start_session",
            json={"notes": "hi"},
            headers=server.headers,
            timeout=10,
        )
        assert resp.status_code == 200
        wait_until(lambda: any(r.event == "GO_SESSION_START" for r in rx.received))
        chat = next(r for r in rx.received if r.event == "GO_SESSION_START")
        assert "GO session started by local" in chat.json["text"]
        assert chat.signed_with(secret)
        rx.status = 503
        failed = cli.run("webhook", "test", "chat", *remote, env=here)
        assert failed.exit_code == 1
        assert "HTTP 503" in failed.output
        removed = cli.run("webhook", "remove", "chat", *remote, env=here)
        assert removed.exit_code == 0, removed.output
        assert cli.run("webhook", "remove", "chat", *remote, env=here).exit_code == 2
        assert "no webhooks" in cli.run("webhook", "list", *remote, env=here).output
    log = (data_dir.parent / f"server-{server.port}.log").read_text()
    assert secret not in log
    assert "HTTP Request" not in log  # httpx's per-request line, with the URL
    assert rx.url not in log


def test_a_webhook_with_an_unusable_url_jams_nothing(data_dir: Path, clock: FakeClock) -> None:
    """The security review's case, on the real server: a URL the HTTP client
    cannot parse, edited by hand into webhooks.json beside a working webhook."""
    verify = doc_example("verify")["verify"]
    with Receiver() as rx:
        store = open_json(data_dir)
        settings = Settings(data_dir=data_dir)
        good, secret = add_hook(store, settings, clock, rx.url, name="good", events=["CONE_SET"])
        bad, _ = add_hook(store, settings, clock, "http://127.0.0.1:9/", name="bad")
        path = data_dir / "webhooks.json"
        doc = json.loads(path.read_text())
        doc["webhooks"][1]["url"] = "http://[::1]x/"
        path.write_text(json.dumps(doc))
        with LiveServer(data_dir, env=FAST) as server:
            for n, band in enumerate("CDA"):
                set_band(server, band, f"write {n}")
            got = rx.wait_for(3)
            tested = httpx.post(
                f"{server.url}/core/webhooks/bad/test", headers=server.headers, timeout=10
            )

            def bad_failing() -> bool:
                cursors = outbox(data_dir)["cursors"]
                assert isinstance(cursors, dict)
                return bool(cursors.get(bad.id, {}).get("attempts", 0) >= 2)

            wait_until(bad_failing)
            time.sleep(1.0)  # time for any repeat to arrive
            listed = httpx.get(
                f"{server.url}/core/webhooks", headers=server.headers, timeout=10
            ).json()
        assert len(rx.received) == 3  # each once: the broken one did not restart the pass
    assert [r.json["payload"]["reason"] for r in got] == ["write 0", "write 1", "write 2"]
    for r in got:
        # The documented receiver check, against the real clock.
        assert verify(secret, r.body, r.headers["x-valhalla-timed-signature"]) is True
    assert tested.status_code == 200, tested.text
    result = tested.json()
    assert result["ok"] is False
    assert "the URL" in result["error"]
    state = {h["name"]: h["delivery"] for h in listed}
    assert (state["good"]["delivered"], state["good"]["failing"]) == (3, False)
    assert state["bad"]["failing"] is True
    assert "the URL" in state["bad"]["last_error"]
    log = (data_dir.parent / f"server-{server.port}.log").read_text()
    assert "Traceback" not in log
    assert "unexpected error" not in log
    assert good.id != bad.id


def _idle(read_marks: object, settle: float = 0.5, idle: float = 4.5) -> tuple[object, object]:
    time.sleep(settle)
    assert callable(read_marks)
    before = read_marks()
    time.sleep(idle)  # past the lease (3 s), so past any renewal at half of it
    return before, read_marks()


# The band the data starts in: setting it again is an event that moves no
# health status, so nothing else has a reason to write afterwards either.
SAME_BAND = "B"


def test_an_idle_server_writes_nothing_for_webhooks_json(data_dir: Path, clock: FakeClock) -> None:
    with Receiver() as rx:
        add_hook(
            open_json(data_dir), Settings(data_dir=data_dir), clock, rx.url, events=["CONE_SET"]
        )
        with LiveServer(data_dir, env=FAST) as server:
            set_band(server, SAME_BAND, "one event")
            rx.wait_for(1)

            def marks() -> dict[str, tuple[int, int, int]]:
                return {
                    p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
                    for p in data_dir.iterdir()
                    if p.name.startswith("webhook")
                }

            before, after = _idle(marks)
    assert after == before
    assert len(rx.received) == 1


def test_an_idle_server_writes_nothing_for_webhooks_postgres(
    tmp_path: Path, pg_url: str, clock: FakeClock
) -> None:
    """On PostgreSQL each write transaction bumps the store generation (and
    wakes every server process): an idle sender must bump it never. (This
    counts every writer of an idle server, whose only writes should be the
    ones that follow a change.)"""
    import sqlalchemy

    _truncate(pg_url)
    store = open_sql(pg_url)
    engine = sqlalchemy.create_engine(pg_url)
    try:
        with Receiver() as rx:
            settings = Settings(data_dir=tmp_path / "unused", webhook_key=KEY)
            add_hook(store, settings, clock, rx.url, events=["CONE_SET"])
            env = {**FAST, "VALHALLA_DATABASE_URL": pg_url, "VALHALLA_WEBHOOK_KEY": KEY}
            with LiveServer(tmp_path / "data", workers=2, env=env) as server:
                set_band(server, SAME_BAND, "one event")
                rx.wait_for(1)

                def generation() -> int:
                    with engine.connect() as conn:
                        query = "SELECT n FROM store_generation WHERE id = 1"
                        return int(conn.exec_driver_sql(query).scalar_one())

                before, after = _idle(generation)
        assert after == before
        assert len(rx.received) == 1
    finally:
        engine.dispose()
        store.close()
