"""One audit verify at a time per server process, on the real server.

A verify is held in the middle of its walk (the test holds a lock on the
table it reads), and more verifies are sent: each waits its turn a short
while, then gets 429 with ``Retry-After``, and holds no worker thread while
it waits (a write goes through meanwhile). Once the lock is released, the
held verify answers, and the next one runs.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx2 as httpx
import pytest
import sqlalchemy

from tests.audit.helpers import record_events
from tests.conftest import FakeClock, _truncate, join_all
from tests.live.server import LiveServer
from valhalla_gov.audit.router import VERIFYING
from valhalla_gov.compose import open_sql

pytestmark = [pytest.mark.live]
VERIFIES = 4


def _waiting_on_locks(conn: sqlalchemy.Connection) -> int:
    query = "SELECT count(*) FROM pg_locks WHERE NOT granted"
    return int(conn.execute(sqlalchemy.text(query)).scalar_one())


def test_verifies_run_one_at_a_time_and_the_others_get_429(
    tmp_path: Path, pg_url: str, clock: FakeClock
) -> None:
    _truncate(pg_url)
    store = open_sql(pg_url)
    try:
        record_events(store, clock, 5)
    finally:
        store.close()
    answers: list[httpx.Response] = []
    done = threading.Lock()

    def verify(server: LiveServer) -> None:
        with server.client(timeout=60) as http:
            response = http.get("/core/audit/verify")
        with done:
            answers.append(response)

    engine = sqlalchemy.create_engine(pg_url)
    with LiveServer(tmp_path / "data", env={"VALHALLA_DATABASE_URL": pg_url}) as server:
        holder = engine.connect()
        try:
            with holder.begin():
                holder.execute(sqlalchemy.text("LOCK TABLE log_records IN ACCESS EXCLUSIVE MODE"))
                threads = [threading.Thread(target=verify, args=(server,)) for _ in range(VERIFIES)]
                for thread in threads:
                    thread.start()
                # One verify reaches the table and waits on the lock; each of
                # the others waits its turn, then is refused.
                deadline = time.monotonic() + 30
                while len(answers) < VERIFIES - 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
                with done:
                    refused = list(answers)
                assert [r.status_code for r in refused] == [429] * (VERIFIES - 1)
                with engine.connect() as probe:
                    assert _waiting_on_locks(probe) >= 1  # the held one, still walking
                # Waiting for a turn holds no worker thread: other requests go on.
                with server.client(timeout=10) as http:
                    assert http.get("/core/cone/state").status_code == 200
        finally:
            holder.close()  # the lock goes with the transaction
        join_all(threads)
        assert sorted(r.status_code for r in answers) == [200] + [429] * (VERIFIES - 1)
        held = next(r for r in answers if r.status_code == 200)
        assert held.json()["ok"] is True
        for response in refused:
            retry = int(response.headers["Retry-After"])
            assert retry >= 1
            body = response.json()
            assert body["retry_after_seconds"] == retry
            assert "one at a time" in body["detail"]
        # The turn was handed back: the next verify runs.
        with server.client(timeout=60) as http:
            again = http.get("/core/audit/verify")
        assert again.status_code == 200
        assert again.json()["events"] == 5
    engine.dispose()
    assert VERIFYING.wait_s < 30  # the loop above waits long enough for every refusal
