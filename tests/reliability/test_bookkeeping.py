"""Reads never fail because of bookkeeping.

A request made with a token stamps the token's ``last_used_at_utc`` (at most
once a minute per token and worker), which writes ``tokens.json``. That write
is bookkeeping, not the request's work: on a full disk or a read-only data
dir every GET must still answer from what is stored, and the failed stamp is
logged and counted in ``/metrics`` instead.

The data dir is on a real 1 MiB tmpfs (root; CI fails rather than skips).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.live.server import LiveServer
from tests.reliability.test_disk_full import READS, fill, snapshot
from tests.storage.helpers import remount_read_only
from valhalla_gov.auth.service import create_token
from valhalla_gov.compose import open_json
from valhalla_gov.timeutil import utc_now

pytestmark = [pytest.mark.reliability, pytest.mark.live]

FAILED_STAMPS = re.compile(
    r'^valhalla_bookkeeping_write_failures_total\{what="token_last_used"\} (\S+)$', re.M
)


def failed_stamps(http: httpx.Client, token: str) -> float:
    resp = http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    match = FAILED_STAMPS.search(resp.text)
    return 0.0 if match is None else float(match.group(1))


@pytest.fixture
def tokens_server(small_tmpfs: Path) -> Iterator[tuple[LiveServer, list[str]]]:
    """A live server on the tmpfs, with three owner tokens none has used yet."""
    data_dir = small_tmpfs / "data"
    store = open_json(data_dir)
    tokens = [
        create_token(store=store, name=f"t{n}", scopes=["owner"], actor="test", clock=utc_now)[1]
        for n in range(3)
    ]
    with LiveServer(data_dir, log_path=small_tmpfs.parent / "server.log") as server:
        yield server, tokens


def _every_read_answers(http: httpx.Client, token: str, where: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    for path in READS:
        resp = http.get(path, headers=auth)
        assert resp.status_code == 200, f"GET {path} with a token on {where}: {resp.text}"


def test_a_full_disk_never_fails_a_read_made_with_a_token(
    tokens_server: tuple[LiveServer, list[str]], small_tmpfs: Path
) -> None:
    server, tokens = tokens_server
    with httpx.Client(base_url=server.url, timeout=30) as http:
        first = tokens[0]
        assert failed_stamps(http, first) == 0  # t0 stamped here, the disk not yet full
        before = snapshot(server.data_dir)
        fill(small_tmpfs)
        # t1 and t2 were never used by this worker: their first request stamps.
        for token in tokens[1:]:
            _every_read_answers(http, token, "a full disk")
        assert snapshot(server.data_dir) == before  # tokens.json untouched
        assert failed_stamps(http, first) == 2  # one per token, not one per request
    log = server.log_path.read_text()
    assert "could not record when token 't1' was last used" in log
    assert "no space left on device" in log


def test_a_read_only_data_dir_never_fails_a_read_made_with_a_token(
    tokens_server: tuple[LiveServer, list[str]], small_tmpfs: Path
) -> None:
    server, tokens = tokens_server
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert failed_stamps(http, tokens[0]) == 0
        before = snapshot(server.data_dir)
        remount_read_only(small_tmpfs)
        for token in tokens[1:]:
            _every_read_answers(http, token, "a read-only data dir")
        assert snapshot(server.data_dir) == before
        assert failed_stamps(http, tokens[0]) == 2
        # Writes still refuse with 503 naming the file; reads were never at stake.
        refused = http.post(
            "/core/go/start_session",
            json={"notes": "x"},
            headers={"Authorization": f"Bearer {tokens[1]}"},
        )
        assert refused.status_code == 503, refused.text
    log = server.log_path.read_text()
    assert "could not record when token 't2' was last used" in log
