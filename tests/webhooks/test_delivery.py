"""Delivery from the outbox, driven pass by pass on a fake clock, against a
real HTTP receiver on loopback, on every storage backend."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import FakeClock, make_store
from tests.webhooks.conftest import add_hook, fast_settings
from tests.webhooks.receiver import Receiver
from valhalla_gov.audit.service import query_events, verify_chain
from valhalla_gov.cone.service import set_cone_state
from valhalla_gov.settings import Settings
from valhalla_gov.storage.protocol import Store
from valhalla_gov.webhooks import service
from valhalla_gov.webhooks import store as hook_store
from valhalla_gov.webhooks.metrics import WebhookCollector
from valhalla_gov.webhooks.worker import Dispatcher, backoff, record_health

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

    create_token(store=store, name="bot", scopes=["viewer"], actor="alice", clock=clock)
    await dispatcher.tick()
    assert receiver.received == []
    newest = hook_store.newest_seq(store)
    assert state(store).last_seq == newest  # moved past what it does not want
    cone(store, clock, "D")
    await dispatcher.tick()
    (got,) = receiver.wait_for(1)
    assert got.event == "CONE_SET"


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


def test_health_change_is_recorded_once(store: Store, tmp_path: Path, clock: FakeClock) -> None:
    assert record_health(store, "yellow", ["band B"], clock=clock) is False  # the baseline
    assert record_health(store, "yellow", ["band B"], clock=clock) is False
    assert events_named(store, "HEALTH_CHANGED") == []
    assert record_health(store, "red", ["band C"], clock=clock) is True
    (changed,) = events_named(store, "HEALTH_CHANGED")
    assert changed["payload"] == {"from": "yellow", "to": "red", "reasons": ["band C"]}
    # Many processes noticing the same change: one event.
    results: list[bool] = []

    def notice() -> None:
        results.append(record_health(store, "green", [], clock=clock))

    threads = [threading.Thread(target=notice) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert [e["payload"]["to"] for e in events_named(store, "HEALTH_CHANGED")] == ["green", "red"]


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
    await dispatcher.tick()  # takes the lease; nothing to send yet
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
    assert {h.name: h.delivery.delivered for h in service.list_webhooks(store=store)} == {
        "a": 5,
        "b": 5,
        "c": 5,
    }
