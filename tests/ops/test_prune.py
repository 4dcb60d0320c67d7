"""`valhalla data prune`: old cone decisions and server errors go, under the
store's lock, audited; what health reads stays, so no light changes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.cli.conftest import CLEAN_ENV
from tests.conftest import FakeClock
from valhalla_gov.audit.service import ChainWatcher, verify_chain
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.cli import app
from valhalla_gov.compose import open_json
from valhalla_gov.cone.store import DECISIONS
from valhalla_gov.health.service import compute_health
from valhalla_gov.health.store import SERVER_ERRORS, THRESHOLDS
from valhalla_gov.prune import parse_duration, prune
from valhalla_gov.storage.protocol import Store
from valhalla_gov.timeutil import iso_z

# A small deny window: the check reads at most 10 * SCAN_FACTOR (5) = 50 lines.
LIMITS = {"deny_window": 10, "deny_min_decisions": 5, "error_window_minutes": 60}


def _records(store: Store, log: Any) -> list[dict[str, Any]]:
    return [entry.record for entry in store.scan_log_forward(log)]


def seed(store: Store, clock: FakeClock) -> None:
    """100 operator decisions a year old (the older 50 allowed, the newer 50
    mostly denied), then 10 viewer ones from today, which do not count: the
    deny rate reads the newest 50 lines and counts the year-old denials.
    Server errors from a year, two hours and ten minutes ago."""
    now = clock()
    old, today = now - timedelta(days=365), now - timedelta(hours=1)
    with store.transaction() as txn:
        txn.write_document(THRESHOLDS, LIMITS)
        for n in range(100):
            allowed = n < 50 or n % 5 == 0
            at = iso_z(old + timedelta(minutes=n))
            txn.append_log(DECISIONS, {"ts_utc": at, "allowed": allowed, "role": "operator"})
        for n in range(10):
            at = iso_z(today + timedelta(minutes=n))
            txn.append_log(DECISIONS, {"ts_utc": at, "allowed": True, "role": "viewer"})
        for ago in (timedelta(days=365), timedelta(hours=2), timedelta(minutes=10)):
            txn.append_log(SERVER_ERRORS, {"ts_utc": iso_z(now - ago), "path": "/x"})


def health(store: Store, clock: FakeClock) -> dict[str, Any]:
    status = compute_health(store=store, clock=clock, watcher=ChainWatcher())
    return {name: check.model_dump() for name, check in status.checks.items()}


def test_prune_drops_old_records_keeps_what_health_reads_and_is_audited(
    store: Store, clock: FakeClock
) -> None:
    seed(store, clock)
    before = health(store, clock)
    assert before["deny_rate"]["status"] == "red"  # the year-old denials still count
    assert before["server_errors"]["status"] == "red"
    report = prune(
        store=store,
        clock=clock,
        actor="local",
        decisions_older_than="90d",
        server_errors_older_than="5m",
    )
    decisions, errors = report.logs
    # The oldest 60 go; the newest 50 lines (the deny rate reads them) stay.
    assert (decisions.dropped, decisions.kept, decisions.kept_for_health) == (60, 50, 40)
    # Errors older than 5 minutes go, except the one inside health's 60-minute window.
    assert (errors.dropped, errors.kept, errors.kept_for_health) == (2, 1, 1)
    assert len(_records(store, DECISIONS)) == 50
    assert [r["ts_utc"] for r in _records(store, SERVER_ERRORS)] == [
        iso_z(clock() - timedelta(minutes=10))
    ]
    assert health(store, ClockAt(clock)) == before
    event = next(iter(store.scan_log(AUDIT_LOG))).record
    assert event["event"] == "DATA_PRUNED"
    assert event["payload"]["cone_decisions"]["removed"] == 60
    assert event["payload"]["server_errors"]["older_than"] == "5m"
    assert verify_chain(store=store).ok


class ClockAt(FakeClock):
    """The same moment, a new clock object (health memoises per clock read)."""

    def __init__(self, other: FakeClock) -> None:
        super().__init__(other.now)


def test_a_dry_run_counts_what_a_run_removes_and_changes_nothing(
    store: Store, clock: FakeClock
) -> None:
    seed(store, clock)
    logs = {log.name: _records(store, log) for log in store.schema.logs}
    dry = prune(store=store, clock=clock, actor="local", decisions_older_than="1d", dry_run=True)
    assert dry.event is None
    assert {log.name: _records(store, log) for log in store.schema.logs} == logs
    real = prune(store=store, clock=clock, actor="local", decisions_older_than="1d")
    assert [p.dropped for p in dry.logs] == [p.dropped for p in real.logs] == [60]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("90d", timedelta(days=90)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["90", "d", "0d", "1.5d", "90 days", "-3d", "3y", ""])
def test_a_bad_duration_is_refused_plainly(text: str) -> None:
    with pytest.raises(ValueError, match="use a whole number above 0 and a unit"):
        parse_duration(text)


def test_the_cli_prunes_a_data_dir_and_the_chain_stays_green(tmp_path: Path) -> None:
    from valhalla_gov.timeutil import utc_now

    data = tmp_path / "data"
    seed(open_json(data), FakeClock(utc_now()))
    runner = CliRunner()

    def cli(*args: str) -> Any:
        return runner.invoke(app, [*args, "--data-dir", str(data)], env=CLEAN_ENV)

    bad = cli("data", "prune", "--decisions-older-than", "90x")
    assert bad.exit_code == 2
    assert bad.stderr.strip().startswith("error: bad duration '90x'")
    assert cli("data", "prune").exit_code == 2
    dry = cli("data", "prune", "--decisions-older-than", "90d", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "cone_decisions: would remove 60 older than 90d" in dry.stdout
    assert "dry run: nothing changed" in dry.stdout
    done = cli(
        "data", "prune", "--decisions-older-than", "90d", "--server-errors-older-than", "30d"
    )
    assert done.exit_code == 0, done.output
    assert "cone_decisions: removed 60 older than 90d" in done.stdout
    assert "server_errors: removed 1 older than 30d" in done.stdout
    assert "audited as DATA_PRUNED" in done.stdout
    verify = cli("audit", "verify")
    assert verify.exit_code == 0, verify.output
    assert "audit chain OK" in verify.stdout
