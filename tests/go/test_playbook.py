"""PACK H: the playbook, fitting and blocking rules, next step, completion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FakeClock, health_now
from tests.go.racing import band_moves_just_before
from valhalla_gov.audit.service import query_events
from valhalla_gov.compose import open_json
from valhalla_gov.cone.canon import Band
from valhalla_gov.cone.service import set_cone_state
from valhalla_gov.errors import ConflictError, NotFoundError
from valhalla_gov.go.models import Playbook
from valhalla_gov.go.playbook import load_playbook
from valhalla_gov.go.service import complete_step, get_checklist, get_next_step
from valhalla_gov.health.publisher import HealthPublisher
from valhalla_gov.health.store import SERVER_ERRORS
from valhalla_gov.storage.protocol import Store
from valhalla_gov.textfiles import ConfigFileError
from valhalla_gov.timeutil import iso_z

EXPECTED_STEPS = [
    ("preflight_view_dashboard", "D", False),
    ("set_opportunistic_caps", "C", True),
    ("confirm_boring_sop", "C", True),
    ("intake_ready", "B", True),
    ("lead_log_ready", "B", True),
    ("weekly_rhythm", "B", True),
    ("start_engine_wholesaling_run", "B", True),
    ("start_one_boring_engine", "B", True),
    ("first_week_review", "B", True),
]


@pytest.fixture
def playbook() -> Playbook:
    return load_playbook(None)


def _band(store: Store, clock: FakeClock, band: Band) -> None:
    set_cone_state(store=store, band=band, reason="test", metrics=None, actor="t", clock=clock)


def _complete(
    store: Store, playbook: Playbook, clock: FakeClock, step: str, done: bool = True
) -> None:
    complete_step(
        store=store,
        health=health_now(store),
        playbook=playbook,
        step_id=step,
        done=done,
        notes=f"note {step}",
        actor="op",
        clock=clock,
    )


def test_default_playbook_has_the_nine_launch_steps_in_order(playbook: Playbook) -> None:
    assert [(s.id, s.band_min, s.blocked_if_red) for s in playbook.steps] == EXPECTED_STEPS
    assert all(s.title and s.why for s in playbook.steps)


@pytest.mark.parametrize(
    ("band", "fitting"),
    [("A", 9), ("B", 9), ("C", 3), ("D", 1)],
)
def test_steps_fit_when_the_band_is_no_worse_than_band_min(
    store: Store,
    clock: FakeClock,
    publisher: HealthPublisher,
    playbook: Playbook,
    band: Band,
    fitting: int,
) -> None:
    _band(store, clock, band)
    checklist = get_checklist(store=store, playbook=playbook, health=publisher.current())
    assert checklist.cone_band == band
    assert [s.fits for s in checklist.steps] == [True] * fitting + [False] * (9 - fitting)


def test_red_health_blocks_only_blocked_if_red_steps(
    store: Store, clock: FakeClock, publisher: HealthPublisher, playbook: Playbook
) -> None:
    _band(store, clock, "D")  # band D is red
    checklist = get_checklist(store=store, playbook=playbook, health=publisher.current())
    assert checklist.status == "red"
    assert [s.blocked for s in checklist.steps] == [False] + [True] * 8
    assert checklist.steps[1].blocked_reason is not None
    assert "band D" in checklist.steps[1].blocked_reason
    assert any("health is red" in r for r in checklist.blocked_reasons)
    nxt = get_next_step(store=store, playbook=playbook, health=publisher.current())
    assert nxt.next_step is not None
    assert nxt.next_step.id == "preflight_view_dashboard"
    _complete(store, playbook, clock, "preflight_view_dashboard")
    nxt = get_next_step(store=store, playbook=playbook, health=publisher.current())
    assert nxt.next_step is None
    assert "blocked while health is red" in nxt.message


def test_server_errors_turn_health_red_and_block_steps_in_a_good_band(
    store: Store, clock: FakeClock, publisher: HealthPublisher, playbook: Playbook
) -> None:
    _band(store, clock, "A")
    with store.transaction() as txn:
        txn.append_log(SERVER_ERRORS, {"ts_utc": iso_z(clock()), "path": "/x"})
    checklist = get_checklist(store=store, playbook=playbook, health=publisher.current())
    assert checklist.status == "red"
    assert all(s.fits for s in checklist.steps)
    assert sum(s.blocked for s in checklist.steps) == 8


def test_next_step_walks_the_playbook_in_order(
    store: Store, clock: FakeClock, publisher: HealthPublisher, playbook: Playbook
) -> None:
    _band(store, clock, "A")
    order = []
    for _ in range(9):
        nxt = get_next_step(store=store, playbook=playbook, health=publisher.current())
        assert nxt.next_step is not None
        assert nxt.message == f"Next: {nxt.next_step.title}"
        order.append(nxt.next_step.id)
        _complete(store, playbook, clock, nxt.next_step.id)
    assert order == [s[0] for s in EXPECTED_STEPS]
    done = get_next_step(store=store, playbook=playbook, health=publisher.current())
    assert done.next_step is None
    assert done.message == "Every step of the playbook is done."


def test_blocked_or_unfit_steps_cannot_be_marked_done(
    store: Store, clock: FakeClock, publisher: HealthPublisher, playbook: Playbook
) -> None:
    _band(store, clock, "C")  # band C is red: blocked_if_red steps are blocked
    _complete(store, playbook, clock, "preflight_view_dashboard")
    with pytest.raises(ConflictError, match="health is red"):
        _complete(store, playbook, clock, "set_opportunistic_caps")
    with pytest.raises(ConflictError, match="cannot be done now"):
        _complete(store, playbook, clock, "intake_ready")
    assert [e.payload["step_id"] for e in query_events(store=store, event="GO_STEP_SET").items] == [
        "preflight_view_dashboard"
    ]
    # Undoing is always allowed.
    _complete(store, playbook, clock, "preflight_view_dashboard", done=False)
    nxt = get_next_step(store=store, playbook=playbook, health=publisher.current())
    assert nxt.next_step is not None
    assert nxt.next_step.id == "preflight_view_dashboard"


def test_a_step_that_needs_a_better_band_says_so(
    store: Store, clock: FakeClock, publisher: HealthPublisher
) -> None:
    custom = Playbook.model_validate(
        {"steps": [{"id": "scale_up", "title": "Scale", "band_min": "A", "blocked_if_red": False}]}
    )
    checklist = get_checklist(store=store, playbook=custom, health=publisher.current())
    assert checklist.steps[0].fits is False
    assert checklist.steps[0].blocked is False
    assert checklist.steps[0].fit_reason == "needs band A or better; the cone is at B"
    with pytest.raises(ConflictError, match="needs band A or better"):
        _complete(store, custom, clock, "scale_up")
    nxt = get_next_step(store=store, playbook=custom, health=publisher.current())
    assert nxt.next_step is None
    assert nxt.message == "The remaining steps need a better band than B."


def test_complete_judges_the_step_inside_its_write_transaction(
    store: Store, clock: FakeClock, playbook: Playbook
) -> None:
    # Band B (the boot default) fits intake_ready; the light is judged now ...
    health = health_now(store)
    assert health.status != "red"
    racing = band_moves_just_before(store, clock, "C")
    # ... and the band moves to C after that, before complete's transaction.
    with pytest.raises(ConflictError, match="needs band B or better; the cone is at C"):
        complete_step(
            store=racing,
            health=health,
            playbook=playbook,
            step_id="intake_ready",
            done=True,
            notes=None,
            actor="op",
            clock=clock,
        )
    assert query_events(store=store, event="GO_STEP_SET").items == []
    checklist = get_checklist(store=store, playbook=playbook, health=health_now(store))
    assert not next(s for s in checklist.steps if s.id == "intake_ready").done


def test_notes_are_kept_when_the_request_leaves_them_out(
    store: Store, clock: FakeClock, publisher: HealthPublisher, playbook: Playbook
) -> None:
    _complete(store, playbook, clock, "intake_ready")  # notes "note intake_ready"
    complete_step(
        store=store,
        health=health_now(store),
        playbook=playbook,
        step_id="intake_ready",
        done=False,
        notes=None,
        keep_notes=True,
        actor="op",
        clock=clock,
    )
    by_id = {
        s.id: s
        for s in get_checklist(store=store, playbook=playbook, health=publisher.current()).steps
    }
    assert by_id["intake_ready"].done is False
    assert by_id["intake_ready"].notes == "note intake_ready"


def test_complete_persists_progress_in_the_seed_format(
    store: Store, clock: FakeClock, publisher: HealthPublisher, playbook: Playbook, tmp_path: Path
) -> None:
    _complete(store, playbook, clock, "intake_ready")
    _complete(store, playbook, clock, "weekly_rhythm")
    _complete(store, playbook, clock, "weekly_rhythm", done=False)
    checklist = get_checklist(store=store, playbook=playbook, health=publisher.current())
    by_id = {s.id: s for s in checklist.steps}
    assert by_id["intake_ready"].done is True
    assert by_id["intake_ready"].notes == "note intake_ready"
    assert by_id["weekly_rhythm"].done is False
    assert checklist.done_count == 1
    events = query_events(store=store, event="GO_STEP_SET").items
    assert [(e.payload["step_id"], e.payload["done"]) for e in events] == [
        ("weekly_rhythm", False),
        ("weekly_rhythm", True),
        ("intake_ready", True),
    ]
    assert events[0].actor == "op"


def test_progress_file_shape(tmp_path: Path, clock: FakeClock, playbook: Playbook) -> None:

    store = open_json(tmp_path / "d")
    _complete(store, playbook, clock, "lead_log_ready")
    raw = json.loads((tmp_path / "d" / "go_progress.json").read_text())
    entry = raw["progress"]["lead_log_ready"]
    assert entry["done"] is True
    assert entry["notes"] == "note lead_log_ready"


def test_unknown_step_is_refused(store: Store, clock: FakeClock, playbook: Playbook) -> None:
    with pytest.raises(NotFoundError, match="known steps: preflight_view_dashboard"):
        _complete(store, playbook, clock, "no_such_step")
    assert query_events(store=store).items == []


def test_playbook_override_from_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "pb.yaml"
    yaml_file.write_text(
        "steps:\n  - id: only_step\n    title: Do it\n    why: because\n    band_min: A\n"
        "    blocked_if_red: false\n"
    )
    assert [s.id for s in load_playbook(yaml_file).steps] == ["only_step"]
    json_file = tmp_path / "pb.json"
    json_file.write_text(json.dumps({"steps": [{"id": "x", "title": "X", "band_min": "D"}]}))
    assert load_playbook(json_file).steps[0].blocked_if_red is True
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"steps": [{"id": "x", "title": "X", "band_min": "E"}]}))
    with pytest.raises(ConfigFileError, match=r"bad\.json"):
        load_playbook(bad)
    dupes = tmp_path / "dupes.json"
    dupes.write_text(json.dumps({"steps": [{"id": "x", "title": "X", "band_min": "D"}] * 2}))
    with pytest.raises(ConfigFileError, match="duplicate step ids"):
        load_playbook(dupes)
