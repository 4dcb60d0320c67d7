"""Delivery from the outbox, driven pass by pass on a fake clock, against a
real HTTP receiver on loopback, on every storage backend."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client import REGISTRY

from tests.audit.helpers import record_event
from tests.conftest import FakeClock, make_store
from tests.webhooks.conftest import add_hook, fast_settings
from tests.webhooks.receiver import Receiver
from valhalla_gov.audit.service import query_events, verify_chain
from valhalla_gov.cone.service import set_cone_state
from valhalla_gov.settings import Settings
from valhalla_gov.storage.protocol import Store
from valhalla_gov.timeutil import iso_z
from valhalla_gov.webhooks import sender, service, worker
from valhalla_gov.webhooks import store as hook_store
from valhalla_gov.webhooks.metrics import WebhookCollector
from valhalla_gov.webhooks.sender import Sender
from valhalla_gov.webhooks.worker import Dispatcher, backoff

pytestmark = pytest.mark.anyio


def cone(store: Store, clock: FakeClock, band: str, reason: str = "test") -> None:
    set_cone_state(store=store, band=band, reason=reason, metrics=None, actor="alice", clock=clock)  # type: ignore[arg-type]


def events_named(store: Store, name: str) -> list[dict[str, Any]]:
    page = query_events(store=store, event=name, limit=500)
    return [e.model_dump() for e in page.items]


def state(store: Store, name: str = "ops") -> Any:
    (info,) = [h for h in service.list_webhooks(store=store) if h.name == name]
    return info.delivery


@pytest.fixture
async def dispatcher(
    store: Store, settings: Settings, clock: FakeClock
) -> AsyncIterator[Dispatcher]:
    d = Dispatcher(store=store, settings=settings, clock=clock)
    yield d
    await d.close()


async def test_delivers_signed_audit_records_in_order(
    store: Store, settings: Settings, clock: FakeClock, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    info, secret = add_hook(store, settings, clock, receiver.url, events=["all"])
    cone(store, clock, "C", "storm")
    cone(store, clock, "A", "clear")
    cone(store, clock, "B", "back")
    await dispatcher.tick()
    got = receiver.wait_for(3)
    audit = {e["seq"]: e for e in events_named(store, "CONE_SET")}
    assert [r.json["payload"]["to"] for r in got] == ["C", "A", "B"]
    for r in got:
        assert r.signed_with(secret)
        assert not r.signed_with(secret + "x")
        assert r.event == "CONE_SET"
        assert r.headers["content-type"] == "application/json"
        body = r.json
        assert set(body) == {"id", "event", "ts_utc", "actor", "payload"}
        record = audit[int(body["id"])]
        assert body == {k: (str(record["seq"]) if k == "id" else record[k]) for k in body}
        assert r.delivery == f"{info.id}-{body['id']}"
    assert len({r.delivery for r in got}) == 3
    delivery = state(store)
    assert (delivery.delivered, delivery.last_status, delivery.failing) == (3, 200, False)
    # Nothing new: the next pass sends nothing.
    await dispatcher.tick()
    assert len(receiver.received) == 3


async def test_receiver_down_then_up(
    store: Store, settings: Settings, clock: FakeClock, dispatcher: Dispatcher
) -> None:
    rx = Receiver()  # not started: connection refused
    add_hook(store, settings, clock, rx.url)
    cone(store, clock, "C")
    await dispatcher.tick()
    first = state(store)
    assert first.failing
    assert first.pending_attempts == 1
    assert first.last_status is None
    assert "Connect" in (first.last_error or "")
    assert first.next_attempt_at_utc is not None
    (failing,) = events_named(store, "WEBHOOK_FAILING")
    assert failing["payload"]["name"] == "ops"
    assert failing["actor"] == "system"
    await dispatcher.tick()  # before the retry time: no attempt
    assert state(store).pending_attempts == 1
    clock.advance(seconds=2)
    await dispatcher.tick()
    assert state(store).pending_attempts == 2  # second failure; next in 4 s
    rx.start()
    try:
        clock.advance(seconds=3)
        await dispatcher.tick()
        assert rx.received == []  # still backing off
        clock.advance(seconds=1)
        await dispatcher.tick()
        (got,) = rx.wait_for(1)
        assert got.json["payload"]["to"] == "C"
    finally:
        rx.stop()
    after = state(store)
    assert (after.failing, after.pending_attempts, after.delivered) == (False, 0, 1)
    assert len(events_named(store, "WEBHOOK_FAILING")) == 1  # one per outage, not per attempt
    (recovered,) = events_named(store, "WEBHOOK_RECOVERED")
    assert recovered["payload"]["seq"] == int(got.json["id"])
    assert verify_chain(store=store).ok


def test_backoff_doubles_from_seconds_and_is_capped(settings: Settings) -> None:
    assert [backoff(n, settings) for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert backoff(7, settings) == 60  # capped at webhook_retry_max_seconds
    assert backoff(10_000, settings) == 60
    defaults = Settings(data_dir=Path("unused"))
    assert backoff(1, defaults) <= 5
    assert backoff(50, defaults) == 300


async def test_gives_up_after_the_retry_period(
    store: Store, tmp_path: Path, clock: FakeClock
) -> None:
    settings = fast_settings(tmp_path, webhook_give_up_seconds=60)
    rx = Receiver()
    add_hook(store, settings, clock, rx.url)
    cone(store, clock, "C", "first")
    cone(store, clock, "D", "second")
    d = Dispatcher(store=store, settings=settings, clock=clock)
    try:
        await d.tick()
        assert state(store).pending_attempts == 1
        clock.advance(seconds=61)
        await d.tick()  # the first event is now too old: given up, audited
        await d.tick()  # the second too (one attempt each)
        gave_up = events_named(store, "WEBHOOK_GAVE_UP")
        assert [g["payload"]["event"] for g in gave_up] == ["CONE_SET", "CONE_SET"]
        assert all(g["payload"]["error"] for g in gave_up)
        assert state(store).gave_up == 2
        metrics = {
            (m.name, s.labels.get("webhook")): s.value
            for m in WebhookCollector(store).collect()
            for s in m.samples
        }
        assert metrics[("valhalla_webhook_gave_up_events", "ops")] == 2
        assert metrics[("valhalla_webhook_failing", "ops")] == 1
        # The receiver comes back: the next event goes out; the old ones stay given up.
        rx.start()
        cone(store, clock, "A", "third")
        await d.tick()
        (got,) = rx.wait_for(1)
        assert got.json["payload"]["reason"] == "third"
    finally:
        rx.stop()
        await d.close()
    assert state(store).failing is False


async def test_redirects_are_not_followed(
    store: Store, settings: Settings, clock: FakeClock, dispatcher: Dispatcher
) -> None:
    with Receiver() as bouncer, Receiver() as elsewhere:
        bouncer.status, bouncer.location = 307, elsewhere.url
        add_hook(store, settings, clock, bouncer.url)
        cone(store, clock, "C")
        await dispatcher.tick()
        assert len(bouncer.received) == 1
        assert elsewhere.received == []
    failed = state(store)
    assert failed.failing
    assert failed.last_status == 307
    assert "redirect not followed" in (failed.last_error or "")


async def test_a_receiver_that_does_not_answer_times_out(
    store: Store, settings: Settings, clock: FakeClock, dispatcher: Dispatcher
) -> None:
    with Receiver() as slow:
        slow.delay = 5.0
        add_hook(store, settings, clock, slow.url)
        cone(store, clock, "C")
        with anyio.fail_after(4):  # read timeout 1 s, deadline 1.5 s
            await dispatcher.tick()
    failed = state(store)
    assert failed.failing
    assert failed.last_status is None
    assert "Timeout" in (failed.last_error or "") or "no answer" in (failed.last_error or "")


async def test_a_huge_answer_is_not_read_whole(
    store: Store, settings: Settings, clock: FakeClock, dispatcher: Dispatcher
) -> None:
    with Receiver() as chatty:
        chatty.body = b"x" * (8 << 20)
        add_hook(store, settings, clock, chatty.url)
        cone(store, clock, "C")
        await dispatcher.tick()
    assert state(store).delivered == 1


async def test_slack_format(
    store: Store, settings: Settings, clock: FakeClock, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    _, secret = add_hook(store, settings, clock, receiver.url, fmt="slack", events=["all"])
    cone(store, clock, "C", "disk <full> & hot")
    await dispatcher.tick()
    (got,) = receiver.wait_for(1)
    assert got.signed_with(secret)
    assert set(got.json) == {"text"}
    text = got.json["text"]
    assert "Cone band moved: B (caution) → C (stabilize), by alice" in text
    assert "disk &lt;full&gt; &amp; hot" in text  # Slack's control characters escaped
    assert "{" not in text  # readable, not a JSON dump


async def test_event_filter_and_skipped_events(
    store: Store, settings: Settings, clock: FakeClock, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    add_hook(store, settings, clock, receiver.url, events=["CONE_SET"])
    from valhalla_gov.auth.service import create_token

    start = state(store).last_seq
    create_token(store=store, name="bot", scopes=["viewer"], actor="alice", clock=clock)
    await dispatcher.tick()
    assert receiver.received == []
    # What it does not take is no reason to write: the cursor stays...
    assert state(store).last_seq == start
    cone(store, clock, "D")
    await dispatcher.tick()
    (got,) = receiver.wait_for(1)
    assert got.event == "CONE_SET"
    # ...and moves past it with the next delivery.
    assert state(store).last_seq == hook_store.newest_seq(store)


async def test_a_long_run_of_unwanted_events_moves_the_cursor_once_in_a_while(
    store: Store,
    settings: Settings,
    clock: FakeClock,
    receiver: Receiver,
    dispatcher: Dispatcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """So a restart never reads far, and the lag gauge stays near the truth."""
    monkeypatch.setattr(worker, "SKIP_WRITE", 5)
    add_hook(store, settings, clock, receiver.url, events=["GO_SESSION_START"])
    start = state(store).last_seq
    for band in "CDA":
        cone(store, clock, band)
    await dispatcher.tick()
    assert state(store).last_seq == start  # three passed over: nothing written
    for band in "BCD":
        cone(store, clock, band)
    await dispatcher.tick()
    assert state(store).last_seq == hook_store.newest_seq(store) == start + 6
    assert receiver.received == []


async def test_a_stale_cursor_hint_is_found_again(
    store: Store, settings: Settings, clock: FakeClock, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    """Log cursors change when data moves between backends; the seq is the truth."""
    add_hook(store, settings, clock, receiver.url)
    cone(store, clock, "C")
    await dispatcher.tick()
    receiver.wait_for(1)
    with store.transaction() as txn:
        doc = txn.read_document(hook_store.OUTBOX)
        assert doc is not None
        for cursor in doc["cursors"].values():
            cursor["cursor"] = "7"  # not where it was
        txn.write_document(hook_store.OUTBOX, doc)
    cone(store, clock, "A")
    await dispatcher.tick()
    got = receiver.wait_for(2)
    assert [r.json["payload"]["to"] for r in got] == ["C", "A"]


async def test_a_process_with_another_key_does_not_sign(
    store: Store, tmp_path: Path, settings: Settings, clock: FakeClock, receiver: Receiver
) -> None:
    add_hook(store, settings, clock, receiver.url)
    cone(store, clock, "C")
    other = fast_settings(tmp_path, webhook_key="f" * 64)
    d = Dispatcher(store=store, settings=other, clock=clock)
    try:
        await d.tick()
    finally:
        await d.close()
    assert receiver.received == []
    assert "master key" in (state(store).last_error or "")


async def test_one_sender_at_a_time(
    request: pytest.FixtureRequest,
    store: Store,
    tmp_path: Path,
    settings: Settings,
    clock: FakeClock,
    receiver: Receiver,
) -> None:
    """Two processes' dispatchers on one store: the lease lets one send."""
    backend = request.node.callspec.params["store"]
    other_store = make_store(backend, tmp_path)
    first = Dispatcher(store=store, settings=settings, clock=clock)
    second = Dispatcher(store=other_store, settings=settings, clock=clock)
    try:
        add_hook(store, settings, clock, receiver.url)
        for band in "CDAB":
            cone(store, clock, band)
        for _ in range(3):
            async with anyio.create_task_group() as tg:
                tg.start_soon(first.tick)
                tg.start_soon(second.tick)
        got = receiver.wait_for(4)
        assert len(got) == 4
        assert len({r.delivery for r in got}) == 4
        # The holder stops without handing the lease back (kill -9): the
        # other takes over once the lease has run out, not before.
        holder, waiting = (first, second) if first._lease_until else (second, first)
        holder._lease_until = None  # forget it, as a dead process would
        cone(store, clock, "C", "after the crash")
        await waiting.tick()
        assert len(receiver.received) == 4
        clock.advance(seconds=settings.webhook_lease_seconds + 1)
        await waiting.tick()
        got = receiver.wait_for(5)
        assert got[-1].json["payload"]["reason"] == "after the crash"
    finally:
        await first.close()
        await second.close()
        if other_store is not store:
            close = getattr(other_store, "close", None)
            if close is not None:
                close()


async def test_a_pass_moves_every_cursor_in_one_transaction(
    store: Store,
    settings: Settings,
    clock: FakeClock,
    receiver: Receiver,
    dispatcher: Dispatcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sender's writes do not grow with webhooks x events: the writes of
    the service keep the store lock to themselves as far as possible."""
    for name in ("a", "b", "c"):
        add_hook(store, settings, clock, receiver.url, name=name)
    cone(store, clock, "B")
    await dispatcher.tick()  # takes the lease to send this one
    receiver.wait_for(3)
    receiver.received.clear()
    for band in "CDACD":
        cone(store, clock, band)
    opened = []
    real = store.transaction

    def counting() -> Any:
        opened.append(1)
        return real()

    monkeypatch.setattr(store, "transaction", counting)
    await dispatcher.tick()
    assert len(receiver.wait_for(15)) == 15
    assert len(opened) == 1
    # Five each in this pass, after the one that took the lease.
    assert {h.name: h.delivery.delivered for h in service.list_webhooks(store=store)} == {
        "a": 6,
        "b": 6,
        "c": 6,
    }


# -- one webhook's trouble is its own -------------------------------------------

# URLs that passed the old check and that the HTTP client cannot use.
HOSTILE_URLS = [
    "http://[::1]x/",
    "http://[v7.x]/",
    "http://exa\u202emple.com/",
    "http://\u00e4..com/",
]


def edit_url_by_hand(store: Store, name: str, url: str) -> None:
    """webhooks.json (or its row) changed behind the API's back."""
    with store.transaction() as txn:
        hooks = txn.read_document(hook_store.WEBHOOKS)
        assert hooks is not None
        for hook in hooks:
            if hook["name"] == name:
                hook["url"] = url
        txn.write_document(hook_store.WEBHOOKS, hooks)


def deliveries(result: str) -> float:
    sample = REGISTRY.get_sample_value("valhalla_webhook_deliveries_total", {"result": result})
    return sample or 0.0


@pytest.mark.parametrize("url", HOSTILE_URLS)
async def test_an_unusable_stored_url_fails_alone(
    store: Store,
    settings: Settings,
    clock: FakeClock,
    receiver: Receiver,
    dispatcher: Dispatcher,
    url: str,
) -> None:
    add_hook(store, settings, clock, receiver.url, name="good", events=["CONE_SET"])
    bad, _ = add_hook(store, settings, clock, "http://127.0.0.1:9/x", name="bad")
    edit_url_by_hand(store, "bad", url)
    for band in "CDA":
        cone(store, clock, band)
    failed_before = deliveries("failed")
    for _ in range(4):
        await dispatcher.tick()
        clock.advance(seconds=3)
    got = receiver.wait_for(3)
    # Each event once: the bad webhook did not make the pass start over.
    assert [r.json["payload"]["to"] for r in got] == ["C", "D", "A"]
    assert len(receiver.received) == 3
    good = state(store, "good")
    last_cone = max(e["seq"] for e in events_named(store, "CONE_SET"))
    assert (good.delivered, good.failing, good.last_seq) == (3, False, last_cone)
    broken = state(store, "bad")
    assert broken.failing
    assert broken.delivered == 0
    assert broken.pending_attempts >= 2  # retried with backoff like any failure
    assert broken.next_attempt_at_utc is not None
    assert broken.last_status is None
    assert "the URL" in (broken.last_error or "")
    assert "remove the webhook and add it again" in (broken.last_error or "")
    (failing,) = events_named(store, "WEBHOOK_FAILING")
    assert failing["payload"]["webhook_id"] == bad.id
    assert deliveries("failed") >= failed_before + 2


@pytest.mark.parametrize("where", ["build", "send", "answer"])
async def test_any_exception_in_one_delivery_is_its_failed_attempt(
    store: Store,
    settings: Settings,
    clock: FakeClock,
    receiver: Receiver,
    dispatcher: Dispatcher,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """Not only the HTTP client's errors: whatever a delivery raises while its
    body is built and signed, sent, or its answer read."""
    add_hook(store, settings, clock, receiver.url, name="good")
    bad, _ = add_hook(store, settings, clock, receiver.url + "/bad", name="bad")

    def boom() -> None:
        raise RuntimeError(f"broken while {where}")

    real_headers = sender.headers

    def headers(**kwargs: Any) -> dict[str, str]:
        if kwargs["delivery"].startswith(bad.id) and where == "build":
            boom()
        return real_headers(**kwargs)

    real_post = Sender._post

    async def post(self: Sender, url: str, body: bytes, hdrs: dict[str, str]) -> int:
        if url.endswith("/bad") and where == "send":
            boom()
        status = await real_post(self, url, body, hdrs)
        if url.endswith("/bad") and where == "answer":
            boom()
        return status

    monkeypatch.setattr(sender, "headers", headers)
    monkeypatch.setattr(Sender, "_post", post)
    cone(store, clock, "C")
    cone(store, clock, "D")
    for _ in range(3):
        await dispatcher.tick()
        clock.advance(seconds=3)
    good = [r for r in receiver.received if r.path == "/hook"]
    assert [r.json["payload"]["to"] for r in good] == ["C", "D"]  # once each
    assert state(store, "good").delivered == 2
    broken = state(store, "bad")
    assert broken.failing
    assert broken.pending_attempts >= 2
    assert f"RuntimeError: broken while {where}" in (broken.last_error or "")
    assert [e["payload"]["name"] for e in events_named(store, "WEBHOOK_FAILING")] == ["bad"]


# -- signatures ------------------------------------------------------------------


async def test_deliveries_carry_a_timed_signature_signed_anew_on_each_try(
    store: Store, settings: Settings, clock: FakeClock, dispatcher: Dispatcher
) -> None:
    with Receiver() as rx:
        _, secret = add_hook(store, settings, clock, rx.url)
        rx.status = 500
        cone(store, clock, "C")
        await dispatcher.tick()
        first_try = int(clock().timestamp())
        clock.advance(seconds=2)
        rx.status = 200
        await dispatcher.tick()
        failed, delivered = rx.wait_for(2)
    stamps = []
    for got, at in ((failed, first_try), (delivered, first_try + 2)):
        header = got.headers["x-valhalla-timed-signature"]
        fields = dict(part.split("=", 1) for part in header.split(","))
        assert set(fields) == {"t", "v1"}
        assert int(fields["t"]) == at
        signed = fields["t"].encode() + b"." + got.body
        assert fields["v1"] == hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        # The body-only signature is still sent, unchanged (deprecated).
        assert got.signed_with(secret)
        stamps.append(fields["t"])
    assert failed.body == delivered.body
    assert stamps[0] != stamps[1]


def doc_example(name: str) -> dict[str, Any]:
    """Run the Python block of docs/webhooks.md that defines ``name``."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)
    (code,) = [b for b in blocks if f"def {name}(" in b]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/webhooks.md", "exec"), namespace)
    return namespace


async def test_the_documented_receiver_check_accepts_a_delivery_and_refuses_a_replay(
    store: Store, settings: Settings, clock: FakeClock, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    verify = doc_example("verify")["verify"]
    _, secret = add_hook(store, settings, clock, receiver.url)
    cone(store, clock, "C")
    await dispatcher.tick()
    (got,) = receiver.wait_for(1)
    header = got.headers["x-valhalla-timed-signature"]
    sent_at = clock().timestamp()
    assert verify(secret, got.body, header, now=sent_at) is True
    assert verify(secret, got.body, header, now=sent_at + 299) is True
    assert verify(secret, got.body, header, now=sent_at + 301) is False  # a replay, later
    assert verify(secret, got.body, header, now=sent_at - 301) is False
    assert verify(secret, got.body + b" ", header, now=sent_at) is False
    assert verify(secret + "x", got.body, header, now=sent_at) is False
    later = header.replace(f"t={int(sent_at)}", f"t={int(sent_at) + 100}")
    assert verify(secret, got.body, later, now=sent_at + 100) is False  # t is signed too
    assert verify(secret, got.body, "garbage", now=sent_at) is False
    assert verify(secret, got.body, "", now=sent_at) is False
    assert verify(secret, got.body, "t=\u00b2,v1=00", now=sent_at) is False
    # The deprecated body-only check, as documented, still holds.
    is_valhalla = doc_example("is_valhalla")["is_valhalla"]
    assert is_valhalla(secret, got.body, got.headers["x-valhalla-signature"])


# -- health is an ordinary event; an idle sender writes nothing -------------------


async def test_health_changed_is_delivered_like_any_audited_event(
    store: Store, settings: Settings, clock: FakeClock, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    add_hook(store, settings, clock, receiver.url)  # the default events
    record_event(
        store=store,
        event="HEALTH_CHANGED",
        payload={"from": "green", "to": "red", "reasons": ["band D"]},
        actor="system",
        clock=clock,
    )
    await dispatcher.tick()
    (got,) = receiver.wait_for(1)
    assert got.event == "HEALTH_CHANGED"
    assert got.json["payload"] == {"from": "green", "to": "red", "reasons": ["band D"]}


async def test_a_pass_with_nothing_to_send_writes_nothing(
    store: Store,
    settings: Settings,
    clock: FakeClock,
    receiver: Receiver,
    dispatcher: Dispatcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every write transaction wakes every process on PostgreSQL: an idle
    sender opens none, the lease included (it is renewed only while sending)."""
    add_hook(store, settings, clock, receiver.url, name="up")
    down = Receiver()  # never started: a webhook waiting for its retry
    add_hook(store, settings, clock, down.url, name="down")
    cone(store, clock, "C")
    await dispatcher.tick()  # holds the lease, delivers to one, fails the other
    receiver.wait_for(1)
    assert state(store, "down").failing
    opened: list[int] = []
    real = store.transaction

    def counting() -> Any:
        opened.append(1)
        return real()

    monkeypatch.setattr(store, "transaction", counting)
    lease = settings.webhook_lease_seconds
    for _ in range(3):  # past half the lease, then past all of it
        clock.advance(seconds=lease / 2 + 0.1)
        down_state = state(store, "down")
        if down_state.next_attempt_at_utc is not None:
            # Keep the failing one not yet due: only time passes.
            with real() as txn:
                outbox = hook_store.load_outbox(txn)
                outbox.cursors[down_state_id(store, "down")].next_attempt_at_utc = iso_z(
                    clock() + timedelta(hours=1)
                )
                hook_store.write_outbox(txn, outbox)
        assert await dispatcher.tick() is False
    for _ in range(2):  # nothing changes at all now
        clock.advance(seconds=lease)
        assert await dispatcher.tick() is False
    assert opened == []
    # Once there is something to send again, it is sent (the lease taken anew).
    cone(store, clock, "D")
    await dispatcher.tick()
    assert [r.json["payload"]["to"] for r in receiver.wait_for(2)] == ["C", "D"]
    assert opened


def down_state_id(store: Store, name: str) -> str:
    (hook,) = [h for h in service.list_webhooks(store=store) if h.name == name]
    return hook.id


async def test_an_outbox_with_the_old_health_mark_still_loads(
    store: Store, settings: Settings, clock: FakeClock, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    """Earlier versions kept the last health status in the outbox: such a file
    opens as it is, and its cursors are used, not reset."""
    add_hook(store, settings, clock, receiver.url, events=["CONE_SET"])
    cone(store, clock, "C", "delivered before the upgrade")
    await dispatcher.tick()
    receiver.wait_for(1)
    with store.transaction() as txn:
        doc = txn.read_document(hook_store.OUTBOX)
        assert doc is not None
        doc["health"] = {"status": "yellow", "at_utc": "2026-01-01T09:00:00.000000Z"}
        txn.write_document(hook_store.OUTBOX, doc)
    before = state(store)
    assert before.delivered == 1
    cone(store, clock, "D", "after the upgrade")
    await dispatcher.tick()
    got = receiver.wait_for(2)
    assert [r.json["payload"]["reason"] for r in got] == [
        "delivered before the upgrade",
        "after the upgrade",
    ]
    assert state(store).delivered == 2
