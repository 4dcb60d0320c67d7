"""Edge cases: characters beyond the basic plane, CSV injection, history pages
at and past the 500-item cap, and a revoked token across workers and replicas."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from tests.cli.conftest import Cli, Seeder
from tests.live.server import VALHALLA, LiveServer
from valhalla_gov.auth.service import create_token
from valhalla_gov.compose import open_json
from valhalla_gov.go.session_service import MAX_PAGE, list_sessions
from valhalla_gov.go.session_store import HISTORY
from valhalla_gov.storage.protocol import Store
from valhalla_gov.timeutil import new_id, utc_now

# Astral-plane characters (4 bytes in UTF-8, surrogate pairs in UTF-16 and in
# JavaScript strings), a ZWJ sequence and a flag: what a phone keyboard types.
EMOJI_START = (
    "launch \U0001f680 with \U0001f469\u200d\U0001f680 and \U0001f1f3\U0001f1f4 \U0001f600"
)
EMOJI_END = "done \u2705\U0001f389 \u2014 \U0001f9d1\U0001f3fd\u200d\U0001f4bb signed off"


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_emoji_notes_over_http_in_history_and_in_exports(
    client: TestClient, data_dir: Path, cli: Cli
) -> None:
    started = client.post("/core/go/start_session", json={"notes": EMOJI_START})
    assert started.status_code == 200
    assert started.json()["start_notes"] == EMOJI_START
    assert client.get("/core/go/session").json()["start_notes"] == EMOJI_START
    ended = client.post("/core/go/end_session", json={"notes": EMOJI_END}).json()
    assert (ended["start_notes"], ended["end_notes"]) == (EMOJI_START, EMOJI_END)
    history = client.get("/core/go/sessions").json()["items"]
    assert (history[0]["start_notes"], history[0]["end_notes"]) == (EMOJI_START, EMOJI_END)
    one = client.get(f"/core/go/sessions/{ended['id']}").json()
    assert one["end_notes"] == EMOJI_END
    events = client.get("/core/audit/events", params={"event": "GO_SESSION_END"}).json()
    assert events["items"][0]["payload"]["notes"] == EMOJI_END
    assert client.get("/core/audit/verify").json()["ok"] is True
    # Stored as UTF-8 text, not as \ud83d escapes: the history file reads as written.
    raw = (data_dir / "go_session_history.jsonl").read_bytes()
    assert EMOJI_START.encode("utf-8") in raw
    assert b"\\ud83d" not in raw
    row = _csv(cli.local("sessions", "export").stdout)[0]
    assert (row["start_notes"], row["end_notes"]) == (EMOJI_START, EMOJI_END)
    exported = json.loads(cli.local("sessions", "export", "--format", "json").stdout)[0]
    assert (exported["start_notes"], exported["end_notes"]) == (EMOJI_START, EMOJI_END)


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t", "\r"], ids=repr)
def test_every_csv_injection_prefix_is_neutralised(cli: Cli, seeder: Seeder, prefix: str) -> None:
    start, end = f"{prefix}1+2", f'{prefix}HYPERLINK("http://evil.example")'
    seeder.session(minutes=1, start_notes=start, end_notes=end)
    # To a file: what a spreadsheet opens (stdout escapes control characters
    # for the terminal, so a tab or CR would not show as itself there).
    out = seeder.data_dir.parent / f"export-{ord(prefix)}.csv"
    assert cli.local("sessions", "export", "--output", str(out)).exit_code == 0
    row = _csv(out.read_bytes().decode("utf-8"))[0]
    # A leading apostrophe: the spreadsheet shows text, never runs a formula.
    assert row["start_notes"] == "'" + start
    assert row["end_notes"] == "'" + end
    # JSON is for programs: exactly as written.
    raw = json.loads(cli.local("sessions", "export", "--format", "json").stdout)[0]
    assert (raw["start_notes"], raw["end_notes"]) == (start, end)


def test_a_formula_character_inside_the_text_is_left_alone(cli: Cli, seeder: Seeder) -> None:
    seeder.session(minutes=1, start_notes="a=b+c-d@e", end_notes="😀=1")
    row = _csv(cli.local("sessions", "export").stdout)[0]
    assert (row["start_notes"], row["end_notes"]) == ("a=b+c-d@e", "😀=1")


# -- history pages at and past the cap ------------------------------------------


def seed_history(store: Store, count: int) -> list[str]:
    """``count`` ended sessions one minute apart, written in one bulk append
    (as an import does); their ids, oldest first."""
    start = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
    sessions: list[dict[str, Any]] = []
    for n in range(count):
        moment = start + timedelta(minutes=n)
        sessions.append(
            {
                "active": False,
                "id": new_id(moment, n.to_bytes(10, "big")),
                "started_at_utc": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "ended_at_utc": (moment + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "cone_band": "B",
                "status": "yellow",
                "notes": f"n{n}",
                "start_notes": f"n{n}",
                "end_notes": None,
                "snapshot": None,
                "steps_completed": [],
            }
        )
    with store.transaction() as txn:
        txn.append_many(HISTORY, sessions)
    return [str(s["id"]) for s in sessions]


def walk(store: Store, limit: int) -> tuple[list[str], list[int]]:
    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        page = list_sessions(store=store, limit=limit, cursor=cursor)
        seen.extend(str(s.id) for s in page.items)
        sizes.append(len(page.items))
        if page.next_cursor is None:
            return seen, sizes
        cursor = page.next_cursor
        assert len(sizes) < 100, "the cursor never ends"


@pytest.mark.parametrize(
    ("count", "sizes"),
    [
        (MAX_PAGE - 1, [499]),
        (MAX_PAGE, [500]),  # exactly one full page: no cursor to an empty page
        (MAX_PAGE + 1, [500, 1]),
        (2 * MAX_PAGE, [500, 500]),
        (2 * MAX_PAGE + 1, [500, 500, 1]),
    ],
)
def test_history_pages_at_and_past_the_cap(store: Store, count: int, sizes: list[int]) -> None:
    ids = seed_history(store, count)
    seen, got = walk(store, MAX_PAGE)
    assert got == sizes
    assert seen == list(reversed(ids))  # every session once, newest first
    # A limit over the cap is served as the cap.
    assert len(list_sessions(store=store, limit=10_000).items) == min(count, MAX_PAGE)


def test_history_pages_of_an_exact_multiple_of_a_small_limit(store: Store) -> None:
    ids = seed_history(store, 21)
    seen, sizes = walk(store, 7)
    assert sizes == [7, 7, 7]
    assert seen == list(reversed(ids))


def test_history_over_http_past_500(client: TestClient, data_dir: Path) -> None:
    ids = seed_history(open_json(data_dir), 2 * MAX_PAGE + 3)
    seen: list[str] = []
    params: dict[str, Any] = {"limit": MAX_PAGE}
    while True:
        page = client.get("/core/go/sessions", params=params).json()
        seen.extend(item["id"] for item in page["items"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == list(reversed(ids))
    too_many = client.get("/core/go/sessions", params={"limit": MAX_PAGE + 1})
    assert too_many.status_code == 422


# -- a revoked token, everywhere at once ------------------------------------------


def _pids(log_path: Path, status: int) -> set[int]:
    pids = set()
    for line in log_path.read_text().splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("logger") == "valhalla_gov.access" and record.get("status") == status:
            pids.add(record["pid"])
    return pids


@pytest.mark.live
def test_a_revoked_token_is_refused_by_every_worker_and_replica_on_the_next_request(
    tmp_path: Path,
) -> None:
    """Two servers on one data dir (replicas), one with three workers. Every
    worker has served the token (its tokens cache is warm); the CLI revokes it
    beside them; the very next request anywhere is 401."""
    data_dir = tmp_path / "data"
    store = open_json(data_dir)
    create_token(store=store, name="admin", scopes=["owner"], actor="t", clock=utc_now)
    _, victim = create_token(
        store=store, name="victim", scopes=["viewer"], actor="t", clock=utc_now
    )
    auth = {"Authorization": f"Bearer {victim}"}
    with (
        LiveServer(data_dir, workers=3, log_level="info") as one,
        LiveServer(data_dir, workers=1, log_level="info") as two,
    ):
        for server in (one, two):
            for _ in range(60):
                with httpx.Client(base_url=server.url) as http:  # fresh connection each
                    assert http.get("/core/go/session", headers=auth).status_code == 200
                if server is two or len(_pids(server.log_path, 200)) == 3:
                    break
        assert len(_pids(one.log_path, 200)) >= 2, "one worker served everything"
        revoked = subprocess.run(
            [VALHALLA, "token", "revoke", "victim", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert revoked.returncode == 0, revoked.stderr
        # The very next request, on each replica and each worker that served
        # the token: refused. Sent until every such worker has answered one.
        for server in (one, two):
            served = _pids(server.log_path, 200)
            for sent in range(1, 301):
                with httpx.Client(base_url=server.url) as http:
                    resp = http.get("/core/go/session", headers=auth)
                assert resp.status_code == 401, f"{server.url} request {sent}: {resp.text}"
                if _pids(server.log_path, 401) >= served:
                    break
            assert _pids(server.log_path, 401) >= served, "a worker was never asked"
