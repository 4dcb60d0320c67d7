"""``valhalla sessions report``: the insights table, as text, CSV and JSON,
on a data dir and over HTTP."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.cli.conftest import Cli, Seeder
from tests.live.server import LiveServer
from valhalla_gov.go.playbook import load_playbook

STEPS = [s.id for s in load_playbook(None).steps]
# The seeder's clock starts on Thursday 2026-01-01 09:00 UTC; one session a day.
RANGE = ("--since", "2026-01-01", "--until", "2026-01-14T23:59:59Z")


def _seed(seeder: Seeder) -> None:
    seeder.session(minutes=10, steps=STEPS[:1])  # Thu 1 Jan
    seeder.session(minutes=30)  # Fri 2 Jan
    seeder.session(minutes=20, steps=STEPS[:2], gap_hours=24 * 5)  # Sat 3 Jan
    seeder.session(minutes=60)  # Thu 8 Jan


def test_json_is_the_api_report(cli: Cli, seeder: Seeder) -> None:
    _seed(seeder)
    result = cli.local("sessions", "report", *RANGE, "--bucket", "week", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["bucket"] == "week"
    weeks = [(i["start"][:10], i["sessions"], i["median_seconds"]) for i in report["items"]]
    # Weeks start on Monday: 29 Dec, 5 Jan and 12 Jan.
    assert weeks == [("2025-12-29", 3, 1200.0), ("2026-01-05", 1, 3600.0), ("2026-01-12", 0, None)]
    first = report["items"][0]
    assert first["total_seconds"] == 3600.0
    assert first["steps_completed"] == 3
    assert first["bands"]["B"] == 3


def test_csv_has_a_header_and_one_row_a_bucket(cli: Cli, seeder: Seeder) -> None:
    _seed(seeder)
    result = cli.local("sessions", "report", *RANGE, "--bucket", "day", "--csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    assert len(rows) == 14
    assert list(rows[0]) == [
        "start",
        "sessions",
        "total_seconds",
        "median_seconds",
        "steps_completed",
        "band_A",
        "band_B",
        "band_C",
        "band_D",
        "status_green",
        "status_yellow",
        "status_red",
    ]
    by_day = {r["start"][:10]: r for r in rows}
    assert by_day["2026-01-02"]["sessions"] == "1"
    assert by_day["2026-01-02"]["total_seconds"] == "1800.0"
    assert by_day["2026-01-02"]["status_yellow"] == "1"
    assert by_day["2026-01-04"]["sessions"] == "0"
    assert by_day["2026-01-04"]["median_seconds"] == ""


def test_table_for_people(cli: Cli, seeder: Seeder) -> None:
    _seed(seeder)
    result = cli.local("sessions", "report", *RANGE)
    assert result.exit_code == 0, result.output
    assert "GO sessions per week" in result.stdout
    assert "2025-12-29" in result.stdout
    assert "20m 00s" in result.stdout  # the median of 10, 20 and 30 minutes
    assert "B 3" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("--bucket", "year"),
        ("--since", "2026-02-01", "--until", "2026-01-01"),
        ("--csv", "--json"),
        ("--since", "1900-01-01", "--bucket", "day"),
        # Leaves the calendar once converted to UTC (was a traceback).
        ("--since", "0001-01-01T00:00:00+23:59"),
        ("--until", "9999-12-31T23:59:59-23:59"),
    ],
)
def test_usage_errors(cli: Cli, args: tuple[str, ...]) -> None:
    result = cli.local("sessions", "report", *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


@pytest.mark.live
def test_over_http_it_prints_what_the_server_computes(
    cli: Cli, seeder: Seeder, data_dir: Path
) -> None:
    _seed(seeder)
    with LiveServer(data_dir) as server:
        remote = cli.run(
            "sessions",
            "report",
            *RANGE,
            "--json",
            "--url",
            server.url,
            env={"VALHALLA_DATA_DIR": str(data_dir)},
        )
        assert remote.exit_code == 0, remote.output
        api = httpx.get(
            f"{server.url}/core/go/insights",
            params={"since": "2026-01-01T00:00:00Z", "until": "2026-01-14T23:59:59Z"},
            headers=server.headers,
        ).json()
    local = cli.local("sessions", "report", *RANGE, "--json")
    assert json.loads(remote.stdout) == api == json.loads(local.stdout)
