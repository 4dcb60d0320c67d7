"""``valhalla cone ...`` and ``valhalla audit ...`` in local mode."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli
from valhalla_gov.cone.canon import load_canon

CANON = load_canon(None)


def test_cone_show_set_and_show_again(cli: Cli) -> None:
    shown = cli.local("cone", "show", "--json")
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["band"] == "B"
    assert "band B (caution)" in cli.local("cone", "show").stdout

    moved = cli.local("cone", "set", "c", "--reason", "cash runway under 6 months", "--json")
    assert moved.exit_code == 0, moved.stderr
    state = json.loads(moved.stdout)
    assert state["band"] == "C"
    assert state["reason"] == "cash runway under 6 months"
    assert state["updated_by"] == "local"
    human = cli.local("cone", "show")
    assert "band C (stabilize)" in human.stdout
    assert "reason: cash runway under 6 months" in human.stdout
    assert "by local" in human.stdout
    assert (
        "cone set to band A (expansion)" in cli.local("cone", "set", "A", "--reason", "ok").stdout
    )


def test_cone_set_usage_errors(cli: Cli, data_dir: Path) -> None:
    bad_band = cli.local("cone", "set", "E", "--reason", "x")
    assert bad_band.exit_code == 2
    assert "A (expansion)" in bad_band.stderr
    assert cli.local("cone", "set", "A").exit_code == 2  # --reason is required
    blank = cli.local("cone", "set", "A", "--reason", "  ")
    assert blank.exit_code == 2
    assert "say why" in blank.stderr
    assert cli.local("cone", "set", "A", "--reason", "x" * 10_001).exit_code == 2
    assert not (data_dir / "cone_state.json").exists()


def test_cone_decide_allows_denies_and_names_known_engines(cli: Cli) -> None:
    allowed = cli.local("cone", "decide", "storage_units", "run", "--json")
    assert allowed.exit_code == 0, allowed.stderr
    decision = json.loads(allowed.stdout)
    assert decision["allowed"] is True
    assert decision["engine_class"] == "boring"

    cli.local("cone", "set", "D", "--reason", "survival")
    denied = cli.local("cone", "decide", "flips", "SCALE")
    assert denied.exit_code == 0  # a denial is an answer, not a failure
    assert "DENY" in denied.stdout
    assert "does not let alpha engines scale" in denied.stdout

    unknown = cli.local("cone", "decide", "moon_base", "run")
    assert unknown.exit_code == 2
    assert "unknown engine 'moon_base'" in unknown.stderr
    for engine in CANON.engines():
        assert engine in unknown.stderr
    bad_action = cli.local("cone", "decide", "flips", "fly")
    assert bad_action.exit_code == 2
    assert "run, scale, optimize" in bad_action.stderr

    events = json.loads(cli.local("audit", "tail", "--json").stdout)
    assert [e["event"] for e in events] == ["CONE_ALLOW", "CONE_SET", "CONE_DENY"]


def test_audit_tail_is_chronological_and_filters(cli: Cli) -> None:
    assert "no audit events" in cli.local("audit", "tail").stdout
    for band in "ABCD":
        cli.local("cone", "set", band, "--reason", f"to {band}")
    cli.local("go", "start")

    tail = cli.local("audit", "tail", "-n", "3", "--json")
    assert tail.exit_code == 0
    events = json.loads(tail.stdout)
    assert [e["seq"] for e in events] == [3, 4, 5]
    assert [e["event"] for e in events] == ["CONE_SET", "CONE_SET", "GO_SESSION_START"]
    assert all(e["actor"] == "local" for e in events)

    only = json.loads(cli.local("audit", "tail", "--event", "CONE_SET", "--json").stdout)
    assert [e["payload"]["to"] for e in only] == ["A", "B", "C", "D"]

    table = cli.local("audit", "tail", "--lines", "2")
    assert table.exit_code == 0
    assert "GO_SESSION_START" in table.stdout
    assert '"to": "D"' in table.stdout
    assert '"to":"C"' not in table.stdout
    assert cli.local("audit", "tail", "-n", "0").exit_code == 2


def test_audit_verify_ok_then_broken(cli: Cli, data_dir: Path) -> None:
    for band in "ACD":
        cli.local("cone", "set", band, "--reason", f"to {band}")
    ok = cli.local("audit", "verify")
    assert ok.exit_code == 0
    assert "audit chain OK: 3 chained events" in ok.stdout

    log = data_dir / "audit.log"
    lines = log.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace("to C", "to X")
    log.write_text("".join(lines))

    broken = cli.local("audit", "verify")
    assert broken.exit_code == 1
    assert "BROKEN at seq 2" in broken.stdout
    assert "edited line" in broken.stdout
    as_json = cli.local("audit", "verify", "--json")
    assert as_json.exit_code == 1
    result = json.loads(as_json.stdout)
    assert result["ok"] is False
    assert result["first_bad_seq"] == 2
    assert "edited" in result["detail"]


def test_a_corrupt_file_fails_with_its_name_and_stays(cli: Cli, data_dir: Path) -> None:
    state = data_dir / "cone_state.json"
    state.write_text("{not json")
    for args in (("cone", "show"), ("go", "start"), ("cone", "decide", "flips", "run")):
        result = cli.local(*args)
        assert result.exit_code == 1, args
        assert "storage error" in result.stderr
        assert str(state) in result.stderr
        assert result.stdout == ""
    assert state.read_text() == "{not json"

    session = data_dir / "go_session.json"
    session.write_text('{"session": 5}')
    status = cli.local("go", "status")
    assert status.exit_code == 1
    assert str(session) in status.stderr
    assert "repair it or move it aside" in status.stderr
