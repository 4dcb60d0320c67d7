"""``valhalla go ...`` in local mode: on a data dir, through the services."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli, Seeder
from valhalla_gov.go.playbook import load_playbook

PLAYBOOK = load_playbook(None)
FIRST, SECOND = PLAYBOOK.steps[0].id, PLAYBOOK.steps[1].id


def test_status_before_any_session(cli: Cli) -> None:
    human = cli.local("go", "status")
    assert human.exit_code == 0
    assert "no session has been started yet" in human.stdout
    as_json = cli.local("go", "status", "--json")
    assert as_json.exit_code == 0
    session = json.loads(as_json.stdout)
    assert session["active"] is False
    for field in ("started_at_utc", "ended_at_utc", "cone_band", "status", "notes", "snapshot"):
        assert session[field] is None


def test_start_then_a_second_start_is_refused(cli: Cli, data_dir: Path) -> None:
    started = cli.local("go", "start", "--notes", "weekly review", "--json")
    assert started.exit_code == 0, started.stderr
    session = json.loads(started.stdout)
    assert session["active"] is True
    assert session["started_by"] == "local"
    assert session["notes"] == "weekly review"
    assert set(session["snapshot"]) == {"cone", "status"}
    on_disk = json.loads((data_dir / "go_session.json").read_text())
    assert on_disk["session"]["id"] == session["id"]

    again = cli.local("go", "start", "--notes", "another", "--json")
    assert again.exit_code == 1
    assert again.stdout == ""
    assert "already active" in again.stderr
    assert "`valhalla go end` ends it" in again.stderr
    # The active session is untouched.
    assert json.loads(cli.local("go", "status", "--json").stdout) == session

    human = cli.local("go", "status")
    assert f"active session {session['id']}" in human.stdout
    assert "notes: weekly review" in human.stdout


def test_end_with_nothing_active_says_so_and_keeps_the_steps(cli: Cli) -> None:
    none_yet = cli.local("go", "end", "--notes", "lost?", "--json")
    assert none_yet.exit_code == 1
    assert none_yet.stdout == ""
    assert "no active session; your notes were not saved" in none_yet.stderr
    assert "none has been started yet" in none_yet.stderr

    session_id = json.loads(cli.local("go", "start", "--json").stdout)["id"]
    assert cli.local("go", "complete", FIRST).exit_code == 0
    ended = cli.local("go", "end", "--notes", "caps confirmed", "--json")
    assert ended.exit_code == 0, ended.stderr
    body = json.loads(ended.stdout)
    assert body["id"] == session_id
    assert body["active"] is False
    assert body["end_notes"] == "caps confirmed"
    assert body["ended_by"] == "local"
    assert body["steps_completed"] == [FIRST]
    assert body["duration_seconds"] >= 0

    again = cli.local("go", "end", "--notes", "ignored", "--json")
    assert again.exit_code == 1
    assert again.stdout == ""
    assert "no active session; your notes were not saved" in again.stderr
    assert f"the last one, {session_id}, ended {body['ended_at_utc']}" in again.stderr
    assert json.loads(cli.local("go", "status", "--json").stdout) == body  # unchanged
    bare = cli.local("go", "end")
    assert bare.exit_code == 1
    assert "not saved" not in bare.stderr  # no notes given, none lost
    assert "refused: no active session" in bare.stderr
    human = cli.local("go", "status")
    assert f"no active session; last {session_id} ended" in human.stdout
    assert f"steps completed: {FIRST}" in human.stdout


def test_next_complete_and_checklist(cli: Cli) -> None:
    nxt = cli.local("go", "next", "--json")
    assert nxt.exit_code == 0
    assert json.loads(nxt.stdout)["next_step"]["id"] == FIRST
    human = cli.local("go", "next")
    assert FIRST in human.stdout
    assert f"`valhalla go complete {FIRST}`" in human.stdout

    session_id = json.loads(cli.local("go", "start", "--json").stdout)["id"]
    done = cli.local("go", "complete", FIRST, "--notes", "band B, yellow", "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout) == {
        "ok": True,
        "step_id": FIRST,
        "done": True,
        "notes": "band B, yellow",
        "session_id": session_id,
    }
    assert json.loads(cli.local("go", "next", "--json").stdout)["next_step"]["id"] == SECOND

    human_done = cli.local("go", "complete", SECOND)
    assert f"step {SECOND} marked done (recorded in session {session_id})" in human_done.stdout
    undone = cli.local("go", "complete", SECOND, "--undo", "--json")
    assert json.loads(undone.stdout)["done"] is False

    checklist = json.loads(cli.local("go", "checklist", "--json").stdout)
    assert checklist["done_count"] == 1
    assert checklist["total"] == len(PLAYBOOK.steps)
    assert [s["id"] for s in checklist["steps"]] == [s.id for s in PLAYBOOK.steps]
    table = cli.local("go", "checklist")
    assert table.exit_code == 0
    assert f"1/{len(PLAYBOOK.steps)} done" in table.stdout
    assert "band B, yellow" in table.stdout  # the step's notes
    for step in PLAYBOOK.steps:
        assert step.id in table.stdout


def test_complete_outside_a_session_says_so(cli: Cli) -> None:
    result = cli.local("go", "complete", FIRST)
    assert result.exit_code == 0
    assert "no active session" in result.stdout


def test_unknown_step_is_a_usage_error_naming_the_steps(cli: Cli) -> None:
    result = cli.local("go", "complete", "no_such_step")
    assert result.exit_code == 2
    assert "unknown step 'no_such_step'" in result.stderr
    assert FIRST in result.stderr
    assert result.stdout == ""


def test_notes_over_the_limit_or_not_utf8_are_usage_errors(cli: Cli, data_dir: Path) -> None:
    result = cli.local("go", "start", "--notes", "x" * 10_001)
    assert result.exit_code == 2
    assert "10000" in result.stderr
    # Bytes that are not UTF-8 on a command line arrive as lone surrogates.
    undecodable = cli.local("go", "start", "--notes", "caf\udce9")
    assert undecodable.exit_code == 2
    assert "UTF-8" in undecodable.stderr
    assert cli.local("go", "complete", "step\udce9").exit_code == 2
    assert cli.local("cone", "decide", "flips\udce9", "run").exit_code == 2
    assert cli.local("cone", "set", "A", "--reason", "\udce9").exit_code == 2
    assert not (data_dir / "go_session.json").exists()
    assert not (data_dir / "cone_state.json").exists()


def test_history_newest_first_with_limit_and_range(cli: Cli, seeder: Seeder) -> None:
    first = seeder.session(minutes=60, start_notes="one", steps=[FIRST])
    second = seeder.session(minutes=30, start_notes="two")
    third = seeder.session(minutes=5, start_notes="three", end_notes="[bold]done[/bold]")

    listed = cli.local("go", "history", "--json")
    assert listed.exit_code == 0
    assert [s["id"] for s in json.loads(listed.stdout)] == [third.id, second.id, first.id]

    limited = cli.local("go", "history", "--limit", "2", "--json")
    assert [s["id"] for s in json.loads(limited.stdout)] == [third.id, second.id]
    human = cli.local("go", "history", "--limit", "2")
    assert "showing the newest 2" in human.stdout
    assert str(first.id) not in human.stdout

    assert second.started_at_utc is not None
    # --since/--until filter on the start time, with or without Z or a zone.
    since = cli.local("go", "history", "--since", second.started_at_utc, "--json")
    assert [s["id"] for s in json.loads(since.stdout)] == [third.id, second.id]
    naive = second.started_at_utc.removesuffix("Z")
    until = cli.local("go", "history", "--until", naive, "--json")
    assert [s["id"] for s in json.loads(until.stdout)] == [second.id, first.id]
    zoned = cli.local("go", "history", "--since", "2026-01-02T12:00:00+02:00", "--json")
    assert [s["id"] for s in json.loads(zoned.stdout)] == [third.id, second.id]
    empty = cli.local("go", "history", "--since", "2030-01-01")
    assert "no ended sessions in that time range" in empty.stdout

    table = cli.local("go", "history")
    assert table.exit_code == 0
    for session in (first, second, third):
        assert str(session.id) in table.stdout
    assert "1h 00m 00s" in table.stdout
    assert "30m 00s" in table.stdout
    assert "[bold]done[/bold]" in table.stdout  # notes are shown literally, not as markup


def test_history_option_errors_exit_2(cli: Cli) -> None:
    bad = cli.local("go", "history", "--since", "yesterday")
    assert bad.exit_code == 2
    assert "ISO-8601" in bad.stderr
    backwards = cli.local("go", "history", "--since", "2026-02-01", "--until", "2026-01-01")
    assert backwards.exit_code == 2
    assert "later than --until" in backwards.stderr
    assert cli.local("go", "history", "--limit", "0").exit_code == 2
    assert cli.local("go", "nope").exit_code == 2
