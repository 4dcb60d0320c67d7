"""`valhalla serve --workers N` keeps per-run files (metrics, shared rate-limit
counters) in fresh temp dirs: private while it runs, gone when it stops."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.live.server import LiveServer
from valhalla_gov.auth.ratelimit import RATE_LIMIT_DB

pytestmark = pytest.mark.live

STOPS = {
    "SIGTERM to the group": (signal.SIGTERM, True),
    "SIGINT to the group (Ctrl+C)": (signal.SIGINT, True),
    "SIGTERM to the main process": (signal.SIGTERM, False),
}


@pytest.mark.parametrize("stop", list(STOPS))
def test_run_dirs_are_private_and_removed_at_exit(tmp_path: Path, stop: str) -> None:
    sig, group = STOPS[stop]
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    server = LiveServer(tmp_path / "data", workers=2, env={"TMPDIR": str(tmp)}, log_level="info")
    server.start()
    assert server.proc is not None
    try:
        made = {path.name.rsplit("-", 1)[0]: path for path in tmp.iterdir()}
        assert set(made) == {"valhalla-metrics", "valhalla-ratelimit"}
        for path in made.values():
            info = path.stat()
            assert stat.S_IMODE(info.st_mode) == 0o700, path
            assert info.st_uid == os.geteuid()
        counters = made["valhalla-ratelimit"] / RATE_LIMIT_DB
        assert stat.S_IMODE(counters.stat().st_mode) == 0o600
        decide = {"engine": "flips", "action": "run"}
        assert (
            httpx.post(
                f"{server.url}/core/cone/decide", json=decide, headers=server.headers
            ).status_code
            == 200
        )
    finally:
        if group:
            server.kill(sig)
        else:
            os.kill(server.proc.pid, sig)
            server.proc.wait(timeout=60)
        server.kill()  # whatever is left of the group
    assert list(tmp.iterdir()) == []
