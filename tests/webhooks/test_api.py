"""``/core/webhooks`` over HTTP (in process), the key, and where secrets never go."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import FakeClock, owner_headers
from tests.webhooks.receiver import Receiver
from valhalla_gov.app import create_app
from valhalla_gov.compose import open_json
from valhalla_gov.errors import ServiceUnavailableError
from valhalla_gov.settings import Settings
from valhalla_gov.transfer import copy_store
from valhalla_gov.webhooks.keys import load_key

URL = "https://hooks.example.com/services/T000/B000/sekrit-path"


@pytest.fixture
def api(data_dir: Path, clock: FakeClock) -> Iterator[TestClient]:
    # No background sender here: these tests look at the routes alone.
    owner = owner_headers(data_dir)
    app = create_app(Settings(data_dir=data_dir, webhook_worker=False), clock=clock)
    with TestClient(
        app, raise_server_exceptions=False, client=("127.0.0.1", 50000), headers=owner
    ) as c:
        yield c


def add(api: TestClient, **body: object) -> dict[str, object]:
    resp = api.post("/core/webhooks", json={"url": URL, **body})
    assert resp.status_code == 201, resp.text
    created: dict[str, object] = resp.json()
    return created


def test_add_list_remove(api: TestClient, data_dir: Path) -> None:
    created = add(api, name="chat", format="slack")
    secret = created["secret"]
    assert isinstance(secret, str)
    assert secret.startswith("whsec_")
    assert len(secret) > 40
    hook = created["webhook"]
    assert isinstance(hook, dict)
    assert hook["events"] == ["GO_SESSION_START", "GO_SESSION_END", "CONE_SET", "HEALTH_CHANGED"]
    assert (hook["name"], hook["url"], hook["format"]) == ("chat", URL, "slack")
    listed = api.get("/core/webhooks")
    assert listed.status_code == 200
    (item,) = listed.json()
    assert item["name"] == "chat"
    assert item["url"] == URL
    assert item["delivery"]["delivered"] == 0
    assert item["delivery"]["failing"] is False
    assert secret not in listed.text
    assert "salt" not in item
    assert "secret" not in item
    # Audited, with the URL cut to its host: chat URLs are credentials.
    events = api.get("/core/audit/events", params={"event": "WEBHOOK_ADD"}).json()["items"]
    assert events[0]["payload"]["url"] == "https://hooks.example.com/…"
    assert "sekrit" not in json.dumps(events)
    assert api.delete("/core/webhooks/chat").json() == {"removed": "chat"}
    assert api.get("/core/webhooks").json() == []
    removed = api.get("/core/audit/events", params={"event": "WEBHOOK_REMOVE"}).json()["items"]
    assert removed[0]["payload"]["name"] == "chat"
    assert api.delete("/core/webhooks/chat").status_code == 404


def test_names_are_unique_and_default_to_the_host(api: TestClient) -> None:
    hook = add(api)["webhook"]
    assert isinstance(hook, dict)
    assert hook["name"] == "hooks.example.com"
    again = api.post("/core/webhooks", json={"url": URL})
    assert again.status_code == 409
    assert "exists" in again.json()["detail"]


# Each refused body, and words its one message must hold.
BAD_BODIES: list[tuple[dict[str, object], str]] = [
    ({"url": "ftp://example.com/x"}, "must start with http:// or https://"),
    ({"url": "javascript:alert(1)"}, "must start with http:// or https://"),
    ({"url": "file:///etc/passwd"}, "must start with http:// or https://"),
    ({"url": "http://"}, "has no host name"),
    ({"url": "http://exa mple.com/"}, "a space or an invisible character (U+0020)"),
    ({"url": "http://example.com:99999/"}, "port must be a number from 1 to 65535"),
    ({"url": "http://example.com:0/"}, "port must be a number from 1 to 65535"),
    ({"url": "http://example.com/" + "a" * 2100}, "at most 2048 characters"),
    ({"url": ""}, "must not be empty"),
    # Found in a security review: these passed, and the HTTP client could
    # not parse them (the sender then failed for every webhook).
    ({"url": "http://[::1]x/"}, "port must be a number from 1 to 65535"),
    ({"url": "http://[v7.x]/"}, "is not a valid IPv6 address"),
    ({"url": "http://exa\u202emple.com/"}, "invisible character (U+202E)"),
    ({"url": "http://exa\u200bmple.com/"}, "invisible character (U+200B)"),
    ({"url": "http://\u00e4..com/"}, "host name is not a valid domain name or IP address"),
    ({"url": "http://256.1.1.1/"}, "host name is not a valid domain name or IP address"),
    ({"url": URL, "events": []}, "name at least one event, or all"),
    ({"url": URL, "events": ["all", "CONE_SET"]}, "all stands alone"),
    ({"url": URL, "events": ["GO_SESION_START"]}, "did you mean GO_SESSION_START?"),
    ({"url": URL, "events": ["go_session_started"]}, "did you mean GO_SESSION_START?"),
    ({"url": URL, "events": ["NO_SUCH_THING"]}, "the events are GO_SESSION_START, "),
    ({"url": URL, "events": ["webhook_test"]}, "a test delivery (webhook test) reaches"),
    ({"url": URL, "events": ["X"] * 51}, "at most 50 items"),
    ({"url": URL, "format": "xml"}, "'json' or 'slack'"),
    ({"url": URL, "name": "../etc"}, "a webhook name is 1 to 64 letters, digits"),
    ({"url": URL, "name": "a" * 65}, "a webhook name is 1 to 64 letters, digits"),
    ({"url": URL, "secret": "mine"}, "is not a field this accepts"),
    ({"events": ["all"]}, "is required"),
]


@pytest.mark.parametrize(("body", "says"), BAD_BODIES)
def test_bad_input_is_422_in_plain_words(
    api: TestClient, body: dict[str, object], says: str
) -> None:
    resp = api.post("/core/webhooks", json=body)
    assert resp.status_code == 422, resp.text
    (error,) = resp.json()["detail"]
    assert set(error) >= {"type", "loc", "msg"}
    msg = error["msg"]
    assert says in msg
    # A sentence, not a Python exception, a regex or a list repr.
    assert not msg.startswith(("Value error", "Assertion")), msg
    assert not any(bit in msg for bit in ("^", "$'", "{0,", "['", "\\")), msg
    assert api.get("/core/webhooks").json() == []


def test_event_names_in_any_case_are_stored_in_upper_case(api: TestClient) -> None:
    hook = add(api, events=["go_session_start", "Cone_Set", " GO_SESSION_START "])["webhook"]
    assert isinstance(hook, dict)
    assert hook["events"] == ["GO_SESSION_START", "CONE_SET"]
    stored = api.get("/core/webhooks").json()[0]["events"]
    assert stored == ["GO_SESSION_START", "CONE_SET"]
    every = add(api, name="every", events=["ALL"])["webhook"]
    assert isinstance(every, dict)
    assert every["events"] == ["all"]


def test_a_bad_name_in_the_path_is_422_in_words(api: TestClient) -> None:
    resp = api.delete("/core/webhooks/" + "a" * 65)
    assert resp.status_code == 422
    (error,) = resp.json()["detail"]
    assert error["loc"] == ["path", "name"]
    assert error["msg"].startswith("a webhook name is 1 to 64 letters")


def test_unknown_names_are_404(api: TestClient) -> None:
    assert api.delete("/core/webhooks/nosuch").status_code == 404
    assert api.post("/core/webhooks/nosuch/test").status_code == 404
    assert api.delete("/core/webhooks/..%2Fx").status_code in (404, 422)


def test_test_send_reports_the_receiver(api: TestClient) -> None:
    with Receiver() as rx:
        created = api.post("/core/webhooks", json={"url": rx.url, "name": "t"}).json()
        resp = api.post("/core/webhooks/t/test")
        assert resp.status_code == 200
        result = resp.json()
        assert (result["ok"], result["status"], result["error"]) == (True, 200, None)
        (got,) = rx.wait_for(1)
        assert got.signed_with(created["secret"])
        assert got.event == "WEBHOOK_TEST"
        assert got.delivery == result["delivery_id"]
        assert got.json["payload"]["webhook"] == "t"
        rx.status = 500
        failed = api.post("/core/webhooks/t/test").json()
        assert (failed["ok"], failed["status"]) == (False, 500)
    down = api.post("/core/webhooks/t/test").json()
    assert down["ok"] is False
    assert down["status"] is None
    assert down["error"]


# URLs that passed the old check and that the HTTP client cannot use.
HOSTILE_URLS = [
    "http://[::1]x/",
    "http://[v7.x]/",
    "http://exa\u202emple.com/",
    "http://\u00e4..com/",
]


def edit_url_by_hand(data_dir: Path, name: str, url: str) -> None:
    """What a person with an editor does to webhooks.json."""
    path = data_dir / "webhooks.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    for hook in doc["webhooks"]:
        if hook["name"] == name:
            hook["url"] = url
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_test_send_to_an_unusable_stored_url_is_a_clear_failure(
    api: TestClient, data_dir: Path, url: str
) -> None:
    add(api, name="bad")
    edit_url_by_hand(data_dir, "bad", url)
    resp = api.post("/core/webhooks/bad/test")
    assert resp.status_code == 200, resp.text  # was a 500
    result = resp.json()
    assert (result["ok"], result["status"]) == (False, None)
    assert "the URL" in result["error"]
    assert "remove the webhook and add it again" in result["error"]
    listed = api.get("/core/webhooks")
    assert listed.status_code == 200
    assert listed.json()[0]["url"] == url


def test_the_key_file_is_private_and_the_secret_is_stored_nowhere(
    api: TestClient, data_dir: Path, tmp_path: Path
) -> None:
    created = add(api, name="chat")
    secret = str(created["secret"])
    key_file = data_dir / "webhook.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    api.post("/core/cone/state", json={"band": "C", "reason": "look for the secret"})
    for path in data_dir.iterdir():
        if path.name != "webhook.key":
            assert secret not in path.read_text(errors="replace"), path
    # An export (any store-to-store copy) carries no secret and no key.
    target = tmp_path / "export"
    copy_store(open_json(data_dir), open_json(target))
    assert (target / "webhooks.json").exists()
    assert not (target / "webhook.key").exists()
    for path in target.iterdir():
        assert secret not in path.read_text(errors="replace"), path
    # The same key derives the same secret; another key does not.
    key = load_key(Settings(data_dir=data_dir), create=False)
    hook = json.loads((data_dir / "webhooks.json").read_text())["webhooks"][0]
    assert key is not None
    assert key.secret(hook["id"], hook["salt"]) == secret
    assert secret not in repr(key)
    # The key file's content as VALHALLA_WEBHOOK_KEY (a move to a database) is the same key.
    moved = load_key(Settings(data_dir=tmp_path, webhook_key=key_file.read_text()), create=False)
    assert moved is not None
    assert moved.secret(hook["id"], hook["salt"]) == secret
    other = load_key(Settings(data_dir=tmp_path, webhook_key="e" * 64), create=False)
    assert other is not None
    assert other.secret(hook["id"], hook["salt"]) != secret


def test_a_database_needs_a_shared_key(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/x.sqlite")
    with pytest.raises(ServiceUnavailableError, match="VALHALLA_WEBHOOK_KEY"):
        load_key(settings, create=True)
    assert not (tmp_path / "webhook.key").exists()
    keyed = Settings(data_dir=tmp_path, database_url="sqlite:///x", webhook_key="a" * 64)
    assert load_key(keyed, create=True) is not None


def test_settings_refuse_a_lease_shorter_than_a_send(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="twice"):
        Settings(data_dir=tmp_path, webhook_lease_seconds=10, webhook_read_timeout=8)
    with pytest.raises(ValueError, match="32"):
        Settings(data_dir=tmp_path, webhook_key="short")


def test_the_cli_refuses_bad_input_in_one_plain_line(data_dir: Path) -> None:
    from tests.cli.conftest import Cli

    cli = Cli(data_dir)
    result = cli.local("webhook", "add", "ftp://example.com/x")
    assert result.exit_code == 2, result.output
    assert result.output == "error: url: the URL must start with http:// or https://\n"
    added = cli.local("webhook", "add", "http://127.0.0.1:9/x", "--events", "all,CONE_SET")
    assert added.exit_code == 2
    assert added.output == "error: events: all stands alone: it already takes every event\n"
    typo = cli.local("webhook", "add", "http://127.0.0.1:9/x", "--events", "GO_SESION_START")
    assert typo.exit_code == 2
    assert typo.output.startswith(
        "error: events: GO_SESION_START is not an audited event (did you mean GO_SESSION_START?); "
        "the events are GO_SESSION_START, GO_SESSION_END, "
    )
    assert "no webhooks" in cli.local("webhook", "list").output
    # Any case is taken, and shown as stored: upper case.
    ok = cli.local(
        "webhook", "add", "http://127.0.0.1:9/x", "--events", "go_session_start,cone_set"
    )
    assert ok.exit_code == 0, ok.output
    assert "events: GO_SESSION_START, CONE_SET;" in ok.output
    assert "X-Valhalla-Timed-Signature: t=<unix time>," in ok.output
