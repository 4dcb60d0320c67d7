"""SQL-only behaviour: schema checks, the database's own guards, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from tests.conftest import FakeClock, health_now
from tests.live.server import VALHALLA
from valhalla_gov.compose import SCHEMA, open_sql
from valhalla_gov.compose import upgrade_database as upgrade
from valhalla_gov.cone.store import CONE_STATE
from valhalla_gov.errors import ConflictError
from valhalla_gov.go.session_service import start_session
from valhalla_gov.go.session_store import CURRENT, HISTORY
from valhalla_gov.go.tables import go_sessions
from valhalla_gov.migrations import HEAD, VERSIONS_DIR
from valhalla_gov.storage.protocol import Store
from valhalla_gov.storage.sql_backend import Migrations, SchemaOutOfDateError, SqlStore, script_head
from valhalla_gov.storage.sql_placement import FilteredRows, log_placement

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VALHALLA, *args], capture_output=True, text=True, check=False, env=env, timeout=60
    )


def test_an_unmigrated_database_is_refused_with_the_command_to_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    with pytest.raises(SchemaOutOfDateError, match="valhalla db upgrade"):
        open_sql(url)
    status = _cli("db", "status", "--database-url", url)
    assert status.returncode == 1
    assert "valhalla db upgrade" in status.stderr
    served = _cli(
        "serve", "--port", "0", env={"VALHALLA_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
    )
    assert served.returncode == 1
    assert "cannot start" in served.stderr
    assert "valhalla db upgrade" in served.stderr
    first = _cli("db", "upgrade", "--database-url", url)
    assert first.returncode == 0
    assert "upgraded from empty to 0002" in first.stdout
    again = _cli("db", "upgrade", "--database-url", url)
    assert "already at revision 0002" in again.stdout
    assert _cli("db", "status", "--database-url", url).returncode == 0


def test_db_commands_need_a_url() -> None:
    result = _cli("db", "status", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "VALHALLA_DATABASE_URL" in result.stderr


def test_the_declared_head_is_the_scripts_newest_revision() -> None:
    # Stores check the schema against HEAD: a new script without HEAD bumped
    # would let them open a database one revision behind.
    assert script_head(Migrations(SCHEMA, VERSIONS_DIR)) == HEAD


_SCHEMA_CHECK = """
import sys
from valhalla_gov.compose import open_sql
store = open_sql(sys.argv[1], check_schema=False)
print(store.schema_problem())
print("alembic" in " ".join(sys.modules))
"""


@pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)
def test_the_schema_check_reads_the_revision_without_importing_alembic(store: Store) -> None:
    assert isinstance(store, SqlStore)

    def check() -> list[str]:
        run = subprocess.run(
            [sys.executable, "-c", _SCHEMA_CHECK, store.url],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return run.stdout.splitlines()

    assert check() == ["None", "False"]
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        assert check() == [
            "database schema is at revision 0001, this version needs 0002: "
            "run `valhalla db upgrade`",
            "False",
        ]
        with store.engine.begin() as conn:
            conn.execute(text("INSERT INTO alembic_version VALUES ('0002')"))
        assert check()[0].startswith("database schema is at revision 0001, 0002, this version")
        with store.engine.begin() as conn:
            conn.execute(text("DROP TABLE alembic_version"))
        assert check()[0].startswith("database schema is at revision none, this version")
    finally:
        with store.engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
            conn.execute(text("INSERT INTO alembic_version VALUES ('0002')"))
    assert check() == ["None", "False"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_database_refuses_a_second_active_session(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("pg_url")
        from tests.conftest import _truncate

        _truncate(url)
    store = open_sql(url)
    row = {"active": True, "started_at_utc": "2026-01-01T00:00:00Z", "body": "{}"}
    # Straight to the table, past the service and its lock: the index holds.
    with store.engine.begin() as conn:
        conn.execute(insert(go_sessions).values(id="01A", **row))
    with pytest.raises(ConflictError), store.transaction() as txn:
        txn.write_document(
            CURRENT, {"id": "01B", "active": True, "started_at_utc": "2026-01-02T00:00:00Z"}
        )
    with store.engine.begin() as conn:
        conn.execute(insert(go_sessions).values(id="01C", **{**row, "active": False}))
    store.close()


@pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)
def test_the_history_is_the_ended_rows_of_the_sessions_table(store: Store) -> None:
    records: list[dict[str, Any]] = [
        {"id": "01J0000000000000000000000A", "active": False, "ended_at_utc": "a"},
        {"id": "01J0000000000000000000000B", "ended_at_utc": "b"},  # no "active": ended
        {"id": "01J0000000000000000000000C", "active": 0, "ended_at_utc": "c"},
        {"id": "01J0000000000000000000000D", "active": True},
    ]
    with store.transaction() as txn:
        for record in records:
            txn.append_log(HISTORY, record)  # an upsert into the sessions table
    selected = [e.record["id"] for e in store.scan_log(HISTORY)]
    assert selected == [r["id"] for r in reversed(records[:3])]
    # The newest row is active: the history's last record is the one before it.
    with store.transaction() as txn:
        last = txn.last_log_record(HISTORY)
        current = txn.read_document(CURRENT)
    assert last is not None
    assert last["id"] == "01J0000000000000000000000C"
    assert current is not None
    assert current["id"] == "01J0000000000000000000000D"


@pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)
def test_the_history_s_last_record_followed_through_writes_is_the_database_s(
    store: Store,
) -> None:
    """Random writes to the sessions table through both of its views: mostly
    sessions started, changed and ended in turn, sometimes an old row written
    again, ended or re-opened. After each transaction the history's last
    record and the current session, as the next transaction reads them, are
    the ones the database selects."""
    import random

    assert isinstance(store, SqlStore)
    placement = log_placement(HISTORY)
    assert isinstance(placement, FilteredRows)
    truth_query = placement.query(None).order_by(placement.key.desc()).limit(1)
    newest_query = select(go_sessions.c.body).order_by(go_sessions.c.id.desc()).limit(1)
    rng = random.Random(13)
    used: list[str] = []
    active: str | None = None  # the table holds one active row at most
    steps = 120
    for step in range(steps):
        roll = rng.random()
        if roll < 0.5 and active is None:
            key = f"01J{step:04d}"  # a new session, newest by its id
        elif roll < 0.8 and active is not None:
            key = active  # the active session changed or ended
        else:
            key = rng.choice(used) if used else "01J"  # an old row written again
        ended = rng.random() < 0.5 or active not in (None, key)
        if ended and active == key:
            active = None
        elif not ended:
            active = key
        used.append(key)
        record: dict[str, Any] = {"id": key, "active": not ended, "n": step}
        if ended:
            record["ended_at_utc"] = f"t{step}"
        with store.transaction() as txn:
            if rng.random() < 0.5:
                txn.append_log(HISTORY, record)
            else:
                txn.write_document(CURRENT, record)
        with store.transaction() as txn:
            known = txn.last_log_record(HISTORY)
            current = txn.read_document(CURRENT)
        with store.engine.connect() as conn:
            row = conn.execute(truth_query).first()
            newest = conn.execute(newest_query).scalar_one_or_none()
        assert current == (None if newest is None else json.loads(newest)), step
        truth = None if row is None else placement.record("history", row)
        assert known == truth, step


@pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)
def test_probe_names_a_corrupt_document_in_and_out_of_a_transaction(
    store: Store, clock: FakeClock
) -> None:
    # The probe checks each document parses without copying it: the check
    # must still see a corrupt one, read from the database or from the cache.
    assert isinstance(store, SqlStore)
    start_session(store=store, clock=clock, actor="t", notes=None, health=health_now(store))
    with store.transaction() as txn:
        txn.write_document(CONE_STATE, {"band": "B"})
    assert store.probe(write=False) == []
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE documents SET body = '{ nope' WHERE name = :n"), {"n": CONE_STATE.name}
        )
        conn.execute(text("UPDATE go_sessions SET body = '[1'"))
        conn.execute(text("UPDATE store_generation SET n = n + 1"))
    for _ in range(2):  # read from the database, then from the cache
        problems = store.probe(write=False)
        assert len(problems) == 2, problems
        assert any(f"documents row {CONE_STATE.name!r}" in p for p in problems), problems
        assert any("go_sessions" in p for p in problems), problems
    with store.transaction():
        assert store.probe(write=False) == problems
