"""`valhalla data backup`: what it refuses, what it copies besides the store,
and the SQLite path (the live tests cover JSON and PostgreSQL under load)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.cli.conftest import CLEAN_ENV
from valhalla_gov.audit.service import verify_chain
from valhalla_gov.auth.service import OwnerCredential, ensure_owner_credential
from valhalla_gov.cli import app
from valhalla_gov.compose import open_json, open_sql, upgrade_database
from valhalla_gov.storage.protocol import Store
from valhalla_gov.timeutil import utc_now
from valhalla_gov.transfer import DATA_DIR_SECRETS


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, ["data", "backup", *args], env={**CLEAN_ENV, **(env or {})})


def fill(where: list[str], env: dict[str, str | None] | None = None) -> None:
    """Three sessions started and ended by the CLI (``where``: its --data-dir
    or nothing, with the database in ``env``)."""
    for n in range(3):
        for command in (["go", "start", "--notes", f"s{n}"], ["go", "end"]):
            done = CliRunner().invoke(app, [*command, *where], env={**CLEAN_ENV, **(env or {})})
            assert done.exit_code == 0, done.output


@pytest.fixture
def source(tmp_path: Path) -> Path:
    open_json(tmp_path / "data")
    fill(["--data-dir", str(tmp_path / "data")])
    return tmp_path / "data"


def test_a_target_that_holds_anything_is_refused_in_one_line(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "old"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    result = run("--data-dir", str(source), "--to", str(target))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"refused: {target} is not empty; back up into a new or empty directory"
    ]
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    # A new directory is made (with its parents) ...
    assert run("--data-dir", str(source), "--to", str(tmp_path / "a" / "b")).exit_code == 0
    assert (tmp_path / "a" / "b" / "audit.log").is_file()
    # ... and an empty one is fine too, and becomes the private backup.
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    assert run("--data-dir", str(source), "--to", str(empty)).exit_code == 0
    assert empty.stat().st_mode & 0o777 == 0o700


def test_a_broken_source_chain_is_refused_not_copied(source: Path, tmp_path: Path) -> None:
    log = source / "audit.log"
    lines = log.read_text().splitlines()
    edited = json.loads(lines[1])
    edited["payload"]["notes"] = "rewritten later"
    lines[1] = json.dumps(edited, separators=(",", ":"), sort_keys=True)
    log.write_text("\n".join(lines) + "\n")
    target = tmp_path / "backup"
    result = run("--data-dir", str(source), "--to", str(target))
    assert result.exit_code == 1
    assert "audit chain is BROKEN at seq 2" in result.stderr
    assert "--allow-broken-chain" in result.stderr
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no partial copy left
    kept = run("--data-dir", str(source), "--to", str(target), "--allow-broken-chain")
    assert kept.exit_code == 0, kept.output
    assert "audit chain: BROKEN at seq 2, copied as it is" in kept.stdout
    copied = verify_chain(store=open_json(target, create=False))
    assert (copied.ok, copied.first_bad_seq) == (False, 2)
    assert (target / "audit.log").read_bytes() == log.read_bytes()


def test_the_data_dirs_secret_files_come_along_private(source: Path, tmp_path: Path) -> None:
    assert "webhook.key" in DATA_DIR_SECRETS
    key = source / "webhook.key"
    key.write_bytes(b"0123456789abcdef" * 4 + b"\n")
    key.chmod(0o600)
    target = tmp_path / "backup"
    result = run("--data-dir", str(source), "--to", str(target))
    assert result.exit_code == 0, result.output
    assert "secret files: webhook.key" in result.stdout
    assert (target / "webhook.key").read_bytes() == key.read_bytes()
    assert (target / "webhook.key").stat().st_mode & 0o777 == 0o600
    # A key file configured elsewhere is the one the data was signed with.
    elsewhere = tmp_path / "keys" / "webhook.key"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"f" * 64)
    other = tmp_path / "backup2"
    env: dict[str, str | None] = {"VALHALLA_WEBHOOK_KEY_FILE": str(elsewhere)}
    assert run("--data-dir", str(source), "--to", str(other), env=env).exit_code == 0
    assert (other / "webhook.key").read_bytes() == b"f" * 64


def test_the_owner_credential_comes_along_so_the_restored_owner_signs_in(
    source: Path, tmp_path: Path
) -> None:
    assert "owner.token" in DATA_DIR_SECRETS
    store = open_json(source, create=False)
    made = ensure_owner_credential(store=store, data_dir=source, clock=utc_now)
    assert made is OwnerCredential.CREATED
    target = tmp_path / "backup"
    result = run("--data-dir", str(source), "--to", str(target))
    assert result.exit_code == 0, result.output
    assert "secret files: owner.token" in result.stdout
    assert (target / "owner.token").read_bytes() == (source / "owner.token").read_bytes()
    assert (target / "owner.token").stat().st_mode & 0o777 == 0o600
    # The restored dir's file is the credential its store knows.
    restored = open_json(target, create=False)
    again = ensure_owner_credential(store=restored, data_dir=target, clock=utc_now)
    assert again is OwnerCredential.PRESENT


def test_a_sqlite_database_is_backed_up_from_one_read_transaction(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade_database(url)
    database = open_sql(url)
    fill([], {"VALHALLA_DATABASE_URL": url})
    target = tmp_path / "backup"
    result = run("--database-url", url, "--to", str(target))
    assert result.exit_code == 0, result.output
    assert "go_sessions: 3 records" in result.stdout
    events = verify_chain(store=database).events
    assert events >= 6  # three starts, three ends
    assert f"audit chain: ok, {events} chained, 0 legacy" in result.stdout
    copy = open_json(target, create=False)
    assert verify_chain(store=copy).events == events
    assert [e.record for e in copy.scan_log_forward(database.schema.logs[0])] == [
        e.record for e in database.scan_log_forward(database.schema.logs[0])
    ]
    database.close()


def test_a_missing_source_is_refused_and_two_sources_are_a_usage_error(tmp_path: Path) -> None:
    missing = run("--data-dir", str(tmp_path / "nope"), "--to", str(tmp_path / "b"))
    assert missing.exit_code == 1  # as every local command answers it
    assert "no data dir at" in missing.stderr
    both = run("--data-dir", "x", "--database-url", "sqlite:///x", "--to", "b")
    assert both.exit_code == 2
    assert not (tmp_path / "b").exists()


def test_a_copy_that_does_not_check_out_keeps_nothing(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from valhalla_gov import transfer

    def lost_a_record(target: Store, report: transfer.TransferReport) -> None:
        raise ValueError("audit: copied 7 records, the target has 6")

    monkeypatch.setattr(transfer, "_check", lost_a_record)
    result = run("--data-dir", str(source), "--to", str(tmp_path / "backup"))
    assert result.exit_code == 1
    assert "the backup does not check out: audit: copied 7 records" in result.stderr
    assert "done" not in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert not list(source.glob(".snapshot-*"))
