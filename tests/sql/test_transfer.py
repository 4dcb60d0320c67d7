"""`valhalla data import/export`: JSON dir -> database -> JSON dir, nothing lost."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.audit.helpers import record_event
from tests.conftest import FakeClock, _truncate
from tests.go.test_legacy_data_dir import LEGACY_FILES
from tests.live.server import VALHALLA
from valhalla_gov.audit.service import verify_chain
from valhalla_gov.audit.store import AUDIT_LOG
from valhalla_gov.auth.service import create_token, ensure_owner_credential
from valhalla_gov.compose import SCHEMA, open_json, open_sql
from valhalla_gov.compose import upgrade_database as upgrade
from valhalla_gov.errors import ConflictError
from valhalla_gov.go.session_service import end_session, list_sessions, start_session
from valhalla_gov.go.session_store import CURRENT
from valhalla_gov.health.publisher import HealthPublisher
from valhalla_gov.storage.json_backend import JsonStore
from valhalla_gov.storage.protocol import Store
from valhalla_gov.transfer import copy_store

LEGACY_ENDED = {
    "session": {
        "active": False,
        "started_at_utc": "2025-12-01T08:00:00.000000Z",
        "ended_at_utc": "2025-12-01T09:00:00.000000Z",
        "cone_band": "B",
        "status": "yellow",
        "notes": "the old ended one",
        "snapshot": {"cone": {}, "status": {}},
    }
}


def _lines(path: Path) -> list[object]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
        upgrade(url)
        return url
    url = str(request.getfixturevalue("pg_url"))
    _truncate(url)
    return url


def _busy_data_dir(path: Path, clock: FakeClock) -> JsonStore:
    """Legacy lines first, then a real chain, history, progress, cone, tokens."""
    path.mkdir(parents=True)
    (path / "audit.log").write_text(LEGACY_FILES["audit.log"])
    (path / "cone_state.json").write_text(LEGACY_FILES["cone_state.json"])
    (path / "go_progress.json").write_text(LEGACY_FILES["go_progress.json"])
    store = open_json(path)
    publisher = HealthPublisher(store=store, clock=clock)
    for n in range(3):
        start_session(
            store=store, clock=clock, actor="a", notes=f"s{n}", health=publisher.current()
        )
        clock.advance(minutes=30)
        end_session(store=store, clock=clock, actor="a", notes=None, health=publisher.current())
        clock.advance(minutes=30)
    record_event(store=store, event="NOTE", payload={"x": 1}, actor="a", clock=clock)
    create_token(store=store, name="ops", scopes=["operator"], actor="a", clock=clock)
    return store


def _summary(store: Store) -> dict[str, object]:
    verify = verify_chain(store=store)
    return {
        "counts": {log.name: sum(1 for _ in store.scan_log_forward(log)) for log in SCHEMA.logs},
        "audit": [e.record for e in store.scan_log_forward(AUDIT_LOG)],
        "history": [s.model_dump() for s in list_sessions(store=store, limit=500).items],
        "verify": (verify.ok, verify.events, verify.legacy_events),
        "docs": {doc.name: store.read_document(doc) for doc in SCHEMA.documents if doc != CURRENT},
        "session": store.read_document(CURRENT),
    }


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_round_trip_through_a_database_loses_nothing(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, clock: FakeClock
) -> None:
    source = _busy_data_dir(tmp_path / "source", clock)
    url = _database(backend, tmp_path, request)
    database = open_sql(url)
    report = copy_store(source, database)
    assert report.records["go_sessions"] == 3
    assert report.audit is not None
    assert report.audit.ok
    assert report.audit.legacy_events == 2
    back = open_json(tmp_path / "back")
    copy_store(database, back)
    before, after, middle = _summary(source), _summary(back), _summary(database)
    assert after == before
    assert middle == before
    # Every audit line comes back with the same content, legacy ones included
    # (the spelling is canonical JSON; chain hashes are over canonical JSON).
    assert _lines(tmp_path / "back" / "audit.log") == _lines(tmp_path / "source" / "audit.log")
    with pytest.raises(ConflictError):
        copy_store(source, database)
    database.close()


def test_an_ended_session_missing_from_history_is_archived_by_the_copy(
    tmp_path: Path, clock: FakeClock
) -> None:
    source_dir = tmp_path / "legacy"
    source_dir.mkdir()
    (source_dir / "go_session.json").write_text(json.dumps(LEGACY_ENDED))
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    database = open_sql(url)
    report = copy_store(open_json(source_dir), database)
    assert report.records["go_sessions"] == 1
    history = list_sessions(store=database).items
    assert [s.notes for s in history] == ["the old ended one"]
    assert history[0].id is not None
    database.close()


def test_the_cli_moves_a_data_dir_in_and_out(tmp_path: Path, clock: FakeClock) -> None:
    source = _busy_data_dir(tmp_path / "source", clock)
    ensure_owner_credential(store=source, data_dir=tmp_path / "source", clock=clock)
    owner = (tmp_path / "source" / "owner.token").read_text().strip()
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [VALHALLA, "data", *args, "--database-url", url],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    imported = cli("import", "--from", str(tmp_path / "source"))
    assert imported.returncode == 0, imported.stderr
    assert "go_sessions: 3 records" in imported.stdout
    assert "audit chain: ok=True" in imported.stdout
    again = cli("import", "--from", str(tmp_path / "source"))
    assert again.returncode == 1
    assert "already holds data" in again.stderr
    exported = cli("export", "--to", str(tmp_path / "out"))
    assert exported.returncode == 0, exported.stderr
    assert _lines(tmp_path / "out" / "audit.log") == _lines(tmp_path / "source" / "audit.log")
    # The owner credential stays with its data dir: neither the database nor
    # the export holds it (only its digest travels, in the token list).
    assert not (tmp_path / "out" / "owner.token").exists()
    exported_files = b"".join(p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file())
    assert owner.encode() not in exported_files
    assert owner.encode() not in (tmp_path / "db.sqlite").read_bytes()
    missing = cli("import", "--from", str(tmp_path / "nope"))
    assert missing.returncode == 2
