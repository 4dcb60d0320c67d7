"""Cone state: boot default, setting it, persistence, auditing, decisions log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FakeClock
from valhalla_gov.audit.service import verify_chain
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.compose import open_json
from valhalla_gov.cone.canon import Action, load_canon
from valhalla_gov.cone.service import decide, get_cone_state, set_cone_state
from valhalla_gov.cone.store import DECISIONS
from valhalla_gov.errors import NotFoundError
from valhalla_gov.storage.errors import StorageCorruptError
from valhalla_gov.storage.protocol import Log, Store

from .expected import ALL_ENGINES, BOOT_REASON


def _log(store: Store, log: Log) -> list[dict[str, Any]]:
    """All records of a log, oldest first."""
    return [entry.record for entry in store.scan_log_forward(log)]


def test_boot_default_is_band_b_with_the_boot_reason(store: Store) -> None:
    state = get_cone_state(store=store)
    assert state.band == "B"
    assert state.reason == BOOT_REASON
    assert state.metrics == {}
    assert state.updated_at_utc is None


def test_set_cone_state_returns_and_persists_the_new_state(store: Store, clock: FakeClock) -> None:
    state = set_cone_state(
        store=store,
        band="A",
        reason="KPIs green for a week",
        metrics={"cash_months": 9},
        actor="alice",
        clock=clock,
    )
    assert state.band == "A"
    assert state.reason == "KPIs green for a week"
    assert state.metrics == {"cash_months": 9}
    assert state.updated_by == "alice"
    assert state.updated_at_utc == "2026-01-01T09:00:00.000000Z"
    again = get_cone_state(store=store)
    assert again.model_dump() == state.model_dump()


def test_set_cone_state_without_metrics_stores_empty_metrics(
    store: Store, clock: FakeClock
) -> None:
    set_cone_state(store=store, band="C", reason="r", metrics=None, actor="a", clock=clock)
    assert get_cone_state(store=store).metrics == {}


def test_set_cone_state_is_audited_cone_set_with_actor_and_from_to(
    store: Store, clock: FakeClock
) -> None:
    set_cone_state(
        store=store, band="D", reason="cash crunch", metrics=None, actor="ann", clock=clock
    )
    clock.advance(minutes=5)
    set_cone_state(
        store=store, band="C", reason="recovering", metrics={"k": 1}, actor="bob", clock=clock
    )
    events = _log(store, AUDIT_LOG)
    assert [e["event"] for e in events] == ["CONE_SET", "CONE_SET"]
    first, second = events
    assert first["actor"] == "ann"
    assert first["payload"]["from"] == "B"  # the boot default
    assert first["payload"]["to"] == "D"
    assert first["payload"]["reason"] == "cash crunch"
    assert second["actor"] == "bob"
    assert second["payload"]["from"] == "D"
    assert second["payload"]["to"] == "C"
    assert second["payload"]["metrics"] == {"k": 1}
    assert second["ts_utc"] == "2026-01-01T09:05:00.000000Z"
    assert verify_chain(store=store).ok


def test_set_cone_state_writes_cone_state_json(data_dir: Path, clock: FakeClock) -> None:
    store = open_json(data_dir)
    set_cone_state(store=store, band="A", reason="go", metrics={"m": 2}, actor="al", clock=clock)
    on_disk = json.loads((data_dir / "cone_state.json").read_text(encoding="utf-8"))
    assert on_disk["band"] == "A"
    assert on_disk["reason"] == "go"
    assert on_disk["metrics"] == {"m": 2}
    assert on_disk["updated_by"] == "al"
    # A second store on the same dir (a restart) reads it back.
    assert get_cone_state(store=open_json(data_dir)).band == "A"


def test_decide_is_audited_and_logged_allow(store: Store, clock: FakeClock) -> None:
    canon = load_canon(None)
    decision = decide(
        store=store, canon=canon, engine="flips", action="optimize", actor="eve", clock=clock
    )
    assert decision.allowed is True  # band B lets alpha optimize
    (event,) = _log(store, AUDIT_LOG)
    assert event["event"] == "CONE_ALLOW"
    assert event["actor"] == "eve"
    assert event["payload"]["engine"] == "flips"
    assert event["payload"]["action"] == "optimize"
    assert event["payload"]["allowed"] is True
    assert event["payload"]["band"] == "B"
    (record,) = _log(store, DECISIONS)
    assert record == {
        "ts_utc": "2026-01-01T09:00:00.000000Z",
        "engine": "flips",
        "action": "optimize",
        "band": "B",
        "allowed": True,
        "role": "owner",
    }


def test_decide_is_audited_and_logged_deny(store: Store, clock: FakeClock) -> None:
    canon = load_canon(None)
    decision = decide(
        store=store, canon=canon, engine="flips", action="scale", actor="eve", clock=clock
    )
    assert decision.allowed is False  # band B does not let alpha scale
    assert "run, optimize" in decision.reason
    (event,) = _log(store, AUDIT_LOG)
    assert event["event"] == "CONE_DENY"
    assert event["payload"]["allowed"] is False
    (record,) = _log(store, DECISIONS)
    assert record["allowed"] is False
    assert record["action"] == "scale"


def test_every_decision_is_recorded_in_order(store: Store, clock: FakeClock) -> None:
    canon = load_canon(None)
    asked: list[tuple[str, Action]] = [
        ("storage_units", "run"),
        ("resort_chain", "run"),
        ("brrrr", "scale"),
    ]
    for engine, action in asked:
        decide(store=store, canon=canon, engine=engine, action=action, actor="x", clock=clock)
        clock.advance(seconds=1)
    records = _log(store, DECISIONS)
    assert [(r["engine"], r["action"], r["allowed"]) for r in records] == [
        ("storage_units", "run", True),
        ("resort_chain", "run", False),
        ("brrrr", "scale", False),
    ]
    assert [e["event"] for e in _log(store, AUDIT_LOG)] == ["CONE_ALLOW", "CONE_DENY", "CONE_DENY"]


def test_decide_unknown_engine_raises_not_found_and_records_nothing(
    store: Store, clock: FakeClock
) -> None:
    canon = load_canon(None)
    with pytest.raises(NotFoundError) as info:
        decide(store=store, canon=canon, engine="moon_base", action="run", actor="x", clock=clock)
    assert "moon_base" in info.value.detail
    for engine in ALL_ENGINES:
        assert engine in info.value.detail
    assert sorted(info.value.body["known_engines"]) == sorted(ALL_ENGINES)
    assert _log(store, DECISIONS) == []
    assert _log(store, AUDIT_LOG) == []


def test_decide_uses_the_current_band(store: Store, clock: FakeClock) -> None:
    canon = load_canon(None)
    assert decide(
        store=store, canon=canon, engine="wholesaling", action="run", actor="x", clock=clock
    ).allowed
    set_cone_state(store=store, band="D", reason="survival", metrics=None, actor="x", clock=clock)
    decision = decide(
        store=store, canon=canon, engine="wholesaling", action="run", actor="x", clock=clock
    )
    assert decision.allowed is False
    assert decision.band == "D"


# -- files from the earlier implementation, and corrupt files ----------------

LEGACY_STATE = {
    "band": "C",
    "reason": "old",
    "updated_at": "2025-12-01T10:00:00",
    "set_by_ui": True,
}


def test_legacy_cone_state_is_read_unchanged(data_dir: Path, clock: FakeClock) -> None:
    path = data_dir / "cone_state.json"
    path.write_bytes(json.dumps(LEGACY_STATE).encode("utf-8"))
    before = path.read_bytes()
    store = open_json(data_dir)
    state = get_cone_state(store=store)
    assert state.band == "C"
    assert state.reason == "old"
    assert state.model_extra == {"updated_at": "2025-12-01T10:00:00", "set_by_ui": True}
    # Deciding reads the state too; neither read rewrites the file.
    decision = decide(
        store=store, canon=load_canon(None), engine="flips", action="run", actor="x", clock=clock
    )
    assert decision.band == "C"
    assert decision.allowed is True
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "content",
    [
        b'{"band": "C", "reason": ',  # truncated JSON
        b'{"band": "Z", "reason": "no such band"}',  # parses, not a cone state
        b"[1, 2, 3]",
    ],
    ids=["truncated", "unknown-band", "not-an-object"],
)
def test_corrupt_cone_state_fails_naming_the_file_and_is_not_touched(
    data_dir: Path, clock: FakeClock, content: bytes
) -> None:
    path = data_dir / "cone_state.json"
    path.write_bytes(content)
    store = open_json(data_dir)
    with pytest.raises(StorageCorruptError, match=r"cone_state\.json"):
        get_cone_state(store=store)
    with pytest.raises(StorageCorruptError, match=r"cone_state\.json"):
        set_cone_state(store=store, band="A", reason="r", metrics=None, actor="x", clock=clock)
    with pytest.raises(StorageCorruptError, match=r"cone_state\.json"):
        decide(
            store=store,
            canon=load_canon(None),
            engine="flips",
            action="run",
            actor="x",
            clock=clock,
        )
    assert path.read_bytes() == content
    assert _log(store, AUDIT_LOG) == []
    assert _log(store, DECISIONS) == []
