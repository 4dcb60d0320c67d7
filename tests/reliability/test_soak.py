"""A bounded soak: 16 connections of mixed reads and writes for about a
minute against a 2-worker live server. No errors at all; the latency
percentiles and the throughput are reported (pytest -s), not asserted:
speed belongs to the benchmarks (bench/, docs/dev/performance.md).

``VALHALLA_SOAK_SECONDS`` shortens or lengthens the run (default 60).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import sized
from tests.live.server import LiveServer
from tests.reliability.conftest import Record, seed_for
from tests.reliability.storm import Ledger, check_store
from valhalla_gov.compose import open_json

pytestmark = [pytest.mark.reliability, pytest.mark.live, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CONNECTIONS = 16
SERVER_ERRORS = re.compile(
    r'^valhalla_http_requests_total\{[^}]*status="5\d\d"[^}]*\} (\S+)$', re.M
)


def test_a_bounded_soak_has_no_errors(
    tmp_path: Path,
    figures_path: Path,
    record_figures: Record,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seconds = float(os.environ.get("VALHALLA_SOAK_SECONDS", sized(5, 60)))
    seed = seed_for("soak")
    data_dir = tmp_path / "data"
    out = figures_path.parent / "soak-report.json"
    with LiveServer(data_dir, workers=2) as server:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.reliability.loadgen",
                "--url",
                server.url,
                "--seconds",
                str(seconds),
                "--connections",
                str(CONNECTIONS),
                "--seed",
                str(seed),
                "--out",
                str(out),
            ],
            cwd=ROOT,
            env={**os.environ, "VALHALLA_TOKEN": server.owner_token},
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=False,
        )
        assert run.returncode == 0, f"the load generator failed:\n{run.stderr}"
        report = json.loads(out.read_text())
        print(f"\nsoak report written to {out}")
        metrics = httpx.get(f"{server.url}/metrics", headers=server.headers, timeout=30).text
        served_5xx = sum(float(n) for n in SERVER_ERRORS.findall(metrics))
        assert httpx.get(f"{server.url}/core/readyz", timeout=30).status_code == 200
        verify = httpx.get(
            f"{server.url}/core/audit/verify", headers=server.headers, timeout=60
        ).json()
    record_figures(
        "soak",
        {
            "seconds": report["seconds"],
            "connections": report["connections"],
            "workers": 2,
            "requests": report["requests"],
            "throughput_rps": report["throughput_rps"],
            "latency": report["latency"],
            "statuses": report["statuses"],
            "errors": report["errors"],
            "transport_errors": report["transport_errors"],
            "report": str(out),
        },
    )
    errors = report["error_samples"]
    assert len(errors) == report["errors"], "more errors than the report keeps"
    assert not errors, f"{len(errors)} errors, e.g. {errors[:10]}"
    assert report["transport_errors"] == 0, report["transport_error_samples"]
    assert served_5xx == 0, f"/metrics counted {served_5xx} answers 5xx"
    assert report["requests"] > CONNECTIONS, "the soak did not get going"
    assert all(report["by_operation"][op]["count"] for op in ("start", "end", "complete"))
    assert verify["ok"] is True, verify
    # A clean run leaves the data exactly consistent: every session, step and
    # decision with its audit event, one active session at most, no overlap.
    check_store(open_json(data_dir), Ledger(), atomic=True)
