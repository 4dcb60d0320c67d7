"""``valhalla sessions export``: CSV and JSON, oldest first, with durations."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tests.cli.conftest import Cli, Seeder
from valhalla_gov.cli.sessions import COLUMNS, export_row
from valhalla_gov.go.playbook import load_playbook
from valhalla_gov.go.session_models import GoSession

STEPS = [s.id for s in load_playbook(None).steps]
HEADER = [
    "id",
    "started_at_utc",
    "ended_at_utc",
    "duration_seconds",
    "start_band",
    "start_status",
    "end_band",
    "end_status",
    "started_by",
    "ended_by",
    "start_notes",
    "end_notes",
    "steps_completed",
]


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_csv_has_the_header_and_one_row_a_session_oldest_first(cli: Cli, seeder: Seeder) -> None:
    first = seeder.session(
        minutes=90, start_notes="weekly, with a comma", end_notes="ok", steps=STEPS[:2]
    )
    second = seeder.session(minutes=0.5, start_notes='quote "here"\nand a newline')
    cli.local("go", "start", "--notes", "still running")  # not history yet: not exported

    result = cli.local("sessions", "export", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0].split(",") == HEADER == list(COLUMNS)
    rows = _csv(result.stdout)
    assert [r["id"] for r in rows] == [first.id, second.id]
    row = rows[0]
    assert row == {
        "id": str(first.id),
        "started_at_utc": "2026-01-01T09:00:00.000000Z",
        "ended_at_utc": "2026-01-01T10:30:00.000000Z",
        "duration_seconds": "5400.0",
        "start_band": "B",
        "start_status": first.status,
        "end_band": "B",
        "end_status": str((first.end_snapshot or {})["status"]["status"]),
        "started_by": "seed",
        "ended_by": "closer",
        "start_notes": "weekly, with a comma",
        "end_notes": "ok",
        "steps_completed": f"{STEPS[0]};{STEPS[1]}",
    }
    assert rows[1]["duration_seconds"] == "30.0"
    assert rows[1]["start_notes"] == 'quote "here"\nand a newline'
    assert rows[1]["end_notes"] == ""
    assert rows[1]["steps_completed"] == ""


def test_json_export_is_a_list_of_the_same_rows(cli: Cli, seeder: Seeder) -> None:
    first = seeder.session(minutes=60, steps=STEPS[:1])
    second = seeder.session(minutes=15, end_notes="done")
    result = cli.local("sessions", "export", "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == [first.id, second.id]
    assert list(rows[0]) == list(COLUMNS)
    assert rows[0]["duration_seconds"] == 3600.0
    assert rows[0]["steps_completed"] == STEPS[:1]
    assert rows[1]["duration_seconds"] == 900.0
    assert rows[1]["end_notes"] == "done"
    assert rows[1]["start_notes"] is None


def test_range_and_output_file(cli: Cli, seeder: Seeder, tmp_path: Path) -> None:
    sessions = [seeder.session(minutes=10 * (n + 1)) for n in range(4)]
    starts = [str(s.started_at_utc) for s in sessions]
    out = tmp_path / "export.csv"
    result = cli.local(
        "sessions", "export", "--since", starts[1], "--until", starts[2].removesuffix("Z"),
        "--output", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "exported 2 sessions" in result.stderr
    rows = _csv(out.read_text(encoding="utf-8"))
    assert [r["id"] for r in rows] == [sessions[1].id, sessions[2].id]
    assert [r["duration_seconds"] for r in rows] == ["1200.0", "1800.0"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    # A date alone is midnight UTC; the default format is csv.
    day = cli.local("sessions", "export", "--since", "2026-01-03")
    assert [r["id"] for r in _csv(day.stdout)] == [sessions[2].id, sessions[3].id]


def test_empty_export_still_has_the_header(cli: Cli) -> None:
    result = cli.local("sessions", "export")
    assert result.exit_code == 0
    assert result.stdout.strip() == ",".join(COLUMNS)
    assert json.loads(cli.local("sessions", "export", "--format", "json").stdout) == []


def test_export_usage_errors(cli: Cli, tmp_path: Path) -> None:
    assert cli.local("sessions", "export", "--format", "xlsx").exit_code == 2
    assert cli.local("sessions", "export", "--since", "31/01/2026").exit_code == 2
    missing = cli.local("sessions", "export", "--output", str(tmp_path / "no" / "such" / "f.csv"))
    assert missing.exit_code == 1
    assert "cannot write" in missing.stderr


def test_cells_that_a_spreadsheet_would_run_stay_text(cli: Cli, seeder: Seeder) -> None:
    seeder.session(minutes=1, start_notes='=HYPERLINK("http://x")', end_notes="@SUM(A1)")
    row = _csv(cli.local("sessions", "export").stdout)[0]
    assert row["start_notes"] == '\'=HYPERLINK("http://x")'
    assert row["end_notes"] == "'@SUM(A1)"
    # JSON is for programs: the notes stay exactly as written.
    raw = json.loads(cli.local("sessions", "export", "--format", "json").stdout)[0]
    assert raw["start_notes"] == '=HYPERLINK("http://x")'


def test_a_session_from_the_earlier_implementation_gets_a_duration() -> None:
    legacy = GoSession(
        active=False,
        started_at_utc="2026-01-01T09:34:05.283144Z",
        ended_at_utc="2026-01-01T10:34:05.283144Z",
        cone_band="B",
        status="green",
        notes="Weekly review",
    )
    row = export_row(legacy)
    assert row["duration_seconds"] == 3600.0
    assert row["end_notes"] == "Weekly review"
    assert row["start_notes"] is None
    assert row["end_band"] is None
    assert row["steps_completed"] == []
