"""Every tamper class is detected, on the JSON files and on SQL.

The classes: edit, insert, delete, reorder, and truncation of the tail after
a restart. The first four break a link of the hash chain; a cut tail leaves a
shorter chain that is valid by itself, so it is caught by an anchor kept apart
from the log (``valhalla audit head`` / ``/core/audit/head`` / ``/metrics``,
checked with ``verify --anchor SEQ:HASH``). On SQL the ``kind`` column that
``?event=`` filters on is checked against the hashed record too.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.audit.helpers import record_event, record_events, scan_records
from tests.conftest import STORE_URL_FILE, FakeClock, make_store, owner_headers
from valhalla_gov.app import create_app
from valhalla_gov.audit.service import (
    ChainWatcher,
    chain_head,
    parse_anchor,
    query_events,
    verify_chain,
)
from valhalla_gov.cli import app as cli_app
from valhalla_gov.errors import InvalidInputError
from valhalla_gov.settings import Settings
from valhalla_gov.storage.encoding import canonical_json
from valhalla_gov.storage.errors import StorageCorruptError
from valhalla_gov.storage.protocol import Store
from valhalla_gov.timeutil import parse_iso

Records = list[dict[str, Any]]


def _backend(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["store"])


def rewrite(backend: str, tmp_path: Path, records: Records) -> None:
    """Replace the stored audit log by ``records``, as someone with write access
    to the files or the database would: no application code involved."""
    if backend == "json":
        path = tmp_path / "data" / "audit.log"
        path.write_bytes(b"".join(canonical_json(r).encode() + b"\n" for r in records))
        return
    engine = sqlalchemy.create_engine((tmp_path / STORE_URL_FILE).read_text())
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("DELETE FROM log_records WHERE log = 'audit'"))
            for record in records:
                conn.execute(
                    sqlalchemy.text(
                        "INSERT INTO log_records (log, kind, ts_utc, body) "
                        "VALUES ('audit', :kind, :ts, :body)"
                    ),
                    {
                        "kind": record["event"],
                        "ts": record["ts_utc"],
                        "body": canonical_json(record),
                    },
                )
    finally:
        engine.dispose()


def _edit(records: Records) -> Records:
    out = copy.deepcopy(records)
    out[3]["payload"] = {"i": 999}
    return out


def _edit_with_rehash_of_one_line(records: Records) -> Records:
    """An edit that recomputes the edited line's own hash: the next link breaks."""
    from valhalla_gov.audit.service import chain_hash

    out = copy.deepcopy(records)
    out[3]["payload"] = {"i": 999}
    body = {k: v for k, v in out[3].items() if k != "hash"}
    out[3]["hash"] = chain_hash(out[3]["prev"], body)
    return out


def _insert(records: Records) -> Records:
    forged = {**copy.deepcopy(records[2]), "payload": {"i": "forged"}}
    return [*records[:3], forged, *records[3:]]


def _delete(records: Records) -> Records:
    return [*records[:3], *records[4:]]


def _reorder(records: Records) -> Records:
    return [*records[:3], records[4], records[3], *records[5:]]


TAMPERS: dict[str, Callable[[Records], Records]] = {
    "edit": _edit,
    "edit-and-rehash": _edit_with_rehash_of_one_line,
    "insert": _insert,
    "delete": _delete,
    "reorder": _reorder,
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_every_tamper_class_breaks_the_chain(
    request: pytest.FixtureRequest, store: Store, clock: FakeClock, tmp_path: Path, tamper: str
) -> None:
    record_events(store, clock, 8)
    assert verify_chain(store=store).ok
    rewrite(_backend(request), tmp_path, TAMPERS[tamper](scan_records(store)))
    # After a restart: a fresh store and a fresh watcher know nothing of before.
    reopened = make_store(_backend(request), tmp_path)
    result = verify_chain(store=reopened)
    assert not result.ok, f"{tamper} went unseen: {result}"
    # The rehashed line itself verifies; the link after it does not.
    assert result.first_bad_seq == (5 if tamper == "edit-and-rehash" else 4), result
    assert ChainWatcher().check(reopened) is not None


def test_a_cut_tail_is_caught_by_an_anchor_kept_apart(
    request: pytest.FixtureRequest, store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    record_events(store, clock, 8)
    anchor = chain_head(store=store)
    assert anchor.seq == 8
    assert anchor.anchor == f"8:{scan_records(store)[-1]['hash']}"
    rewrite(_backend(request), tmp_path, scan_records(store)[:5])
    reopened = make_store(_backend(request), tmp_path)
    # The shorter chain is valid by itself: without the anchor nothing can tell.
    assert verify_chain(store=reopened).ok
    result = verify_chain(store=reopened, anchor=parse_anchor(str(anchor.anchor)))
    assert not result.ok
    assert result.first_bad_seq == 6
    assert "cut from the tail" in str(result.detail)
    assert (result.head_seq, result.events) == (5, 5)


def test_a_rewritten_history_is_caught_by_an_anchor(
    request: pytest.FixtureRequest, store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    """Cut the tail and append new, validly chained events past the old head:
    the anchor's seq is there again, with another hash."""
    record_events(store, clock, 6)
    anchor = parse_anchor(str(chain_head(store=store).anchor))
    rewrite(_backend(request), tmp_path, scan_records(store)[:4])
    reopened = make_store(_backend(request), tmp_path)
    record_events(reopened, clock, 4, actor="intruder")
    assert verify_chain(store=reopened).ok
    result = verify_chain(store=reopened, anchor=anchor)
    assert not result.ok
    assert result.first_bad_seq == 6
    assert "rewritten" in str(result.detail)


def test_an_anchor_still_held_verifies_as_the_log_grows(store: Store, clock: FakeClock) -> None:
    record_events(store, clock, 3)
    anchor = parse_anchor(str(chain_head(store=store).anchor))
    record_events(store, clock, 3)
    result = verify_chain(store=store, anchor=anchor)
    assert result.ok, result
    assert result.anchored is True
    assert (result.head_seq, result.events) == (6, 6)
    assert result.head_hash == scan_records(store)[-1]["hash"]


def test_the_head_of_an_empty_log(store: Store) -> None:
    head = chain_head(store=store)
    assert (head.seq, head.hash, head.anchor) == (0, None, None)


@pytest.mark.parametrize(
    "text", ["", "5", "5:", ":" + "a" * 64, "0:" + "a" * 64, "5:" + "A" * 64, "5:" + "a" * 63]
)
def test_a_malformed_anchor_is_refused(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_anchor(text)


# -- the SQL kind column ------------------------------------------------------


@pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("direction", ["hide", "forge"])
def test_an_edited_kind_column_is_caught_on_sql(
    store: Store, clock: FakeClock, tmp_path: Path, direction: str
) -> None:
    """``?event=`` filters on the ``kind`` column, the chain hashes the body. A
    kind edited to hide an event from a filter (or to make another show up)
    fails the filtered read with an error naming the row, and fails verify."""
    record_events(store, clock, 6)  # e0 e1 e2 e0 e1 e2
    engine = sqlalchemy.create_engine((tmp_path / STORE_URL_FILE).read_text())
    try:
        with engine.begin() as conn:
            target = (
                conn.execute(
                    sqlalchemy.text(
                        "SELECT id FROM log_records WHERE log = 'audit' AND kind = 'e0' ORDER BY id"
                    )
                )
                .scalars()
                .all()[-1]
            )
            new_kind = "e9" if direction == "hide" else "e1"
            conn.execute(
                sqlalchemy.text("UPDATE log_records SET kind = :k WHERE id = :id"),
                {"k": new_kind, "id": target},
            )
    finally:
        engine.dispose()
    result = verify_chain(store=store)
    assert not result.ok
    assert "kind column" in str(result.detail)
    assert ChainWatcher().check(store) is not None
    with pytest.raises(StorageCorruptError, match="kind column"):
        query_events(store=store, event="e1" if direction == "forge" else "e9")
    with pytest.raises(StorageCorruptError, match="kind column"):
        query_events(store=store)


# -- since / until whatever the clock does ------------------------------------


def test_since_and_until_are_right_when_the_clock_steps_back(
    store: Store, clock: FakeClock
) -> None:
    """Events 0-3, then the clock steps back an hour (NTP, a VM restore, another
    replica running late) for events 4-7. Nothing is silently left out."""
    for n in range(4):
        record_event(store=store, event="e", payload={"i": n}, actor="a", clock=clock)
        clock.advance(minutes=1)
    start = clock.now
    clock.advance(hours=-1)
    for n in range(4, 8):
        record_event(store=store, event="e", payload={"i": n}, actor="a", clock=clock)
        clock.advance(minutes=1)
    records = scan_records(store)
    times = [parse_iso(r["ts_utc"]) for r in records]
    assert times == sorted(times), "stored times go backwards"
    # Every event since the first one: all eight.
    every = query_events(store=store, since=parse_iso(records[0]["ts_utc"]), limit=100)
    assert [e.payload["i"] for e in every.items] == list(range(7, -1, -1))
    # Since the last event before the step: it and all four after it.
    since = query_events(store=store, since=start - timedelta(minutes=1), limit=100)
    assert [e.payload["i"] for e in since.items] == [7, 6, 5, 4, 3]
    until = query_events(store=store, until=parse_iso(records[2]["ts_utc"]), limit=100)
    assert [e.payload["i"] for e in until.items] == [2, 1, 0]
    assert verify_chain(store=store).ok


# -- where the anchor is read: HTTP, /metrics, the CLI ---------------------------


def test_head_over_http_in_metrics_and_verify_with_anchor(data_dir: Path, clock: FakeClock) -> None:
    owner = owner_headers(data_dir)
    app = create_app(Settings(data_dir=data_dir), clock=clock)
    with TestClient(app, client=("127.0.0.1", 50000), headers=owner) as client:
        assert client.post("/core/go/start_session", json={"notes": "a"}).status_code == 200
        head = client.get("/core/audit/head").json()
        assert head["seq"] >= 1
        assert head["anchor"] == f"{head['seq']}:{head['hash']}"
        metrics = client.get("/metrics").text
        assert f"valhalla_audit_head_seq {float(head['seq'])}" in metrics
        assert f'valhalla_audit_head{{hash="{head["hash"]}",seq="{head["seq"]}"}} 1.0' in metrics
        good = client.get("/core/audit/verify", params={"anchor": head["anchor"]}).json()
        assert good["ok"] is True
        assert good["anchored"] is True
        assert client.get("/core/audit/verify", params={"anchor": "x"}).status_code == 422
        lines = (data_dir / "audit.log").read_bytes().splitlines(keepends=True)
        (data_dir / "audit.log").write_bytes(b"".join(lines[:-1]))
        cut = client.get("/core/audit/verify", params={"anchor": head["anchor"]}).json()
        assert cut["ok"] is False
        assert "cut from the tail" in cut["detail"]


def test_cli_audit_head_and_verify_anchor(data_dir: Path, clock: FakeClock) -> None:
    store = make_store("json", data_dir.parent)
    record_events(store, clock, 3)
    runner = CliRunner()
    head = runner.invoke(cli_app, ["audit", "head", "--data-dir", str(data_dir)])
    assert head.exit_code == 0, head.output
    anchor = head.output.strip()
    assert anchor == f"3:{scan_records(store)[-1]['hash']}"
    as_json = runner.invoke(cli_app, ["audit", "head", "--json", "--data-dir", str(data_dir)])
    assert json.loads(as_json.output)["anchor"] == anchor
    args = ["audit", "verify", "--anchor", anchor, "--data-dir", str(data_dir)]
    ok = runner.invoke(cli_app, args)
    assert ok.exit_code == 0, ok.output
    assert "anchor" in ok.output
    lines = (data_dir / "audit.log").read_bytes().splitlines(keepends=True)
    (data_dir / "audit.log").write_bytes(b"".join(lines[:-1]))
    assert runner.invoke(cli_app, ["audit", "verify", "--data-dir", str(data_dir)]).exit_code == 0
    cut = runner.invoke(cli_app, args)
    assert cut.exit_code == 1
    assert "cut from the tail" in cut.output
    bad = runner.invoke(
        cli_app, ["audit", "verify", "--anchor", "nope", "--data-dir", str(data_dir)]
    )
    assert bad.exit_code == 2, bad.output
